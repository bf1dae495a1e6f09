"""Image datasets stored as one folder per class (ImageNet's layout), decoded lazily with Pillow.

``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG`` (``.jpg``, ``.jpeg`` and ``.png`` too,
any case). Classes are the sorted folder names of ``train``; ``val`` uses the same names. ImageNet
does not fit in memory, so images are read and decoded when an item is fetched (DataLoader workers,
``num_workers`` in the config, do this in parallel) and transformed in torch, without torchvision:

* training: a random resized crop (area 8%–100% of the image, aspect ratio 3/4–4/3, the usual
  ImageNet recipe) to ``size`` × ``size`` and a horizontal flip, with randomness keyed by
  (seed, epoch, index) like every spikeprune augmentation;
* evaluation: the shorter side resized to ``size·256/224``, then the centre ``size`` × ``size`` crop.

Pixels are scaled to [0, 1] and normalised with ImageNet's channel statistics. Items are
``(x, y, index)``. A file Pillow cannot decode raises one error that names it.

Registered as ``imagenet`` (a folder ``imagenet`` under the data root, or ``--data-root`` pointing at
the folder that holds ``train`` and ``val``) and ``image_folder`` (any such tree, ``--data-root``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from spikeprune.data.augment import keyed_generator
from spikeprune.data.cifar import DATA_ENV_VAR, DEFAULT_DATA_DIR
from spikeprune.data.info import DatasetInfo
from spikeprune.data.registry import register_dataset
from spikeprune.errors import SpikepruneError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise SpikepruneError("image-folder datasets decode with Pillow: pip install 'spikeprune[images]'") from None
    return Image


def decode(path: Path) -> Tensor:
    """uint8 ``[3, H, W]`` of an image file, or one error that names the file."""
    image_module = _pil()
    try:
        with image_module.open(path) as image:
            rgb = image.convert("RGB")
            data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
            return data.view(rgb.height, rgb.width, 3).permute(2, 0, 1)
    except (OSError, ValueError, SyntaxError) as error:  # PIL.UnidentifiedImageError is an OSError
        raise SpikepruneError(f"cannot decode image {path} ({error}); remove or replace the file") from None


def random_resized_crop(height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the usual ImageNet crop; the centre crop of the largest fit after 10 tries."""
    area = height * width
    for _ in range(10):
        target = area * (SCALE[0] + (SCALE[1] - SCALE[0]) * float(torch.rand((), generator=generator)))
        log_ratio = math.log(RATIO[0]) + (math.log(RATIO[1]) - math.log(RATIO[0])) * float(
            torch.rand((), generator=generator)
        )
        ratio = math.exp(log_ratio)
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def _resize(image: Tensor, height: int, width: int) -> Tensor:
    return F.interpolate(image[None].float(), size=(height, width), mode="bilinear", antialias=True)[0]


class ImageFolderDataset(Dataset):
    """Lazily decoded images with their labels; ``train`` picks the augmented transform."""

    def __init__(
        self, files: Sequence[Path], labels: Tensor, info: DatasetInfo, *, train: bool, size: int, seed: int = 0
    ) -> None:
        self.files, self.targets, self.info = list(files), labels, info
        self.train, self.size, self.seed, self.epoch = train, size, seed, 0
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        image = decode(self.files[index])
        height, width = image.shape[1:]
        if self.train:
            generator = keyed_generator(self.seed, self.epoch, index)
            top, left, h, w = random_resized_crop(height, width, generator)
            image = _resize(image[:, top : top + h, left : left + w], self.size, self.size)
            if bool(torch.rand((), generator=generator) < 0.5):
                image = image.flip(-1)
        else:
            short = round(self.size * 256 / 224)
            scale = short / min(height, width)
            image = _resize(image, max(short, round(height * scale)), max(short, round(width * scale)))
            top, left = (image.shape[1] - self.size) // 2, (image.shape[2] - self.size) // 2
            image = image[:, top : top + self.size, left : left + self.size]
        x = (image / 255.0 - self.mean) / self.std
        return x.float(), self.targets[index], index


@dataclass(frozen=True)
class FolderSplits:
    """What an image-folder loader returns: file lists and labels; the registry builds the datasets."""

    train_files: list[Path]
    train_labels: Tensor
    test_files: list[Path]
    test_labels: Tensor
    classes: list[str]
    size: int

    def datasets(self, info: DatasetInfo, seed: int, augment: bool) -> tuple[ImageFolderDataset, ImageFolderDataset]:
        info = replace(
            info,
            input_shape=(3, self.size, self.size),
            num_classes=len(self.classes),
            train_size=len(self.train_files),
            test_size=len(self.test_files),
        )
        train = ImageFolderDataset(self.train_files, self.train_labels, info, train=augment, size=self.size, seed=seed)
        test = ImageFolderDataset(self.test_files, self.test_labels, info, train=False, size=self.size, seed=seed)
        return train, test


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan(root: Path, size: int, val: str = "val") -> FolderSplits:
    """The file lists of ``root/train/<class>/`` and ``root/<val>/<class>/``."""
    layout = f"expected {root}/train/<class>/<image> and {root}/{val}/<class>/<image> (ImageNet's layout)"
    if not (root / "train").is_dir() or not (root / val).is_dir():
        raise SpikepruneError(f"no image folders in {root}: {layout}")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise SpikepruneError(f"{root / 'train'} holds no class folders: {layout}")
    unknown = sorted(p.name for p in (root / val).iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise SpikepruneError(f"{root / val} has classes that train lacks: {', '.join(unknown[:5])}; {layout}")
    split = {}
    for part in ("train", val):
        files, labels = [], []
        for label, name in enumerate(classes):
            folder = root / part / name
            found = _images(folder) if folder.is_dir() else []
            files += found
            labels += [label] * len(found)
        if not files:
            raise SpikepruneError(f"no images (.jpeg, .jpg, .png) under {root / part}: {layout}")
        split[part] = (files, torch.tensor(labels, dtype=torch.int64))
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise SpikepruneError(f"image size must be an integer >= 8, got {size!r}")
    return FolderSplits(*split["train"], *split[val], classes, size)


def resolve_imagenet_root(root: Path | None) -> Path:
    """``--data-root`` itself when it holds train/ and val/, else its (or the data folder's) ``imagenet``."""
    base = root if root is not None else Path(os.environ.get(DATA_ENV_VAR, DEFAULT_DATA_DIR))
    return base if (base / "train").is_dir() else base / "imagenet"


def resolve_folder_root(root: Path | None) -> Path:
    if root is None:
        raise SpikepruneError("dataset 'image_folder' needs --data-root: the folder that holds train/ and val/")
    return root


@register_dataset(
    DatasetInfo(
        name="imagenet",
        input_shape=(3, 224, 224),
        num_classes=1000,
        train_size=1_281_167,
        test_size=50_000,
        description="ImageNet-1k from its class-per-folder tree; random resized crop + flip; 224x224",
        source=(
            f"local folder 'imagenet' (train/<class>/*.JPEG, val/<class>/*.JPEG) in ${DATA_ENV_VAR} or "
            f"./{DEFAULT_DATA_DIR.as_posix()}, or passed with --data-root; decoded with Pillow"
        ),
    ),
    resolve_root=resolve_imagenet_root,
    seed_changes_split=False,
)
def load_imagenet(root: Path | None, seed: int, *, size: int = 224) -> FolderSplits:
    return scan(root, size)


@register_dataset(
    DatasetInfo(
        name="image_folder",
        input_shape=(3, 224, 224),
        num_classes=0,
        train_size=0,
        test_size=0,
        description="any class-per-folder image tree (train/<class>/..., val/<class>/...), like imagenet",
        source="your folder, passed with --data-root; decoded with Pillow",
    ),
    resolve_root=resolve_folder_root,
    seed_changes_split=False,
)
def load_image_folder(root: Path | None, seed: int, *, size: int = 224, val: str = "val") -> FolderSplits:
    return scan(root, size, val)

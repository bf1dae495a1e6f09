"""CIFAR-10 and CIFAR-100 from the user's local copy of the official python-pickle release.

Nothing is downloaded: the user extracts `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`
from https://www.cs.toronto.edu/~kriz/cifar.html and points us at the folder. The files
are read with an unpickler that can only build numpy arrays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spikeprune.data.augment import RandomCropFlip
from spikeprune.data.info import DatasetInfo
from spikeprune.data.registry import SplitTensors, register_dataset
from spikeprune.data.restricted_pickle import load_numpy_pickle
from spikeprune.errors import SpikepruneError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
DATA_ENV_VAR = "SPIKEPRUNE_DATA"
DEFAULT_DATA_DIR = Path("data")

# Per-channel statistics of the training sets (pixels scaled to [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

CROP_PADDING = 4


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its files and how to read and normalise them."""

    title: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files

    def black(self) -> tuple[float, ...]:
        """The normalised value of a zero pixel: what padding with zeros before normalising gives."""
        return tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))


CIFAR10 = CifarLayout(
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{k}" for k in range(1, 6)),
    test_files=("test_batch",),
    label_key="labels",
    num_classes=10,
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
)
CIFAR100 = CifarLayout(
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train_files=("train",),
    test_files=("test",),
    label_key="fine_labels",
    num_classes=100,
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
)


def _where_to_put(layout: CifarLayout) -> str:
    return (
        f"download {layout.archive} (python version) from {CIFAR_URL}, extract it, and put the "
        f"'{layout.folder}' folder in ${DATA_ENV_VAR} (or ./{DEFAULT_DATA_DIR.as_posix()}), "
        "or pass its path with --data-root"
    )


def resolve_cifar_root(layout: CifarLayout, root: Path | None) -> Path:
    """The folder holding the batch files.

    `root` may be the extracted folder itself or its parent (so one --data-root can hold
    several datasets). Without `root`: `$SPIKEPRUNE_DATA/<folder>`, else `./data/<folder>`.
    """
    if root is None:
        base = os.environ.get(DATA_ENV_VAR)
        root = (Path(base) if base else DEFAULT_DATA_DIR) / layout.folder
    root = Path(root).expanduser()
    if not (root / layout.train_files[0]).exists() and (root / layout.folder).is_dir():
        root = root / layout.folder
    return root.resolve()


def _field(batch: Mapping[Any, Any], key: str) -> Any:
    """A field of a batch dict; the originals use bytes keys, re-saved copies may use str."""
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def _read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    batch = load_numpy_pickle(path)
    redownload = f"delete it and {_where_to_put(layout)}"
    if not isinstance(batch, Mapping):
        raise SpikepruneError(f"{path} does not hold a {layout.title} batch dict; {redownload}")
    data, labels = _field(batch, "data"), _field(batch, layout.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise SpikepruneError(f"{path}: 'data' is not a uint8 array of shape (N, 3072); {redownload}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise SpikepruneError(f"{path}: '{layout.label_key}' is not a list of ints; {redownload}") from None
    if labels.shape[0] != data.shape[0]:
        raise SpikepruneError(
            f"{path}: {data.shape[0]} images but {labels.shape[0]} '{layout.label_key}'; {redownload}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise SpikepruneError(f"{path}: labels outside 0..{layout.num_classes - 1}; {redownload}")
    return data, labels


def _to_normalised_images(pixels: np.ndarray, layout: CifarLayout) -> Tensor:
    """uint8 rows (N, 3072; channel-major) -> float32 [N, 3, 32, 32], scaled then normalised."""
    images = torch.from_numpy(pixels).reshape(-1, 3, 32, 32).to(torch.float32).div_(255.0)
    mean = torch.tensor(layout.mean, dtype=torch.float32).reshape(1, 3, 1, 1)
    std = torch.tensor(layout.std, dtype=torch.float32).reshape(1, 3, 1, 1)
    return images.sub_(mean).div_(std)


def _read_split(root: Path, names: tuple[str, ...], layout: CifarLayout) -> tuple[Tensor, Tensor]:
    parts = [_read_batch(root / name, layout) for name in names]
    pixels = np.concatenate([data for data, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return _to_normalised_images(pixels, layout), torch.from_numpy(labels)


def load_cifar(layout: CifarLayout, root: Path | None, seed: int) -> SplitTensors:
    """Read the official train/test files from `root` (already resolved)."""
    if root is None:
        root = resolve_cifar_root(layout, None)
    if not root.is_dir():
        raise SpikepruneError(f"{layout.title} folder not found: {root}; {_where_to_put(layout)}")
    if not any((root / name).is_file() for name in layout.files):
        raise SpikepruneError(
            f"no {layout.title} files in {root} (expected {', '.join(layout.files)}); {_where_to_put(layout)}"
        )
    for name in layout.files:
        if not (root / name).is_file():
            raise SpikepruneError(
                f"{layout.title} file missing: {root / name} (the folder must hold {', '.join(layout.files)}); "
                f"{_where_to_put(layout)}"
            )
    train_x, train_y = _read_split(root, layout.train_files, layout)
    test_x, test_y = _read_split(root, layout.test_files, layout)
    return SplitTensors(train_x, train_y, test_x, test_y)


def _register(layout: CifarLayout, name: str, train_size: int, test_size: int) -> None:
    info = DatasetInfo(
        name=name,
        input_shape=(3, 32, 32),
        num_classes=layout.num_classes,
        train_size=train_size,
        test_size=test_size,
        description=(
            f"{layout.title}: 32x32 colour images, {layout.num_classes} classes, official split, "
            "per-channel normalised; training augmentation: 4-pixel random crop + horizontal flip"
        ),
        source=(
            f"local folder '{layout.folder}' from {layout.archive} ({CIFAR_URL}) in ${DATA_ENV_VAR} "
            f"or ./{DEFAULT_DATA_DIR.as_posix()}, or passed with --data-root"
        ),
    )
    register_dataset(
        info,
        resolve_root=partial(resolve_cifar_root, layout),
        seed_changes_split=False,
        train_augment=lambda: RandomCropFlip(padding=CROP_PADDING, fill=layout.black()),
    )(partial(load_cifar, layout))


_register(CIFAR10, "cifar10", 50_000, 10_000)
_register(CIFAR100, "cifar100", 50_000, 10_000)

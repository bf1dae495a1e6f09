"""The dataset registry: look datasets up by name and build (train, test) pairs.

A dataset is registered by decorating its loader with `register_dataset`. The loader
returns plain tensors (`SplitTensors`); the registry caches them in-process, so building
the same dataset again (another run in the same process, a sweep) costs nothing, and
wraps them in fresh `IndexedDataset`s with their own epoch and augmentation state.

A loader may take keyword-only options after `(root, seed)` (event datasets take the number of
time bins, the frame size, ...); `build_dataset(..., options={...})` passes them and they are part
of the cache key.
"""

from __future__ import annotations

import inspect
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor

from spikeprune.data.augment import Augmentation
from spikeprune.data.indexed import IndexedDataset
from spikeprune.data.info import DatasetInfo
from spikeprune.errors import SpikepruneError

__all__ = [
    "DatasetInfo",
    "SplitTensors",
    "build_dataset",
    "clear_cache",
    "dataset_info",
    "dataset_options",
    "list_datasets",
    "register_dataset",
]


class SplitTensors(NamedTuple):
    """What a loader returns: float32 inputs [N, *input_shape] and int64 labels [N]. (A loader of data that
    does not fit in memory returns an object with ``datasets(info, seed, augment)`` instead.)"""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


Loader = Callable[..., SplitTensors]  # load(root, seed, **options)
RootResolver = Callable[[Path | None], Path]


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    load: Loader
    resolve_root: RootResolver | None
    seed_changes_split: bool
    train_augment: Callable[[], Augmentation] | None
    options: dict[str, Any]  # keyword-only options of the loader and their defaults


_REGISTRY: dict[str, _Entry] = {}
_CACHE: dict[tuple[str, Path | None, int | None, str], SplitTensors] = {}
_CACHE_LOCK = threading.RLock()  # re-entrant: a loader may build the dataset it derives from


def _keyword_options(load: Loader) -> dict[str, Any]:
    """The keyword-only parameters of a loader (the options it accepts) and their defaults."""
    parameters = inspect.signature(load).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def register_dataset(
    info: DatasetInfo,
    *,
    resolve_root: RootResolver | None = None,
    seed_changes_split: bool = True,
    train_augment: Callable[[], Augmentation] | None = None,
) -> Callable[[Loader], Loader]:
    """Decorator that registers `load(root, seed, **options) -> SplitTensors` under `info.name`.

    - `resolve_root`: for datasets read from user files, maps the user's `root` (or None)
      to the folder to read; it runs before the cache lookup so the cache key is the real
      folder. Leave it None for datasets that ship with a package: `root` is then ignored
      and the loader receives None.
    - `seed_changes_split`: False when the split is fixed (CIFAR, MNIST-1D); the cache
      then shares one load across seeds.
    - `train_augment`: factory for the default training augmentation (used when
      `build_dataset(..., augment=True)`); the test set is never augmented.
    """

    def decorate(load: Loader) -> Loader:
        if info.name in _REGISTRY:
            raise SpikepruneError(f"dataset {info.name!r} is registered twice; pick another name")
        entry = _Entry(info, load, resolve_root, seed_changes_split, train_augment, _keyword_options(load))
        _REGISTRY[info.name] = entry
        return load

    return decorate


def _entry(name: str) -> _Entry:
    if not isinstance(name, str):
        raise SpikepruneError(f"dataset name must be a string, got {name!r}; known datasets: {_known()}")
    entry = _REGISTRY.get(name.strip().lower())
    if entry is None:
        raise SpikepruneError(f"unknown dataset {name!r}; known datasets: {_known()}")
    return entry


def _known() -> str:
    return ", ".join(sorted(_REGISTRY))


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset's info, sorted by name."""
    return [_REGISTRY[name].info for name in sorted(_REGISTRY)]


def dataset_info(name: str) -> DatasetInfo:
    """The registered (nominal) info of one dataset; raises SpikepruneError for unknown names."""
    return _entry(name).info


def dataset_options(name: str) -> tuple[str, ...]:
    """The option names `build_dataset(name, options=...)` accepts."""
    return tuple(_entry(name).options)


def clear_cache() -> None:
    """Forget every loaded dataset (frees memory; the next build loads from scratch)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def build_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    augment: bool = True,
    options: Mapping[str, Any] | None = None,
) -> tuple[IndexedDataset, IndexedDataset]:
    """Load dataset `name` and return `(train, test)` `IndexedDataset`s.

    `root` is where user-provided files live (ignored by datasets that ship with a
    package). `seed` picks the split for datasets that need one and keys the training
    augmentation. `augment=False` turns the default training augmentation off. `options`
    are the loader's own settings (see `dataset_options(name)`).
    """
    entry = _entry(name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpikepruneError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(augment, bool):
        raise SpikepruneError(f"augment must be True or False, got {augment!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise SpikepruneError(f"root must be a path (str or Path), got {root!r}")

    options = dict(options or {})
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        accepted = ", ".join(entry.options) if entry.options else "none"
        raise SpikepruneError(
            f"dataset {entry.info.name!r} does not take option(s) {', '.join(map(repr, unknown))}; "
            f"its options: {accepted}"
        )

    folder = None
    if entry.resolve_root is not None:
        folder = entry.resolve_root(None if root is None else Path(root))
    option_key = json.dumps({**entry.options, **options}, sort_keys=True, default=str)  # defaults spelt out or not
    key = (entry.info.name, folder, seed if entry.seed_changes_split else None, option_key)
    with _CACHE_LOCK:
        splits = _CACHE.get(key)
        if splits is None:
            splits = entry.load(folder, seed, **options)
            _CACHE[key] = splits

    if hasattr(splits, "datasets"):  # a lazy dataset (image folders): files, decoded when fetched
        return splits.datasets(entry.info, seed, augment)
    info = replace(entry.info, train_size=splits.train_y.shape[0], test_size=splits.test_y.shape[0])
    if entry.info.event_frames:  # T and the frame size follow the options
        info = replace(info, input_shape=tuple(splits.train_x.shape[1:]))
    train_augment = entry.train_augment() if augment and entry.train_augment is not None else None
    train = IndexedDataset(splits.train_x, splits.train_y, info, augment=train_augment, seed=seed)
    test = IndexedDataset(splits.test_x, splits.test_y, info, augment=None, seed=seed)
    return train, test

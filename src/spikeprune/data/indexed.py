"""`IndexedDataset`: an in-memory dataset whose items carry their own index."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeprune.data.augment import Augmentation, apply_keyed, example_seed
from spikeprune.data.info import DatasetInfo
from spikeprune.errors import SpikepruneError

Item = tuple[Tensor, Tensor, int]


class IndexedDataset(Dataset[Item]):
    """All examples as one float32 tensor `data` [N, *input_shape] and int64 `targets` [N].

    Items are `(x, y, i)`: per-example methods (forgetting, per-example loss, data
    pruning) need to know which example each row of a shuffled batch is. The datasets
    here are small enough to keep in memory, which makes batched fetching
    (`__getitems__`, used by torch's DataLoader) a single tensor index.

    The optional `augment` is applied with randomness keyed by (seed, epoch, index), so
    an example is augmented identically whether fetched alone or in any batch, by any
    worker. Call `set_epoch` at the start of every epoch (DataLoader workers copy the
    dataset when an iterator is created, so this works unless `persistent_workers=True`).

    `data` and `targets` may be shared with other datasets built from the same cache:
    treat them as read-only.
    """

    def __init__(
        self,
        data: Tensor,
        targets: Tensor,
        info: DatasetInfo,
        *,
        augment: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(data, Tensor) or data.dtype != torch.float32:
            raise SpikepruneError(f"IndexedDataset data must be a float32 tensor, got {_describe(data)}")
        if not isinstance(targets, Tensor) or targets.dtype != torch.int64 or targets.dim() != 1:
            raise SpikepruneError(f"IndexedDataset targets must be a 1-D int64 tensor, got {_describe(targets)}")
        if data.shape[0] != targets.shape[0]:
            raise SpikepruneError(
                f"IndexedDataset has {data.shape[0]} examples but {targets.shape[0]} targets; they must match"
            )
        if tuple(data.shape[1:]) != tuple(info.input_shape):
            raise SpikepruneError(
                f"dataset {info.name!r}: examples have shape {tuple(data.shape[1:])} but its info says "
                f"{tuple(info.input_shape)}"
            )
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= info.num_classes):
            raise SpikepruneError(
                f"dataset {info.name!r}: labels must lie in [0, {info.num_classes}), found "
                f"{int(targets.min())}..{int(targets.max())}"
            )
        self.data = data
        self.targets = targets
        self.info = info
        self.augment = augment
        try:
            self.seed = operator.index(seed)
        except TypeError:
            raise SpikepruneError(f"IndexedDataset seed must be an int, got {seed!r}") from None
        self.epoch = 0

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return (
            f"IndexedDataset(name={self.info.name!r}, size={len(self)}, "
            f"augment={self.augment!r}, seed={self.seed}, epoch={self.epoch})"
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw for this epoch (the trainer calls it each epoch)."""
        try:
            self.epoch = operator.index(epoch)
        except TypeError:
            raise SpikepruneError(f"set_epoch needs an int, got {epoch!r}") from None

    def _position(self, index: int) -> int:
        """Turn any int-like (including negative) index into a position in [0, N)."""
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} is out of range for dataset {self.info.name!r} of size {n}")
        return i

    def _augmented(self, x_batch: Tensor, positions: list[int]) -> Tensor:
        assert self.augment is not None
        seeds = [example_seed(self.seed, self.epoch, i) for i in positions]
        return apply_keyed(self.augment, x_batch, seeds)

    def __getitem__(self, index: int) -> Item:
        i = self._position(index)
        if self.augment is None:
            x = self.data[i]
        else:
            x = self._augmented(self.data[i : i + 1], [i])[0]
        return x, self.targets[i], i

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        """Fetch many items with one tensor index; same values as `[self[i] for i in indices]`."""
        positions = [self._position(i) for i in indices]
        if not positions:
            return []
        index = torch.tensor(positions, dtype=torch.int64)
        xs = self.data[index]
        ys = self.targets[index]
        if self.augment is not None:
            xs = self._augmented(xs, positions)
        return list(zip(xs.unbind(0), ys.unbind(0), positions, strict=True))


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__

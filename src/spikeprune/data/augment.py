"""Batch augmentations whose randomness is keyed by (seed, epoch, example index).

Per-example methods (forgetting scores, per-example losses across epochs, data
pruning) compare what happened to one example in different runs and epochs. That only
works if an example's augmentation does not depend on which worker loaded it, in which
batch, or in what order. So each example's randomness comes from a `torch.Generator`
seeded with a hash of (dataset seed, epoch, index); the global torch / numpy / python
RNGs are never used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from spikeprune.errors import SpikepruneError

_MASK64 = (1 << 64) - 1


class Augmentation(Protocol):
    """Any callable `augment(x_batch, generator) -> Tensor` of the same shape.

    It must draw all its randomness from `generator`. `IndexedDataset` calls it once per
    example (batch of one) with that example's keyed generator, unless it is a
    `BatchAugmentation`, which can be applied to a whole batch at once.
    """

    def __call__(self, x_batch: Tensor, generator: torch.Generator) -> Tensor: ...


def _splitmix64(value: int) -> int:
    """One step of the splitmix64 mixer: a cheap, well-spread 64-bit hash of an int."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def example_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed determined only by (seed, epoch, index).

    Python's `hash()` is not used because its value is an implementation detail; this
    mixer gives the same seeds on every platform and Python version.
    """
    h = _splitmix64(seed & _MASK64)
    h = _splitmix64(h ^ (epoch & _MASK64))
    h = _splitmix64(h ^ (index & _MASK64))
    return h >> 1


def keyed_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A fresh CPU generator for one example in one epoch."""
    generator = torch.Generator()
    generator.manual_seed(example_seed(seed, epoch, index))
    return generator


class BatchAugmentation(ABC):
    """An augmentation split into per-example parameter draws and one batched apply.

    Drawing each example's parameters from its own keyed generator and then transforming
    the whole batch in one tensor operation gives exactly the result of calling the
    augmentation on each example alone, but without a Python loop over the pixels.
    """

    @abstractmethod
    def sample_params(self, generator: torch.Generator) -> Sequence[float]:
        """Draw one example's parameters (a short sequence of numbers) from `generator`.

        Plain Python numbers rather than a tensor: building one small tensor per example
        would dominate the cost of a batch.
        """

    @abstractmethod
    def apply(self, x_batch: Tensor, params: Tensor) -> Tensor:
        """Transform `x_batch` [B, ...] with per-example parameters `params` [B, P]."""

    def __call__(self, x_batch: Tensor, generator: torch.Generator) -> Tensor:
        params = [self.sample_params(generator) for _ in range(x_batch.shape[0])]
        return self.apply(x_batch, torch.tensor(params))


def apply_keyed(augment: Augmentation, x_batch: Tensor, seeds: Sequence[int]) -> Tensor:
    """Augment row k of `x_batch` with randomness from `seeds[k]` alone.

    A row's result is the same as augmenting that row alone with a generator seeded
    from its seed, whatever else is in the batch. One generator is reseeded per row
    (cheaper than creating one per row).
    """
    if x_batch.shape[0] == 0:
        return x_batch.clone()
    generator = torch.Generator()
    if isinstance(augment, BatchAugmentation):
        params = []
        for seed in seeds:
            generator.manual_seed(seed)
            params.append(augment.sample_params(generator))
        return augment.apply(x_batch, torch.tensor(params))
    rows = []
    for k, seed in enumerate(seeds):
        generator.manual_seed(seed)
        rows.append(augment(x_batch[k : k + 1], generator))
    out = torch.cat(rows)
    if out.shape != x_batch.shape:
        raise SpikepruneError(
            f"augmentation {augment!r} changed the batch shape from {tuple(x_batch.shape)} to "
            f"{tuple(out.shape)}; an augmentation must return a tensor of the shape it was given"
        )
    return out


class RandomCropFlip(BatchAugmentation):
    """Random `padding`-pixel shift (pad + crop back to size) and random horizontal flip.

    This is the standard CIFAR training augmentation, done in torch on normalised tensors.
    `fill` is the padding value per channel: pass the normalised value of a black pixel
    (`-mean / std`) to match the usual pad-with-zeros-before-normalising pipeline.
    Parameters per example: (row offset, column offset, flip) as int64.
    """

    def __init__(self, padding: int = 4, fill: float | Sequence[float] = 0.0, flip: bool = True) -> None:
        if padding < 0:
            raise SpikepruneError(f"RandomCropFlip padding must be >= 0, got {padding}")
        self.padding = padding
        self.fill = torch.as_tensor(fill, dtype=torch.float32).reshape(-1)
        self.flip = flip

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, fill={self.fill.tolist()}, flip={self.flip})"

    def sample_params(self, generator: torch.Generator) -> tuple[int, int, int]:
        span = 2 * self.padding + 1
        if not self.flip:
            dy, dx = torch.randint(0, span, (2,), generator=generator).tolist()
            return dy, dx, 0
        # One draw of two values in [0, 2 * span): each value mod span is a uniform
        # offset, and the first value's quotient is an independent fair coin for the flip.
        a, b = torch.randint(0, 2 * span, (2,), generator=generator).tolist()
        return a % span, b % span, a // span

    def apply(self, x_batch: Tensor, params: Tensor) -> Tensor:
        if x_batch.dim() != 4:
            raise SpikepruneError(f"RandomCropFlip needs image batches [B, C, H, W], got shape {tuple(x_batch.shape)}")
        b, c, h, w = x_batch.shape
        p = self.padding
        fill = self.fill.to(x_batch.dtype)
        if fill.numel() not in (1, c):
            raise SpikepruneError(f"RandomCropFlip fill has {fill.numel()} values but the images have {c} channels")
        padded = fill.reshape(1, -1, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
        padded[:, :, p : p + h, p : p + w] = x_batch
        rows = params[:, 0:1] + torch.arange(h)  # [B, H]
        cols = params[:, 1:2] + torch.arange(w)  # [B, W]
        cols = torch.where(params[:, 2:3].bool(), cols.flip(1), cols)
        # One gather over flattened padded images (much faster than 4-D advanced indexing).
        flat = rows[:, :, None] * (w + 2 * p) + cols[:, None, :]  # [B, H, W]
        flat = flat.reshape(b, 1, h * w).expand(b, c, h * w)
        return padded.reshape(b, c, -1).gather(2, flat).reshape(b, c, h, w)

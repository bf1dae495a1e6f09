"""N:M semi-structured sparsity: at most N non-zeros in every block of M consecutive input weights.

Blocks run along the input (reduction) dimension, the layout N:M hardware expects:

* Linear ``(O, I)``: blocks along ``I``.
* Conv ``(O, C, kh, kw)``: permuted to ``(O, kh, kw, C)`` and blocked along ``C``, so one block holds
  M input channels at one kernel tap.

A layer whose input dimension is not a multiple of M is left dense with a warning naming it
(``policy="dense"``). With ``policy="pad"`` it is padded with virtual zero weights up to a multiple
of M: the last block of each row holds fewer real weights and still at most N non-zeros.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.sparsity.base import Sparsifier
from spikeprune.sparsity.masks import apply_mask, is_masked, prunable_layers, refresh

POLICIES = ("dense", "pad")


def parse_nm(text: str) -> tuple[int, int]:
    """``"2:4"`` → ``(2, 4)``, with a clear error for anything else."""
    try:
        n, m = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise SpikepruneError(f"N:M pattern must look like 2:4, got {text!r}") from None
    check_nm(n, m)
    return n, m


def check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int) and 1 <= n < m):
        raise SpikepruneError(f"N:M pattern needs integers 1 <= N < M, got N={n!r}, M={m!r}")


def input_dim(weight: Tensor) -> int:
    return weight.shape[1]


def nm_blocks(weight: Tensor, m: int, pad: bool = False) -> Tensor:
    """The weight cut into blocks of ``m`` along the input dimension: ``(out, blocks, m)``."""
    if weight.dim() < 2:
        raise SpikepruneError(f"N:M needs a weight with >= 2 dims (out, in, ...), got shape {tuple(weight.shape)}")
    rows = weight if weight.dim() == 2 else weight.movedim(1, -1)
    extra = (-rows.shape[-1]) % m
    if extra and not pad:
        raise SpikepruneError(
            f"N:M with M={m} needs the input dimension ({rows.shape[-1]}) divisible by M; pick M dividing it"
        )
    if extra:
        rows = torch.nn.functional.pad(rows, (0, extra))
    return rows.reshape(weight.shape[0], -1, m)


def from_blocks(blocks: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Inverse of :func:`nm_blocks` (padding, if any, is dropped)."""
    shape = tuple(shape)
    if len(shape) == 2:
        rows_shape = shape
    else:
        rows_shape = (shape[0], *shape[2:], shape[1])
    width = rows_shape[-1]
    padded_width = math.ceil(width / blocks.shape[-1]) * blocks.shape[-1]
    rows = blocks.reshape(*rows_shape[:-1], padded_width)[..., :width]
    return rows if len(shape) == 2 else rows.movedim(-1, 1).contiguous()


def topn_block_mask(scores: Tensor, n: int) -> Tensor:
    """0/1 mask with exactly ``n`` ones per block: the ``n`` highest scores of each block."""
    mask = torch.zeros_like(scores)
    # argmax is 2-3x faster than topk on CPU for the 1:M patterns
    indices = scores.argmax(-1, keepdim=True) if n == 1 else torch.topk(scores, n, dim=-1).indices
    mask.scatter_(-1, indices, 1.0)
    return mask


def magnitude_nm_mask(weight: Tensor, n: int, m: int, pad: bool = False) -> Tensor:
    """Keep the ``n`` largest magnitudes of every block (the one-shot ASP criterion)."""
    check_nm(n, m)
    blocks = nm_blocks(weight.detach().abs(), m, pad)
    if pad:  # virtual padding must never be chosen over a real weight
        real = nm_blocks(torch.ones_like(weight), m, pad)
        blocks = torch.where(real > 0, blocks, torch.full_like(blocks, -1.0))
    return from_blocks(topn_block_mask(blocks, n), weight.shape)


def nm_layers(
    model: nn.Module, m: int, policy: str = "dense", layers: list[tuple[str, nn.Module]] | None = None
) -> list[tuple[str, nn.Module]]:
    """Conv/Linear layers that can take N:M; others are left dense with a warning that names them."""
    if policy not in POLICIES:
        raise SpikepruneError(f"unknown N:M policy {policy!r}; choose one of {', '.join(POLICIES)}")
    chosen, skipped = [], []
    for name, module in layers if layers is not None else prunable_layers(model):
        if (
            input_dim(module.weight_orig if hasattr(module, "weight_orig") else module.weight) % m == 0
            or policy == "pad"
        ):
            chosen.append((name, module))
        else:
            skipped.append(f"{name} (input dim {input_dim(module.weight)})")
    if skipped:
        warnings.warn(
            f"N:M with M={m}: left dense because the input dimension is not a multiple of {m}: "
            f"{', '.join(skipped)} (policy 'pad' pads them: --nm-policy pad, SR-STE and nm-magnitude only)",
            stacklevel=2,
        )
    if not chosen:
        raise SpikepruneError(f"no layer has an input dimension divisible by M={m}; use a smaller M or policy='pad'")
    return chosen


def validate_nm(model: nn.Module, n: int, m: int, layers: list[str] | None = None) -> dict[str, int | None]:
    """Prove the pattern: the largest non-zero count of any block, per layer; raises if any exceeds N.

    ``layers=None`` checks the layers that carry masks, or, in a finalized model (masks folded), every
    Conv/Linear layer whose input dimension is a multiple of M: the layers the N:M policy prunes. The
    others (e.g. a first conv over 3 input channels) are reported as ``None``: left dense on purpose.
    """
    worst: dict[str, int | None] = {}
    modules = dict(model.named_modules())
    if layers is None:
        synapses = {k: v for k, v in modules.items() if isinstance(v, (nn.Conv1d, nn.Conv2d, nn.Linear))}
        masked = [k for k, v in synapses.items() if hasattr(v, "weight_mask")]
        layers = masked or [k for k, v in synapses.items() if input_dim(v.weight) % m == 0]
        worst.update({k: None for k in synapses if k not in layers})
    for name in layers:
        module = modules[name]
        weight = (module.weight_orig * module.weight_mask) if hasattr(module, "weight_mask") else module.weight
        blocks = nm_blocks(weight.detach(), m, pad=True)
        worst[name] = int(torch.count_nonzero(blocks, dim=-1).max())
        if worst[name] > n:
            raise SpikepruneError(f"layer {name} has a block with {worst[name]} non-zeros, more than N={n} of M={m}")
    return worst


def compress_nm(weight: Tensor, n: int, m: int) -> tuple[Tensor, Tensor]:
    """Values ``(O, blocks, n)`` and in-block indices ``(O, blocks, n)`` (uint8) of an N:M weight.

    Blocks with fewer than ``n`` non-zeros store explicit zeros; decompression is exact.
    """
    check_nm(n, m)
    blocks = nm_blocks(weight.detach(), m, pad=True)
    if int(torch.count_nonzero(blocks, dim=-1).max()) > n:
        raise SpikepruneError(f"weight is not {n}:{m} sparse: a block has more than {n} non-zeros")
    # non-zeros first (stable), then the lowest positions as filler
    key = (blocks != 0).float() * 2 * m - torch.arange(m, dtype=torch.float32)
    indices = torch.topk(key, n, dim=-1).indices.sort(dim=-1).values
    return torch.gather(blocks, -1, indices), indices.to(torch.uint8)


def decompress_nm(values: Tensor, indices: Tensor, shape: tuple[int, ...], m: int) -> Tensor:
    """Inverse of :func:`compress_nm`."""
    blocks = torch.zeros(*values.shape[:-1], m, dtype=values.dtype)
    blocks.scatter_(-1, indices.long(), values)
    return from_blocks(blocks, shape)


class SRSTE(Sparsifier):
    """SR-STE (Zhou et al., ICLR 2021): N:M from scratch with a sparse-refined straight-through estimator.

    Every step the mask is the top-N magnitudes of each block of the dense weights; the forward pass
    uses the masked weights, the gradient reaches all weights (straight through), and pruned weights
    get an extra decay ``λ_W·(1 − m)⊙W`` that pulls them towards zero.
    """

    def __init__(self, n: int, m: int, decay: float = 2e-4, policy: str = "dense") -> None:
        check_nm(n, m)
        self.n, self.m, self.decay, self.policy = n, m, float(decay), policy
        self.layers: list[tuple[str, nn.Module]] = []
        self._start: dict[str, Tensor] = {}

    def attach(self, model: nn.Module) -> None:
        self.layers = nm_layers(model, self.m, self.policy)
        for _, module in self.layers:
            weight = module.weight_orig if is_masked(module) else module.weight
            apply_mask(module, magnitude_nm_mask(weight, self.n, self.m, self.policy == "pad"), straight_through=True)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self._start = {name: module.weight_mask.clone() for name, module in self.layers}

    def before_step(self) -> None:
        for _, module in self.layers:
            if module.weight_orig.grad is not None:
                module.weight_orig.grad.add_((1 - module.weight_mask) * module.weight_orig.detach(), alpha=self.decay)

    @torch.no_grad()
    def after_step(self) -> None:
        for _, module in self.layers:
            module.weight_mask.copy_(magnitude_nm_mask(module.weight_orig, self.n, self.m, self.policy == "pad"))
            refresh(module)

    def epoch_metrics(self) -> dict[str, float]:
        return {"mask_flip_rate": mask_flip_rate(self._start, self.layers)}

    def deploy(self) -> None:
        """Turn off the straight-through gradient: the current masks become fixed."""
        for _, module in self.layers:
            apply_mask(module, module.weight_mask, straight_through=False)


def mask_flip_rate(start: dict[str, Tensor], layers: list[tuple[str, nn.Module]]) -> float:
    """Fraction of mask entries that changed since ``start`` (over all N:M layers)."""
    if not start:
        return 0.0
    changed = sum(int((start[name] != module.weight_mask).sum()) for name, module in layers if name in start)
    total = sum(start[name].numel() for name, _ in layers if name in start)
    return changed / max(total, 1)

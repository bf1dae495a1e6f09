"""Weight density and parameter footprint, dense and compressed.

Density is read from ``layer.weight``, the weight the layer really uses (with
``torch.nn.utils.parametrize`` that is the masked weight). The dense footprint follows NeuroBench's
``Footprint``: every parameter and buffer, ``numel·element_size``. The compressed estimate stores
each prunable weight as the cheapest of dense and CSR, or in the declared N:M layout, and keeps all
other tensors dense; a weight's parametrization internals (original weight, masks, scores) are
training-time state and are replaced by that compressed weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from spikeprune.errors import SpikepruneError
from spikeprune.metrics.synops import layer_kind, synaptic_layers
from spikeprune.sparsity.nm import nm_blocks

INDEX_BYTES = 4  # int32 column indices and row pointers in CSR


@dataclass(frozen=True)
class LayerDensity:
    """One prunable weight: size, non-zeros and storage estimates in bytes."""

    name: str
    kind: str
    shape: tuple[int, ...]
    numel: int
    nonzeros: int
    dense_bytes: int
    csr_bytes: int
    compressed_bytes: int
    nm: tuple[int, int] | None = None

    @property
    def density(self) -> float:
        return self.nonzeros / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class DensityReport:
    """Per-layer densities plus model-wide counts and footprints."""

    layers: list[LayerDensity]
    params: int
    nonzero_params: int
    footprint_dense_bytes: int
    footprint_compressed_bytes: int

    @property
    def density(self) -> float:
        """Global density over the prunable weights (non-zeros / elements)."""
        numel = sum(layer.numel for layer in self.layers)
        return sum(layer.nonzeros for layer in self.layers) / numel if numel else 0.0


def _bytes(tensors: Iterable[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def dense_footprint(model: nn.Module) -> int:
    """All parameters and buffers in bytes, as NeuroBench's Footprint."""
    return _bytes(model.parameters()) + _bytes(model.buffers())


def csr_footprint(weight: Tensor) -> int:
    """Bytes of ``weight`` reshaped to ``(out, -1)`` in CSR: values, int32 column indices, int32 row pointers."""
    rows = weight.shape[0] if weight.dim() else 1
    nnz = int(torch.count_nonzero(weight))
    return nnz * weight.element_size() + nnz * INDEX_BYTES + (rows + 1) * INDEX_BYTES


def nm_footprint(weight: Tensor, n: int, m: int, *, check: bool = True) -> int:
    """Bytes of ``weight`` in N:M layout: ``N`` values and ``ceil(log2 M)``-bit in-block indices per block.

    With ``check`` it raises if any block holds more than ``N`` non-zeros (the layout could not store it).
    """
    if not (isinstance(n, int) and isinstance(m, int) and 1 <= n <= m):
        raise SpikepruneError(f"N:M pattern needs integers 1 <= N <= M, got N={n!r}, M={m!r}")
    blocks = nm_blocks(weight, m)
    if check:
        worst = int(torch.count_nonzero(blocks, dim=-1).max()) if blocks.numel() else 0
        if worst > n:
            raise SpikepruneError(
                f"weight of shape {tuple(weight.shape)} has a block with {worst} non-zeros, more than N={n} "
                f"of {n}:{m}; apply the N:M mask first or declare the right pattern"
            )
    kept = blocks.shape[0] * blocks.shape[1] * n
    index_bits = kept * (m - 1).bit_length()  # ceil(log2 M) bits per kept value
    return kept * weight.element_size() + math.ceil(index_bits / 8)


def _weight_storage(layer: nn.Module) -> list[Tensor]:
    """The tensors that hold this layer's weight: the parameter, or the internals of a mask or
    parametrization (``weight_orig``/``weight_mask``/mask logits of :mod:`spikeprune.sparsity`)."""
    if parametrize.is_parametrized(layer, "weight"):
        plist = layer.parametrizations["weight"]
        return [*plist.parameters(), *plist.buffers()]
    if hasattr(layer, "weight_orig"):
        internals = [
            getattr(layer, name) for name in ("weight_orig", "weight_mask", "nm_logits") if hasattr(layer, name)
        ]
        return [t for t in internals if isinstance(t, Tensor)]
    return [layer.weight]


def density_report(model: nn.Module, nm_patterns: Mapping[str, tuple[int, int]] | None = None) -> DensityReport:
    """Density and footprints of every Conv1d/Conv2d/Linear weight in ``model``.

    ``nm_patterns`` maps layer names (as in ``model.named_modules()``) to a declared ``(N, M)``;
    those layers are priced in N:M layout, the others as ``min(dense, CSR)``.
    """
    layers = synaptic_layers(model)
    patterns = dict(nm_patterns or {})
    unknown = sorted(set(patterns) - {name for name, _ in layers})
    if unknown:
        raise SpikepruneError(
            f"nm_patterns names unknown layer(s) {unknown}; use names of Conv/Linear layers such as "
            f"{[name for name, _ in layers][:5]}"
        )
    records: list[LayerDensity] = []
    storage_ids: set[int] = set()
    params = nonzero = 0
    with torch.no_grad():
        for name, layer in layers:
            weight = layer.weight.detach()
            storage_ids.update(id(t) for t in _weight_storage(layer))
            dense = weight.numel() * weight.element_size()
            csr = csr_footprint(weight)
            nm = patterns.get(name)
            if nm is not None:
                try:
                    compressed = nm_footprint(weight, *nm)
                except SpikepruneError as error:
                    raise SpikepruneError(f"layer {name!r}: {error}") from None
            else:
                compressed = min(dense, csr)
            nnz = int(torch.count_nonzero(weight))
            params += weight.numel()
            nonzero += nnz
            shape = tuple(weight.shape)
            records.append(
                LayerDensity(name, layer_kind(layer), shape, weight.numel(), nnz, dense, csr, compressed, nm)
            )
        other_params = [p for p in model.parameters() if id(p) not in storage_ids]
        other_buffers = [b for b in model.buffers() if id(b) not in storage_ids]
        params += sum(p.numel() for p in other_params)
        nonzero += sum(int(torch.count_nonzero(p)) for p in other_params)
    compressed_total = sum(r.compressed_bytes for r in records) + _bytes(other_params) + _bytes(other_buffers)
    return DensityReport(records, params, nonzero, dense_footprint(model), compressed_total)

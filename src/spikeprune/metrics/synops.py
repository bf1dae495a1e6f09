"""Exact operation counts of one synaptic layer call (NeuroBench's definitions).

For a layer with weight ``W`` and an input batch ``x``:

* **effective ops**: the number of (non-zero input element × non-zero weight) pairs that reach an
  output. Padded zeros, zero inputs and zero (pruned) weights contribute nothing. They count as
  **ACs** when every input value of the call is in {-1, 0, 1} (spikes: an add per pair) and as
  **MACs** otherwise (real-valued input: a multiply-add per pair), as NeuroBench does.
* **dense SynOps** (SpikingJelly/Norse): every non-zero input times its full fan-out, ignoring
  weight zeros, i.e. what an event-driven but unpruned layer would do.
* **dense ops** (NeuroBench ``Dense``): all inputs and all weights non-zero, the layer's upper bound.

The reference functions (:func:`effective_ops`, :func:`dense_synops`, :func:`dense_ops`) compute
these literally, by running the layer's own operation on binarised input and weight in float64 and
summing the output. :func:`count_ops` (used while profiling) gets the same integers faster: the sum
of a linear map's output is a dot product of the input with the map's adjoint applied to ones, so
each count is ``Σ_p nz(p)·fanout(p)`` with a per-input-position fan-out computed once per call on a
single probe sample. It never builds a float64 copy of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError

SYNAPTIC_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
_SPATIAL_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2}


@dataclass(frozen=True)
class OpCounts:
    """Exact integer totals over one or more calls of a layer (``calls`` says how many)."""

    calls: int = 0
    inputs: int = 0
    nonzero_inputs: int = 0
    acs: int = 0
    macs: int = 0
    dense_synops: int = 0
    dense_ops: int = 0

    @property
    def effective_synops(self) -> int:
        return self.acs + self.macs

    @property
    def input_rate(self) -> float:
        """Fraction of non-zero input elements (the presynaptic firing rate for spiking input)."""
        return self.nonzero_inputs / self.inputs if self.inputs else 0.0

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


def layer_kind(layer: nn.Module) -> str:
    """'conv1d', 'conv2d' or 'linear' (the synaptic base class, so subclasses report sensibly)."""
    for cls in SYNAPTIC_TYPES:
        if isinstance(layer, cls):
            return cls.__name__.lower()
    raise SpikepruneError(
        f"{type(layer).__name__} is not a synaptic layer; counts exist for nn.Conv1d, nn.Conv2d and nn.Linear"
    )


def synaptic_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Conv1d/Conv2d/Linear in ``model`` (recursively, shared modules once), with its name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SYNAPTIC_TYPES)]


def is_spiking(x: Tensor) -> bool:
    """True when every value is in {-1, 0, 1}, so the layer's work is accumulates (NeuroBench's test)."""
    return bool(_spiking_flag(x))


def _spiking_flag(x: Tensor) -> Tensor:
    return torch.all((x == 0) | (x.abs() == 1))


def _check(layer: nn.Module, x: Tensor) -> Tensor:
    """Validate the layer and input; return the input with a batch dimension (conv may be unbatched)."""
    kind = layer_kind(layer)
    if not isinstance(x, Tensor):
        raise SpikepruneError(f"{kind} input must be a tensor, got {type(x).__name__}")
    if isinstance(layer, nn.Linear):
        if x.dim() < 1 or x.shape[-1] != layer.in_features:
            raise SpikepruneError(
                f"linear layer expects input [..., {layer.in_features}], got shape {tuple(x.shape)}; "
                "pass the tensor the layer receives"
            )
        return x
    if layer.padding_mode != "zeros":
        raise SpikepruneError(
            f"{kind} with padding_mode={layer.padding_mode!r} cannot be counted exactly; use padding_mode='zeros'"
        )
    spatial = _SPATIAL_DIMS[nn.Conv1d if kind == "conv1d" else nn.Conv2d]
    if x.dim() == spatial + 1:
        x = x.unsqueeze(0)
    if x.dim() != spatial + 2 or x.shape[1] != layer.in_channels:
        raise SpikepruneError(
            f"{kind} expects input [N, {layer.in_channels}, ...] with {spatial} spatial dim(s), "
            f"got shape {tuple(x.shape)}; pass the tensor the layer receives"
        )
    return x


def _apply(layer: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
    """The layer's own operation (stride, padding, dilation, groups) with ``weight`` and no bias."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight)
    conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
    return conv(x, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def _exact_dtype(device: torch.device) -> torch.dtype:
    # Integers up to 2**53 are exact in float64; MPS has no float64, and the fan-outs we compute in
    # float are small integers (≤ out_channels·kernel size), exact in float32 too.
    return torch.float32 if device.type == "mps" else torch.float64


def _summed(layer: nn.Module, x: Tensor, weight: Tensor) -> int:
    dtype = _exact_dtype(x.device)
    with torch.no_grad():
        return round(float(_apply(layer, x.to(dtype), weight.to(dtype)).sum()))


def effective_ops(layer: nn.Module, x: Tensor) -> int:
    """Reference count of (non-zero input × non-zero weight) pairs, by running the op on binarised tensors."""
    x = _check(layer, x)
    return _summed(layer, x != 0, layer.weight.detach() != 0)


def dense_synops(layer: nn.Module, x: Tensor) -> int:
    """Reference count of non-zero inputs times their full fan-out (weight zeros ignored)."""
    x = _check(layer, x)
    return _summed(layer, x != 0, torch.ones_like(layer.weight, dtype=torch.bool))


def dense_ops(layer: nn.Module, x: Tensor) -> int:
    """Reference count with all inputs and weights non-zero: the dense upper bound for this input shape."""
    x = _check(layer, x)
    return _summed(layer, torch.ones_like(x, dtype=torch.bool), torch.ones_like(layer.weight, dtype=torch.bool))


def fanout(layer: nn.Module, sample_shape: tuple[int, ...], weight: Tensor | None = None) -> Tensor:
    """Per input element of one sample: how many (weight, output) pairs it feeds (int64, ``sample_shape``).

    ``weight`` defaults to the layer's weight; only where it is non-zero counts. For a linear layer
    ``sample_shape`` is ``(in_features,)``.
    """
    if weight is None:
        weight = layer.weight
    with torch.no_grad():
        mask = weight.detach() != 0
    if isinstance(layer, nn.Linear):
        return mask.sum(0, dtype=torch.int64)
    dtype = _exact_dtype(mask.device)
    # Autograd gives the adjoint of the conv for any stride/padding/dilation/groups, including
    # 'same' padding and input rows the last output never reaches; run it outside inference mode.
    with torch.inference_mode(False), torch.enable_grad():
        probe = torch.ones((1, *sample_shape), dtype=dtype, device=mask.device, requires_grad=True)
        out = _apply(layer, probe, mask.to(dtype))
        (grad,) = torch.autograd.grad(out.sum(), probe)
    return grad[0].round().to(torch.int64)


def _count_tensor(layer: nn.Module, x: Tensor) -> Tensor:
    """``[inputs, nonzero_inputs, acs, macs, dense_synops, dense_ops]`` as int64 on x's device, no host sync."""
    x = _check(layer, x).detach()
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            nz = (x != 0).reshape(-1, layer.in_features).sum(0)
            rows = x.numel() // layer.in_features
        else:
            nz = (x != 0).sum(0)
            rows = x.shape[0]
        sample_shape = tuple(nz.shape)
        full = fanout(layer, sample_shape, torch.ones_like(layer.weight, dtype=torch.bool))
        effective = (nz * fanout(layer, sample_shape)).sum()
        spiking = _spiking_flag(x).to(torch.int64)
        return torch.stack(
            [
                torch.tensor(x.numel(), dtype=torch.int64, device=x.device),
                nz.sum(),
                effective * spiking,
                effective * (1 - spiking),
                (nz * full).sum(),
                full.sum() * rows,
            ]
        )


def count_ops(layer: nn.Module, x: Tensor) -> OpCounts:
    """All counts of one call of ``layer`` on ``x`` (the batch it receives), as exact integers."""
    inputs, nonzero, acs, macs, dense_syn, dense = (int(v) for v in _count_tensor(layer, x).tolist())
    return OpCounts(1, inputs, nonzero, acs, macs, dense_syn, dense)

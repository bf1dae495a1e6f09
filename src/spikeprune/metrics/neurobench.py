"""NeuroBench's two static figures, computed the way NeuroBench computes them.

* **connection sparsity**: zero-valued weights over all weights of the synaptic layers
  (``Linear``, ``Conv1d/2d/3d``; biases are not connections), ``Σ_l zeros_l / Σ_l n_l``.
* **footprint**: bytes of every parameter and buffer, ``numel · element_size``.

They are written out literally, independent of :mod:`spikeprune.metrics.density`, so a test can
check that the profile's ``density`` (``1 − connection sparsity``) and ``footprint_dense_bytes``
report what NeuroBench would read. Call them on a finalized model
(:func:`spikeprune.sparsity.finalize`): while masks are attached, the parameters are the unmasked
``weight_orig`` and the masks are buffers, which NeuroBench would count as they are.
"""

from __future__ import annotations

import torch
from torch import nn

CONNECTION_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def connection_sparsity(model: nn.Module) -> float:
    """Fraction of synaptic weights that are exactly zero."""
    zeros = total = 0
    for module in model.modules():
        if isinstance(module, CONNECTION_LAYERS):
            zeros += int(torch.sum(module.weight == 0))
            total += module.weight.numel()
    return zeros / total if total else 0.0


def footprint(model: nn.Module) -> int:
    """Bytes of all parameters and buffers of ``model``."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return params + buffers

"""Stateless layers on time-first tensors: fold ``[T, B, ...]`` into ``[T·B, ...]`` and back."""

from __future__ import annotations

from torch import Tensor, nn


class PerStep(nn.Sequential):
    """Run stateless modules (conv, linear, pooling, BN) on all time steps at once.

    Folding time into the batch turns T small calls into one large one, and keeps the synapses plain
    ``nn.Conv*``/``nn.Linear`` modules that pruning code can find.
    """

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        return super().forward(x.flatten(0, 1)).unflatten(0, (t, b))

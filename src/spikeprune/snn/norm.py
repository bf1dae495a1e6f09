"""Batch norms for SNNs: tdBN over time and batch, and MPBN on the membrane before the threshold.

* tdBN (Zheng et al., AAAI 2021) normalises pre-synaptic currents per channel over time, batch and
  space together, with the affine weight initialised to ``alpha·θ`` so inputs start on the scale of
  the threshold.
* MPBN (Guo et al., ICCV 2023) normalises the charged membrane ``h_t`` right before the threshold.
  Pass it to a neuron as ``norm=``. In eval mode it is a per-channel affine map, so it folds into a
  per-channel threshold ``θ' = (θ − β)·σ/γ + μ`` (:meth:`MembraneBatchNorm.folded_threshold`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from spikeprune.errors import SpikepruneError


class _AnyDimBatchNorm(_BatchNorm):
    """BatchNorm over ``[N, C, *]`` for any number of trailing dims (Linear, Conv1d and Conv2d outputs)."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise SpikepruneError(f"{type(self).__name__} expects at least [N, C], got shape {tuple(x.shape)}")


class TdBatchNorm(_AnyDimBatchNorm):
    """Threshold-dependent batch norm on time-first input ``[T, B, C, *]``."""

    def __init__(self, num_features: int, alpha: float = 1.0, v_threshold: float = 1.0, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.alpha = float(alpha)
        self.v_threshold = float(v_threshold)
        with torch.no_grad():
            self.weight.fill_(self.alpha * self.v_threshold)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3:
            raise SpikepruneError(f"TdBatchNorm expects [T, B, C, ...], got shape {tuple(x.shape)}")
        return super().forward(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class MembraneBatchNorm(_AnyDimBatchNorm):
    """MPBN: normalise one step's membrane ``[B, C, *]`` before the threshold (shared over steps)."""

    def folded_threshold(self, v_threshold: float) -> Tensor:
        """Per-channel threshold equivalent to this norm in eval mode (needs γ ≠ 0)."""
        gamma = self.weight if self.affine else torch.ones_like(self.running_mean)
        beta = self.bias if self.affine else torch.zeros_like(self.running_mean)
        if bool((gamma == 0).any()):
            raise SpikepruneError("cannot fold MPBN into a threshold: a channel has weight gamma == 0")
        std = torch.sqrt(self.running_var + self.eps)
        return (v_threshold - beta) * std / gamma + self.running_mean

"""Encoders: turn a batch of examples ``[B, ...]`` into a time-first sequence ``[T, B, ...]``.

* ``direct``: repeat the analogue input at every step (the first layer sees real values; the
  default in the SNN literature for images).
* ``rate``: Bernoulli spikes with probability equal to the intensity (clipped to [0, 1]).
* ``latency``: one spike per input at step ``round((1 − x)·(T − 1))``; brighter fires earlier,
  zero never fires.
* ``frames``: the examples already are sequences (event frames ``[B, T, C, H, W]``, as a data
  loader stacks them); only the two leading axes swap. T must equal the model's ``timesteps``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError


class Encoder(nn.Module):
    """Base: holds the number of steps T."""

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        if int(timesteps) < 1:
            raise SpikepruneError(f"timesteps must be >= 1, got {timesteps}")
        self.timesteps = int(timesteps)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}"


class DirectEncoder(Encoder):
    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(0).expand(self.timesteps, *x.shape)


class RateEncoder(Encoder):
    def forward(self, x: Tensor) -> Tensor:
        p = x.clamp(0, 1).unsqueeze(0).expand(self.timesteps, *x.shape)
        return torch.bernoulli(p)


class LatencyEncoder(Encoder):
    def forward(self, x: Tensor) -> Tensor:
        x = x.clamp(0, 1)
        when = torch.round((1 - x) * (self.timesteps - 1)).long()
        steps = torch.arange(self.timesteps, device=x.device).view(-1, *([1] * x.dim()))
        return ((steps == when.unsqueeze(0)) & (x > 0).unsqueeze(0)).to(x.dtype)


class FramesEncoder(Encoder):
    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[1] != self.timesteps:
            raise SpikepruneError(
                f"the frames encoder expects a batch of frame sequences [B, T={self.timesteps}, ...], got shape "
                f"{tuple(x.shape)}; build the data with as many time bins as the model's timesteps"
            )
        return x.transpose(0, 1)


ENCODERS: dict[str, type[Encoder]] = {
    "direct": DirectEncoder,
    "rate": RateEncoder,
    "latency": LatencyEncoder,
    "frames": FramesEncoder,
}


def build_encoder(name: str, timesteps: int) -> Encoder:
    try:
        return ENCODERS[name.lower()](timesteps)
    except KeyError:
        raise SpikepruneError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}") from None

"""What every spikeprune model shares: neuron options, the encoder, and the readout.

A model takes either a static batch ``[B, *input_shape]`` (encoded to ``[T, B, ...]`` by the
encoder) or an already time-first sequence ``[T, B, *input_shape]`` (event frames), runs its
layers on ``[T, B, ...]`` and returns logits ``z = mean_t(W s_t + b)`` of shape ``[B, classes]``.

Event datasets give batches of frame sequences ``[B, T, C, H, W]``; a model built for them has
``encoder="frames"`` and ``input_shape=(T, C, H, W)`` (the dataset's), so every caller that feeds
dataset batches (trainer, profiler, pruning calibration) works unchanged: the encoder only swaps
B and T, and the layers are sized from ``step_shape = (C, H, W)``.

With the ``direct`` encoder the first synaptic layer and its norm see the same input at every step,
so they run once on ``[B, ...]`` and the result is repeated over T (T times less work, same values).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from spikeprune.errors import SpikepruneError
from spikeprune.snn import MembraneBatchNorm, SpikingNeuron, build_encoder, build_neuron, build_surrogate

NORMS = ("tdbn", "mpbn", "none")
_RECOMPUTE = threading.local()


def is_recomputing() -> bool:
    """True inside activation checkpointing's second forward: hooks that record should skip it."""
    return getattr(_RECOMPUTE, "depth", 0) > 0


@contextlib.contextmanager
def _recomputing(segment: tuple[nn.Module, ...]):
    """Around a checkpointed segment's recomputation: BatchNorm running statistics are put back
    afterwards (the first forward already updated them), and :func:`is_recomputing` is true."""
    norms = [m for child in segment for m in child.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False) if v is not None} for m in norms]
    _RECOMPUTE.depth = getattr(_RECOMPUTE, "depth", 0) + 1
    try:
        yield
    finally:
        _RECOMPUTE.depth -= 1
        with torch.no_grad():
            for module, buffers in zip(norms, saved, strict=True):
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)


def checkpoint_segments(body: nn.Sequential) -> list[tuple[nn.Module, ...]]:
    """The body cut after every child that is or holds a spiking neuron: each segment's input is the
    only tensor kept for backward (spikes, mostly), everything inside is recomputed. Plain tuples of
    the body's own children: nothing is built or registered per forward."""
    segments, current = [], []
    for child in body:
        current.append(child)
        if any(isinstance(m, SpikingNeuron) for m in child.modules()):
            segments.append(tuple(current))
            current = []
    if current:
        segments.append(tuple(current))
    return segments


def _run_segment(segment: tuple[nn.Module, ...], y: Tensor) -> Tensor:
    for module in segment:
        y = module(y)
    return y


@dataclass(frozen=True)
class SNNOptions:
    """Neuron, surrogate, norm and encoder choices shared by all model builders."""

    timesteps: int = 4
    neuron: str = "lif"
    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    detach_reset: bool = False
    surrogate: str = "atan"
    surrogate_alpha: float | None = None
    learnable_alpha: bool = False
    norm: str = "tdbn"
    tdbn_alpha: float = 1.0
    encoder: str = "direct"
    backend: str = "fused"
    checkpoint_activations: bool = False  # recompute each block's activations in backward (memory for time)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise SpikepruneError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.timesteps < 1:
            raise SpikepruneError(f"timesteps must be >= 1, got {self.timesteps}")

    def neuron_module(self, channels: int | None = None) -> SpikingNeuron:
        """A fresh neuron (with an MPBN membrane norm over ``channels`` when norm='mpbn')."""
        options: dict = dict(
            v_threshold=self.v_threshold,
            v_reset=self.v_reset,
            detach_reset=self.detach_reset,
            surrogate=build_surrogate(self.surrogate, self.surrogate_alpha, self.learnable_alpha),
            backend=self.backend,
        )
        if self.norm == "mpbn" and channels is not None:
            options["norm"] = MembraneBatchNorm(channels)
        name = self.neuron.lower()
        if name == "lif":
            options["tau"] = self.tau
        elif name == "plif":
            options["init_tau"] = self.tau
        return build_neuron(name, **options)

    def batch_norm(self, channels: int, dims: int) -> nn.Module:
        """Norm after a synaptic layer, applied on the time-folded batch (tdBN statistics over T·B)."""
        if self.norm == "none":
            return nn.Identity()
        bn = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims](channels)
        with torch.no_grad():
            bn.weight.fill_(self.tdbn_alpha * self.v_threshold)
        return bn


class SpikingNetwork(nn.Module):
    """Base class: encoder + ``stem`` (runs once per input under direct encoding) + ``body`` on [T, B, ...].

    Subclasses set ``self.stem`` (stateless modules on ``[N, ...]``) and ``self.body`` (modules on
    ``[T, B, ...]`` ending with the readout layer).
    """

    def __init__(self, options: SNNOptions, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.options = options
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)
        self.timesteps = options.timesteps
        self.step_shape = self.input_shape
        if options.encoder == "frames":
            if len(self.input_shape) < 2 or self.input_shape[0] != options.timesteps:
                raise SpikepruneError(
                    f"encoder 'frames' needs input_shape (T, C, ...) with T equal to timesteps={options.timesteps}, "
                    f"got {self.input_shape}; build the event data with as many time bins as the model's timesteps"
                )
            self.step_shape = self.input_shape[1:]
        self.encoder = build_encoder(options.encoder, options.timesteps)
        self.stem: nn.Module = nn.Identity()
        self.body: nn.Module = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        static = len(self.input_shape) + 1
        if x.dim() == static:
            if self.options.encoder == "direct":
                y = self.stem(x)
                y = y.unsqueeze(0).expand(self.timesteps, *y.shape)
            else:
                y = self._stem_per_step(self.encoder(x))
        elif x.dim() == static + 1 and self.options.encoder != "frames":
            if x.shape[0] != self.timesteps:
                raise SpikepruneError(
                    f"{type(self).__name__} got a sequence of T={x.shape[0]} steps but was built with "
                    f"timesteps={self.timesteps}; build it with timesteps={x.shape[0]} or bin the data into "
                    f"{self.timesteps} frames"
                )
            y = self._stem_per_step(x)
        else:
            sequence = "" if self.options.encoder == "frames" else " or [T, B, ...]"
            raise SpikepruneError(
                f"{type(self).__name__} expects input [B, {', '.join(map(str, self.input_shape))}]{sequence}, "
                f"got shape {tuple(x.shape)}"
            )
        return self._body(y).mean(0)

    def _body(self, y: Tensor) -> Tensor:
        if not (
            self.options.checkpoint_activations and torch.is_grad_enabled() and isinstance(self.body, nn.Sequential)
        ):
            return self.body(y)
        for segment in checkpoint_segments(self.body):
            y = checkpoint(
                _run_segment, segment, y, use_reentrant=False,
                context_fn=lambda segment=segment: (contextlib.nullcontext(), _recomputing(segment)),
            )  # fmt: skip
        return y

    def _stem_per_step(self, x_seq: Tensor) -> Tensor:
        t, b = x_seq.shape[:2]
        return self.stem(x_seq.flatten(0, 1)).unflatten(0, (t, b))

    def spiking_neurons(self) -> list[SpikingNeuron]:
        return [m for m in self.modules() if isinstance(m, SpikingNeuron)]

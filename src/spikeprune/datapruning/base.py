"""The data-pruner interface of the training loop.

A data pruner decides, per epoch, which examples are visited and with what loss weight. It may attach
forward hooks to the model to read per-example quantities of the *training* forward pass (no extra
pass), hand them over after each step (:meth:`DataPruner.collect`), and receive them back gathered
across ranks with the step's losses and logits (:meth:`DataPruner.observe`). Every rank holds the same
pruner state, so every rank draws the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class EpochPlan:
    """Examples of one epoch (global indices into the training set) and their loss weights."""

    indices: Tensor
    weights: Tensor | None = None  # same length as indices; None means all ones


@dataclass
class StepStats:
    """Per-example quantities of one training step, from the forward pass only (detached, on CPU)."""

    indices: Tensor
    targets: Tensor
    logits: Tensor
    losses: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


class DataPruner:
    """Default: every example, every epoch, weight 1."""

    def attach(self, model: nn.Module) -> None:
        """Called once with the (unwrapped) model before training; register forward hooks here."""

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        return EpochPlan(torch.arange(num_examples))

    def epoch_size(self, epoch: int, num_examples: int) -> int:
        """How many examples :meth:`plan` will return for ``epoch`` (the LR schedule counts real steps)."""
        return num_examples

    @property
    def observes(self) -> bool:
        """Whether :meth:`observe` wants statistics (the loop skips gathering them otherwise)."""
        return type(self).observe is not DataPruner.observe

    def collect(self) -> dict[str, Tensor]:
        """Per-example tensors ``[B, ...]`` computed by hooks during the last forward (local batch)."""
        return {}

    def observe(self, stats: StepStats) -> None:
        """Per-example statistics of a step (already gathered across ranks)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

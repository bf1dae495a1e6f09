"""The two extension points of the one training loop: data pruners and sparsifiers.

A *data pruner* decides, per epoch, which examples are visited and with what loss weight, and may
read per-example statistics of every step (gathered across ranks under DDP). A *sparsifier* adjusts
the model around each optimizer step (masks, straight-through gradients, mask logits). Both default
to doing nothing; methods in ``spikeprune.datapruning`` and ``spikeprune.sparsity`` subclass them.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """Per-example quantities of one training step, from the forward pass only (detached)."""

    indices: Tensor
    targets: Tensor
    logits: Tensor
    losses: Tensor


class DataPruner:
    """Default: every example, every epoch, weight 1."""

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        return EpochPlan(torch.arange(num_examples))

    def epoch_size(self, epoch: int, num_examples: int) -> int:
        """How many examples :meth:`plan` will return for ``epoch`` (the LR schedule counts real steps)."""
        return num_examples

    def observe(self, stats: StepStats) -> None:
        """Per-example statistics of a step (already gathered across ranks)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Sparsifier:
    """Default: no sparsity. Subclasses override what they need."""

    def attach(self, model: nn.Module) -> None:
        """Called once with the (unwrapped) model, before the optimizer is built."""

    def param_groups(self) -> list[dict[str, Any]]:
        """Extra optimizer parameter groups (e.g. mask logits with their own learning rate)."""
        return []

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Annealing hooks."""

    def regularization(self) -> Tensor | None:
        """A term added to the loss of every step."""
        return None

    def before_step(self) -> None:
        """After backward, before the optimizer step (gradients can be edited here)."""

    def after_step(self) -> None:
        """After the optimizer step (masks can be re-applied here)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

"""The sparsifier interface of the training loop: act on the model around each optimizer step."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class Sparsifier:
    """Default: no sparsity. Subclasses (masks, SR-STE, SpikeNM) override what they need."""

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

    def on_epoch_end(self) -> None:
        """After the epoch's last step, before its metrics, evaluation and checkpoint (lazy state is settled here)."""

    def epoch_metrics(self) -> dict[str, float]:
        """Figures for the epoch log (e.g. mask flip rate), read at the end of each epoch."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

"""The data-pruner interface, shared by the Trainer and by users' own training loops.

A data pruner decides, per epoch, which examples are visited and with what loss weight. It may attach
forward hooks to the model to read per-example quantities of the *training* forward pass (no extra
pass), hand them over after each step (:meth:`DataPruner.collect`), and receive them back gathered
across ranks with the step's losses and logits (:meth:`DataPruner.observe`). Every rank holds the same
pruner state, so every rank draws the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Sampler

from spikeprune.errors import SpikepruneError


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


def budget(num_examples: int, prune_ratio: float) -> int:
    """Examples kept per pruned epoch, ``round((1 − r)·N)``, at least 1."""
    if not 0.0 <= prune_ratio < 1.0:
        raise SpikepruneError(f"prune ratio must be in [0, 1), got {prune_ratio}")
    return max(1, min(num_examples, round((1.0 - prune_ratio) * num_examples)))


@dataclass(frozen=True)
class PruningSchedule:
    """Which epochs see all data: ``warmup_epochs`` at the start (to score everyone) and the last
    ``ceil(anneal_fraction·epochs)`` (to finish on the full distribution, as InfoBatch does)."""

    epochs: int
    warmup_epochs: int = 1
    anneal_fraction: float = 0.125

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.warmup_epochs < 0 or not 0.0 <= self.anneal_fraction <= 1.0:
            raise SpikepruneError(
                f"bad pruning schedule: epochs={self.epochs}, warmup_epochs={self.warmup_epochs}, "
                f"anneal_fraction={self.anneal_fraction} (need epochs>=1, warmup>=0, anneal in [0, 1])"
            )

    @property
    def anneal_epochs(self) -> int:
        return math.ceil(self.anneal_fraction * self.epochs)

    def is_full(self, epoch: int) -> bool:
        return epoch < self.warmup_epochs or epoch >= self.epochs - self.anneal_epochs

    def pruned_epochs(self) -> int:
        return sum(not self.is_full(e) for e in range(self.epochs))

    def theoretical_speedup(self, prune_ratio: float) -> float:
        """Best possible speedup over full data: epochs / (full epochs + pruned epochs·(1 − r))."""
        pruned = self.pruned_epochs()
        return self.epochs / (self.epochs - pruned + pruned * (1.0 - prune_ratio))


class WithIndex(Dataset):
    """Wrap a dataset of ``(x, y)`` items so that each item also carries its index: ``(x, y, i)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        x, y = self.dataset[index][:2]
        return x, y, index


class _PlanSampler(Sampler[int]):
    def __init__(self, indices: Tensor) -> None:
        self.indices = indices

    def __iter__(self):
        return iter(self.indices.tolist())

    def __len__(self) -> int:
        return len(self.indices)


class DataPruner:
    """Default: every example, every epoch, weight 1 (full data).

    In your own loop (no Trainer needed)::

        pruner.attach(model)
        for epoch in range(epochs):
            sampler = pruner.sampler(epoch, len(train_set))
            for x, y, idx in DataLoader(WithIndex(train_set), batch_size=64, sampler=sampler):
                loss = pruner.loss(model(x), y, idx)   # weighted per-example loss; updates the scores
                optimizer.zero_grad(); loss.backward(); optimizer.step()

    No global state is touched: shuffling uses a generator seeded by ``(seed, epoch)``.
    """

    seed: int = 0
    _weight_of: Tensor | None = None

    # --- what subclasses override ------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """Called once with the (unwrapped) model before training; register forward hooks here."""

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        return EpochPlan(torch.arange(num_examples))

    def epoch_size(self, epoch: int, num_examples: int) -> int:
        """How many examples epoch ``epoch`` will visit (exact, or an estimate for random sizes);
        the learning-rate schedule counts the steps that will really run."""
        return num_examples

    def collect(self) -> dict[str, Tensor]:
        """Per-example tensors ``[B, ...]`` computed by hooks during the last forward (local batch)."""
        return {}

    def observe(self, stats: StepStats) -> None:
        """Per-example statistics of a step (already gathered across ranks)."""

    def epoch_metrics(self) -> dict[str, float]:
        """Figures for the epoch log (e.g. scoring time), read at the end of each epoch."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # --- shared ------------------------------------------------------------------------------
    @property
    def observes(self) -> bool:
        """Whether :meth:`observe` wants statistics (the loop skips gathering them otherwise)."""
        return type(self).observe is not DataPruner.observe

    def sampler(self, epoch: int, num_examples: int) -> Sampler[int]:
        """A sampler over this epoch's plan (shuffled); remembers the plan's weights for :meth:`loss`."""
        plan = self.plan(epoch, num_examples)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self._weight_of = None
        if plan.weights is not None:
            self._weight_of = torch.ones(num_examples)
            self._weight_of[plan.indices] = plan.weights.float()
        return _PlanSampler(plan.indices[torch.randperm(len(plan.indices), generator=generator)])

    def loss(self, logits: Tensor, targets: Tensor, indices: Tensor, criterion=F.cross_entropy) -> Tensor:
        """Weighted mean of ``criterion(logits, targets, reduction='none')``; feeds the pruner's scores."""
        losses = criterion(logits, targets, reduction="none")
        indices = torch.as_tensor(indices).cpu()
        if self.observes:
            self.observe(
                StepStats(
                    indices=indices,
                    targets=targets.detach().cpu(),
                    logits=logits.detach().float().cpu(),
                    losses=losses.detach().float().cpu(),
                    extras={k: v.cpu() for k, v in self.collect().items()},
                )
            )
        if self._weight_of is None:
            return losses.mean()
        return (losses * self._weight_of[indices].to(losses.device)).mean()


class ScheduledPruner(DataPruner):
    """Base of the pruning methods: ``k = round((1 − r)·N)`` examples in every epoch that the
    schedule does not mark full, and a generator per epoch seeded by ``(seed, epoch)``."""

    def __init__(
        self, prune_ratio: float, epochs: int, *, warmup_epochs: int = 1, anneal_fraction: float = 0.125, seed: int = 0
    ) -> None:
        budget(1, prune_ratio)  # validates the ratio
        self.prune_ratio = float(prune_ratio)
        self.schedule = PruningSchedule(epochs, warmup_epochs, anneal_fraction)
        self.seed = int(seed)

    def epoch_size(self, epoch: int, num_examples: int) -> int:
        return num_examples if self.schedule.is_full(epoch) else budget(num_examples, self.prune_ratio)

    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 7_919 + epoch)

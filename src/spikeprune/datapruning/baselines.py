"""The baselines SADP must beat, behind the same interface and the same warm-up/annealing schedule.

* ``random``: a fresh uniform subset of ``k`` examples per epoch (weights 1: already unbiased).
* ``loss``: importance sampling with the ANN gradient-norm bound ``‖softmax(z) − onehot(y)‖``
  (Katharopoulos & Fleuret 2018), same sampling and weights as SADP: the spike-blind control.
* ``ucb``: the ``k`` examples with the highest upper confidence bound ``mean + c·std`` of their
  loss (exponential moving estimates), as in Raju et al. 2021, unweighted.
* ``infobatch``: InfoBatch (Qin et al., ICLR 2024): each epoch, examples whose last loss is below
  the mean are dropped with probability ``r`` and the surviving ones among them are weighted
  ``1/(1 − r)``; the last ``anneal_fraction`` of epochs use all data. Its epoch size is random.

"Full data" is :class:`~spikeprune.datapruning.base.DataPruner` itself; "full data with fewer
epochs" (same compute) is a plain run with ``round((1 − r)·epochs)`` epochs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from spikeprune.datapruning.base import EpochPlan, ScheduledPruner, StepStats, budget
from spikeprune.datapruning.probe import delta_norm
from spikeprune.datapruning.sampling import ImportanceSampledPruner
from spikeprune.errors import SpikepruneError


class LossImportance(ImportanceSampledPruner):
    """Importance sampling with the ANN bound ``‖δ‖`` (no spike information)."""

    def score(self, stats: StepStats) -> Tensor:
        return delta_norm(stats.logits, stats.targets)


class UniformRandom(ScheduledPruner):
    """A uniformly random ``k``-subset per pruned epoch."""

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        if self.schedule.is_full(epoch):
            return EpochPlan(torch.arange(num_examples))
        order = torch.randperm(num_examples, generator=self.generator(epoch))
        return EpochPlan(order[: budget(num_examples, self.prune_ratio)])


class UCB(ScheduledPruner):
    """Top-``k`` by ``mean + c·std`` of each example's loss (moving estimates with decay ``ema``)."""

    def __init__(
        self,
        prune_ratio: float,
        epochs: int,
        *,
        c: float = 1.0,
        ema: float = 0.8,
        warmup_epochs: int = 1,
        anneal_fraction: float = 0.125,
        seed: int = 0,
    ) -> None:
        super().__init__(prune_ratio, epochs, warmup_epochs=warmup_epochs, anneal_fraction=anneal_fraction, seed=seed)
        if not 0.0 <= ema < 1.0 or c < 0:
            raise SpikepruneError(f"UCB needs ema in [0, 1) and c >= 0, got ema={ema}, c={c}")
        self.c, self.ema = float(c), float(ema)
        self.mean: Tensor | None = None
        self.var: Tensor | None = None
        self.seen: Tensor | None = None

    def _ensure(self, n: int) -> None:
        if self.mean is None or self.mean.numel() < n:
            self.mean, self.var = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
            self.seen = torch.zeros(n, dtype=torch.bool)

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        self._ensure(num_examples)
        if self.schedule.is_full(epoch):
            return EpochPlan(torch.arange(num_examples))
        bound = self.mean + self.c * self.var.sqrt()
        bound[~self.seen] = math.inf  # never seen: explore first
        ties = torch.rand(num_examples, generator=self.generator(epoch), dtype=torch.float64)
        bound = bound + 1e-9 * ties  # break ties at random
        return EpochPlan(torch.topk(bound, budget(num_examples, self.prune_ratio)).indices)

    def observe(self, stats: StepStats) -> None:
        self._ensure(int(stats.indices.max()) + 1)
        idx, loss = stats.indices.long(), stats.losses.double()
        first = ~self.seen[idx]
        old = torch.where(first, loss, self.mean[idx])
        mean = self.ema * old + (1 - self.ema) * loss
        var = torch.where(first, torch.zeros_like(loss), self.ema * self.var[idx] + (1 - self.ema) * (loss - old) ** 2)
        self.mean[idx], self.var[idx], self.seen[idx] = mean, var, True

    def state_dict(self) -> dict[str, Any]:
        return {} if self.mean is None else {"mean": self.mean, "var": self.var, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.mean, self.var, self.seen = state["mean"].double(), state["var"].double(), state["seen"].bool()


class InfoBatch(ScheduledPruner):
    """InfoBatch: drop below-mean-loss examples with probability ``r``, rescale the survivors."""

    def __init__(
        self,
        prune_ratio: float,
        epochs: int,
        *,
        anneal_fraction: float = 0.125,
        initial_score: float = 3.0,
        seed: int = 0,
    ) -> None:
        super().__init__(prune_ratio, epochs, warmup_epochs=0, anneal_fraction=anneal_fraction, seed=seed)
        self.initial_score = float(initial_score)
        self.scores: Tensor | None = None

    def _ensure(self, n: int) -> None:
        if self.scores is None or self.scores.numel() < n:
            self.scores = torch.full((n,), self.initial_score, dtype=torch.float64)

    def epoch_size(self, epoch: int, num_examples: int) -> int:
        """Expected size from the current scores (the realised size is random)."""
        self._ensure(num_examples)
        if self.schedule.is_full(epoch):
            return num_examples
        well_learned = int((self.scores < self.scores.mean()).sum())
        return num_examples - round(self.prune_ratio * well_learned)

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        self._ensure(num_examples)
        if self.schedule.is_full(epoch):
            return EpochPlan(torch.arange(num_examples))
        well_learned = self.scores < self.scores.mean()
        draws = torch.rand(num_examples, generator=self.generator(epoch), dtype=torch.float64)
        dropped = well_learned & (draws < self.prune_ratio)
        kept = torch.nonzero(~dropped).squeeze(1)
        weights = torch.where(well_learned[kept], 1.0 / (1.0 - self.prune_ratio), 1.0).float()
        return EpochPlan(kept, weights)

    def observe(self, stats: StepStats) -> None:
        self._ensure(int(stats.indices.max()) + 1)
        self.scores[stats.indices.long()] = stats.losses.double()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scores is None else {"scores": self.scores}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scores = state["scores"].double()

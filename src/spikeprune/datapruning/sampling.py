"""Sampling exactly k of N examples with prescribed inclusion probabilities, and unbiased weights.

Importance sampling for data pruning needs three pieces:

1. **Inclusion probabilities** ``π_i = min(1, c·p_i)`` with ``c`` chosen so that ``Σ π_i = k``
   (water-filling: examples whose scaled probability would exceed 1 are taken for sure and the
   rest of the budget is spread over the others).
2. **An exactly-k draw** whose marginal inclusion probabilities are exactly ``π``: systematic
   sampling. Lay the ``π_i`` end to end on ``[0, k)`` in a random order and take the examples hit by
   the points ``u, u + 1, …, u + k − 1`` for one ``u ~ U[0, 1)``. Since every ``π_i ≤ 1``, no example is
   hit twice, and an example is hit with probability equal to its length ``π_i``.
3. **Weights** ``w_i = k / (N·π_i)``: ``E[(1/k) Σ_{i∈S} w_i g_i] = (1/N) Σ_i g_i``, so the weighted
   mean gradient over the sample is an unbiased estimate of the full-data mean gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from spikeprune.datapruning.base import EpochPlan, ScheduledPruner, StepStats, budget
from spikeprune.errors import SpikepruneError


def floor_probabilities(scores: Tensor, epsilon: float) -> Tensor:
    """``p_i = (1 − ε)·S_i/ΣS + ε/N``: proportional to the scores, with every example reachable."""
    if not 0.0 < epsilon <= 1.0:
        raise SpikepruneError(f"epsilon must be in (0, 1], got {epsilon}")
    scores = scores.double().clamp(min=0)
    total = scores.sum()
    n = scores.numel()
    uniform = torch.full_like(scores, 1.0 / n)
    if not torch.isfinite(total) or total <= 0:
        return uniform
    return (1.0 - epsilon) * scores / total + epsilon * uniform


def inclusion_probabilities(p: Tensor, k: int) -> Tensor:
    """``π = min(1, c·p)`` with ``Σ π = k`` (water-filling over the capped entries)."""
    n = p.numel()
    if not 1 <= k <= n:
        raise SpikepruneError(f"sample size k={k} must be in [1, {n}]")
    if k == n:
        return torch.ones_like(p, dtype=torch.float64)
    p = p.double()
    if bool((p <= 0).any()):
        raise SpikepruneError("inclusion probabilities need strictly positive p (use an epsilon floor)")
    order = torch.argsort(p, descending=True)
    sorted_p = p[order]
    # tail[m] = sum of sorted_p[m:], the mass left when the m largest are capped at 1
    tail = torch.flip(torch.cumsum(torch.flip(sorted_p, [0]), 0), [0])
    capped = torch.arange(k, dtype=torch.float64)
    scale = (k - capped) / tail[:k]
    # the smallest m for which the largest uncapped entry fits under 1
    fits = scale * sorted_p[:k] <= 1.0 + 1e-12
    m = int(torch.nonzero(fits)[0]) if bool(fits.any()) else k
    pi_sorted = torch.ones_like(sorted_p)
    if m < n:
        c = (k - m) / float(tail[m])
        pi_sorted[m:] = (c * sorted_p[m:]).clamp(max=1.0)
    pi = torch.empty_like(pi_sorted)
    pi[order] = pi_sorted
    return pi


def systematic_sample(pi: Tensor, generator: torch.Generator) -> Tensor:
    """Indices of an exactly-``round(Σπ)`` sample with inclusion probabilities ``pi`` (each ≤ 1)."""
    k = round(float(pi.sum()))
    order = torch.randperm(pi.numel(), generator=generator)
    ends = torch.cumsum(pi[order].double(), 0)
    ends = ends * (k / float(ends[-1]))  # remove rounding drift so the last end is exactly k
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])
    # unit i is hit when some point u + j lies in [start_i, end_i)
    hit = torch.floor(ends - u) > torch.floor(starts - u)
    chosen = order[hit]
    if chosen.numel() != k:  # only possible through floating-point ties at a boundary
        raise RuntimeError(f"systematic sampling drew {chosen.numel()} of {k}; please report this")
    return chosen


def unbiased_weights(pi: Tensor, chosen: Tensor, num_examples: int) -> Tensor:
    """``w_i = k/(N·π_i)`` for the chosen examples (mean weight over the population is 1)."""
    k = chosen.numel()
    return (k / (num_examples * pi[chosen])).float()


class ImportanceSampledPruner(ScheduledPruner):
    """Per-epoch importance sampling of exactly ``k`` examples from per-example scores.

    Subclasses define :meth:`score` (from the forward statistics of a step). Scores of examples not
    visited stay as they were (optionally smoothed by an EMA ``score_ema``); warm-up epochs visit all
    data so every example gets a score, and annealing epochs at the end visit all data again.
    """

    def __init__(
        self,
        prune_ratio: float,
        epochs: int,
        *,
        epsilon: float = 0.1,
        warmup_epochs: int = 1,
        anneal_fraction: float = 0.125,
        score_ema: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(prune_ratio, epochs, warmup_epochs=warmup_epochs, anneal_fraction=anneal_fraction, seed=seed)
        floor_probabilities(torch.ones(1), epsilon)  # validates epsilon
        if not 0.0 <= score_ema < 1.0:
            raise SpikepruneError(f"score_ema must be in [0, 1), got {score_ema}")
        self.epsilon = float(epsilon)
        self.score_ema = float(score_ema)
        self.scores: Tensor | None = None
        self.seen: Tensor | None = None
        self._last: dict[str, float] = {}

    def score(self, stats: StepStats) -> Tensor:
        raise NotImplementedError

    def _ensure(self, num_examples: int) -> None:
        if self.scores is None or self.scores.numel() != num_examples:
            self.scores = torch.ones(num_examples, dtype=torch.float64)
            self.seen = torch.zeros(num_examples, dtype=torch.bool)

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        self._ensure(num_examples)
        if self.schedule.is_full(epoch) or self.prune_ratio == 0.0:
            self._last = {"full_epoch": 1.0}
            return EpochPlan(torch.arange(num_examples))
        k = budget(num_examples, self.prune_ratio)
        scores = self.scores.clone()
        if bool((~self.seen).any()):  # never scored: treat as average, reachable
            scores[~self.seen] = scores[self.seen].mean() if bool(self.seen.any()) else 1.0
        pi = inclusion_probabilities(floor_probabilities(scores, self.epsilon), k)
        chosen = systematic_sample(pi, self.generator(epoch))
        weights = unbiased_weights(pi, chosen, num_examples)
        self._last = {"full_epoch": 0.0, "max_weight": float(weights.max()), "certain": float((pi >= 1).sum())}
        return EpochPlan(chosen, weights)

    def observe(self, stats: StepStats) -> None:
        self._ensure(max(int(stats.indices.max()) + 1, 0 if self.scores is None else self.scores.numel()))
        new = self.score(stats).double()
        idx = stats.indices.long()
        if self.score_ema > 0:
            old = torch.where(self.seen[idx], self.scores[idx], new)
            new = self.score_ema * old + (1.0 - self.score_ema) * new
        self.scores[idx] = new
        self.seen[idx] = True

    def epoch_metrics(self) -> dict[str, float]:
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        if self.scores is None:
            return {}
        return {"scores": self.scores, "seen": self.seen, "last": dict(self._last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scores, self.seen = state["scores"].double(), state["seen"].bool()
            self._last = dict(state.get("last", {}))  # this epoch's plan figures, for a resume inside it

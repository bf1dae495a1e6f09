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

import torch
from torch import Tensor

from spikeprune.errors import SpikepruneError


def budget(num_examples: int, prune_ratio: float) -> int:
    """Examples kept per epoch, ``round((1 − r)·N)``, at least 1."""
    if not 0.0 <= prune_ratio < 1.0:
        raise SpikepruneError(f"prune ratio must be in [0, 1), got {prune_ratio}")
    return max(1, min(num_examples, round((1.0 - prune_ratio) * num_examples)))


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

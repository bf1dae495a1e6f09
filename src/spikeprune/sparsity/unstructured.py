"""Unstructured sparsity allocation: which weights of which layers to keep for a target sparsity.

Every criterion takes ``{layer name: weight}`` (layers in forward order) and a target sparsity ``s``
over those layers, and returns ``{layer name: 0/1 mask}`` keeping exactly ``N − round(s·N)``
weights (the target is met to one weight). Inside a layer the largest magnitudes are kept; the
criteria differ in how many each layer keeps:

* ``global``: one magnitude threshold over all layers.
* ``uniform``: the same sparsity in every layer.
* ``uniform-plus``: uniform, but the first layer dense and the last keeping ≥ 20% (Gale et al. 2019).
* ``erk``: Erdős–Rényi-Kernel densities ∝ (sum of dims)/(product of dims) (Evci et al. 2020).
* ``lamp``: LAMP scores ``w_u² / Σ_{v≥u} w_v²`` (ascending order, inclusive) and one global
  threshold (Lee et al. 2021); a layer's largest weight always scores 1, so no layer collapses.
* ``slamp``: LAMP scores times a per-layer temporal factor ``ρ_l^p`` (see :mod:`.slamp`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikeprune.errors import SpikepruneError


def keep_count(total: int, sparsity: float) -> int:
    if not 0.0 <= sparsity < 1.0:
        raise SpikepruneError(f"sparsity must be in [0, 1), got {sparsity}")
    return total - round(sparsity * total)


def lamp_scores(weight: Tensor) -> Tensor:
    """LAMP score of every weight: its squared magnitude over the energy of the weights not smaller."""
    squares = weight.detach().double().flatten().square()
    order = torch.argsort(squares, stable=True)
    ascending = squares[order]
    not_smaller = torch.flip(torch.cumsum(torch.flip(ascending, [0]), 0), [0])  # Σ_{v ≥ u}
    scores = torch.zeros_like(squares)
    scores[order] = torch.where(not_smaller > 0, ascending / not_smaller, torch.zeros_like(ascending))
    return scores.view_as(weight)


def topk_masks(scores: dict[str, Tensor], keep: int) -> dict[str, Tensor]:
    """Keep exactly the ``keep`` highest scores over all layers together."""
    flat = torch.cat([s.detach().double().flatten() for s in scores.values()])
    if not 1 <= keep <= flat.numel():
        raise SpikepruneError(f"cannot keep {keep} of {flat.numel()} weights")
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = chosen[start : start + score.numel()].view(score.shape).float()
        start += score.numel()
    return masks


def layer_magnitude_masks(weights: dict[str, Tensor], counts: dict[str, int]) -> dict[str, Tensor]:
    """Keep the ``counts[name]`` largest magnitudes in each layer."""
    return {name: topk_masks({name: w.abs()}, counts[name])[name] for name, w in weights.items()}


def allocate(fractions: dict[str, float], sizes: dict[str, int], keep: int) -> dict[str, int]:
    """Integer keep counts ≈ ``fractions·sizes`` (each ≤ size, ≥ 1) summing exactly to ``keep``."""
    raw = {n: min(max(fractions[n] * sizes[n], 0.0), sizes[n]) for n in sizes}
    counts = {n: max(1, min(sizes[n], math.floor(v))) for n, v in raw.items()}
    diff = keep - sum(counts.values())
    order = sorted(sizes, key=lambda n: raw[n] - math.floor(raw[n]), reverse=diff > 0)
    while diff != 0:
        moved = False
        for name in order:
            if diff > 0 and counts[name] < sizes[name]:
                counts[name] += 1
                diff -= 1
                moved = True
            elif diff < 0 and counts[name] > 1:
                counts[name] -= 1
                diff += 1
                moved = True
            if diff == 0:
                break
        if not moved:
            raise SpikepruneError(f"cannot keep exactly {keep} weights in layers of sizes {list(sizes.values())}")
    return counts


def _sizes(weights: dict[str, Tensor]) -> dict[str, int]:
    return {name: w.numel() for name, w in weights.items()}


def global_magnitude(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    keep = keep_count(sum(_sizes(weights).values()), sparsity)
    return topk_masks({name: w.abs() for name, w in weights.items()}, keep)


def uniform(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    sizes = _sizes(weights)
    keep = keep_count(sum(sizes.values()), sparsity)
    return layer_magnitude_masks(weights, allocate({n: 1.0 - sparsity for n in sizes}, sizes, keep))


def uniform_plus(weights: dict[str, Tensor], sparsity: float, last_min_density: float = 0.2) -> dict[str, Tensor]:
    """First layer dense, last layer at least ``last_min_density``, the same sparsity elsewhere."""
    sizes = _sizes(weights)
    names = list(sizes)
    keep = keep_count(sum(sizes.values()), sparsity)
    first, last = names[0], names[-1]
    last_min = math.ceil(last_min_density * sizes[last]) if len(names) > 1 else 0
    if keep < sizes[first] + last_min:
        raise SpikepruneError(
            f"uniform-plus cannot reach sparsity {sparsity}: the dense first layer and 20% of the last "
            f"already keep {sizes[first] + last_min} of {sum(sizes.values())} weights; use another method"
        )
    middle = [n for n in names if n not in (first, last)]
    rest = keep - sizes[first]
    density = rest / sum(sizes[n] for n in names[1:]) if len(names) > 1 else 1.0
    fractions = {first: 1.0, **{n: density for n in middle}}
    if len(names) > 1:
        fractions[last] = max(density, last_min_density)
        if fractions[last] > density and middle:
            spare = rest - fractions[last] * sizes[last]
            for n in middle:
                fractions[n] = spare / sum(sizes[m] for m in middle)
    counts = allocate(fractions, sizes, keep)
    if len(names) > 1 and counts[last] < last_min:  # rounding moved weights out of the last layer
        raise SpikepruneError("uniform-plus allocation failed to keep 20% of the last layer; report this")
    return layer_magnitude_masks(weights, counts)


def erk(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """Densities ∝ ε·(Σ dims)/(Π dims), capped at 1 with ε re-solved for the remaining layers."""
    sizes = _sizes(weights)
    keep = keep_count(sum(sizes.values()), sparsity)
    raw = {n: sum(w.shape) / math.prod(w.shape) for n, w in weights.items()}
    dense: set[str] = set()
    while True:
        budget = keep - sum(sizes[n] for n in dense)
        free = [n for n in sizes if n not in dense]
        epsilon = budget / sum(raw[n] * sizes[n] for n in free)
        saturated = {n for n in free if epsilon * raw[n] > 1.0}
        if not saturated:
            break
        dense |= saturated
    fractions = {n: 1.0 if n in dense else epsilon * raw[n] for n in sizes}
    return layer_magnitude_masks(weights, allocate(fractions, sizes, keep))


def lamp(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    keep = keep_count(sum(_sizes(weights).values()), sparsity)
    return topk_masks({name: lamp_scores(w) for name, w in weights.items()}, keep)


def scaled_lamp(
    weights: dict[str, Tensor], sparsity: float, factors: dict[str, float], power: float
) -> dict[str, Tensor]:
    """LAMP with each layer's scores multiplied by ``factors[layer] ** power`` (SLAMP)."""
    keep = keep_count(sum(_sizes(weights).values()), sparsity)
    return topk_masks({name: lamp_scores(w) * float(factors[name]) ** power for name, w in weights.items()}, keep)


CRITERIA = {
    "global": global_magnitude,
    "uniform": uniform,
    "uniform-plus": uniform_plus,
    "erk": erk,
    "lamp": lamp,
}

"""Statistics every method benchmark reports: seed-paired differences, 95% intervals, verdicts.

A benchmark cell compares a method with its reference (dense, full data, or a named baseline) on the
same seeds. The per-seed difference ``d_s = method_s − reference_s`` removes what the seed does to
both (initialisation, data order, split); its mean gets a Student-t interval over seeds, and the
verdict reads the interval: **better** when it lies above zero, **worse** below, **tied** when it
contains zero. Unpaired comparisons (Welch's interval) are offered for contenders that share no
seeds; they are wider, because the seed's effect stays in the noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as scipy_stats

CONFIDENCE = 0.95
MIN_SEEDS = 5  # what a reported accuracy cell needs (the benchmarks' rule)


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def verdict(self, higher_is_better: bool = True) -> str:
        """better / worse / tied for a difference ``method − reference``."""
        if self.low > 0:
            return "better" if higher_is_better else "worse"
        if self.high < 0:
            return "worse" if higher_is_better else "better"
        return "tied"

    def format(self, scale: float = 1.0, digits: int = 2, signed: bool = True) -> str:
        """``+0.52 ± 0.31`` (values times ``scale``; 100 turns accuracy fractions into points)."""
        sign = "+" if signed else ""
        return f"{self.mean * scale:{sign}.{digits}f} ± {self.half_width * scale:.{digits}f}"

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "half_width": self.half_width}


def _checked(values: Iterable[float], what: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) < 2:
        raise ValueError(f"{what} needs at least 2 values for an interval, got {len(values)}")
    if any(math.isnan(v) for v in values):
        raise ValueError(f"{what} holds NaN")
    return values


def mean_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval: ``mean ± t_{(1+c)/2, n−1} · s / √n``."""
    values = _checked(values, "mean_interval")
    n = len(values)
    mean = statistics.fmean(values)
    half = scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, confidence)


def paired_difference(
    method: Mapping[Any, float], reference: Mapping[Any, float], confidence: float = CONFIDENCE
) -> Interval:
    """Interval of ``method − reference`` over the seeds (keys) both have; a seed missing from one is an error."""
    if set(method) != set(reference):
        missing = sorted(set(method) ^ set(reference), key=str)
        raise ValueError(f"paired comparison needs the same seeds on both sides; unmatched: {missing}")
    return mean_interval([method[seed] - reference[seed] for seed in sorted(method, key=str)], confidence)


def unpaired_difference(
    method: Sequence[float], reference: Sequence[float], confidence: float = CONFIDENCE
) -> Interval:
    """Welch's interval of ``mean(method) − mean(reference)`` for samples that share no seeds."""
    a, b = _checked(method, "method"), _checked(reference, "reference")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    mean = statistics.fmean(a) - statistics.fmean(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(mean, mean, mean, len(a) + len(b), confidence)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = scipy_stats.t.ppf((1 + confidence) / 2, dof) * se
    return Interval(mean, mean - half, mean + half, len(a) + len(b), confidence)


def compare(
    rows: Sequence[Mapping[str, Any]],
    cell: Callable[[Mapping[str, Any]], tuple],
    reference: Callable[[Mapping[str, Any]], tuple | None],
    value: str = "test_accuracy",
    seed: str = "seed",
    higher_is_better: bool = True,
) -> list[dict[str, Any]]:
    """Paired verdicts for every cell of a benchmark.

    ``cell(row)`` names the cell a run belongs to (e.g. ``(workload, sparsity, criterion)``);
    ``reference(row)`` names the cell it is compared with (e.g. ``(workload, sparsity, "lamp")``), or
    None for rows that are not compared. Rows of one cell are paired with the reference's by ``seed``.
    Returns one dict per compared cell: the cell, the reference, both means, the difference's interval
    and the verdict.
    """
    values: dict[tuple, dict[Any, float]] = {}
    for row in rows:
        values.setdefault(cell(row), {})[row[seed]] = float(row[value])
    out = []
    for row_cell in values:
        example = next(r for r in rows if cell(r) == row_cell)
        ref_cell = reference(example)
        if ref_cell is None or ref_cell == row_cell or ref_cell not in values:
            continue
        own, ref = values[row_cell], values[ref_cell]
        seeds = sorted(set(own) & set(ref), key=str)
        if len(seeds) < 2:
            continue
        diff = paired_difference({s: own[s] for s in seeds}, {s: ref[s] for s in seeds})
        out.append(
            {
                "cell": list(row_cell),
                "reference": list(ref_cell),
                "seeds": seeds,
                "mean": statistics.fmean(own[s] for s in seeds),
                "reference_mean": statistics.fmean(ref[s] for s in seeds),
                "difference": diff.as_dict(),
                "verdict": diff.verdict(higher_is_better),
            }
        )
    return out


def tally_text(verdicts: Mapping[str, int]) -> str:
    """``better in 1, tied in 8 of 9 cells``: a verdict count in the words every benchmark report uses."""
    said = ", ".join(f"{k} in {verdicts[k]}" for k in ("better", "tied", "worse") if verdicts.get(k))
    return f"{said} of {sum(verdicts.values())} cells"


def plot_interval(ax, x: float, interval: Interval, scale: float = 1.0, **style: Any) -> None:
    """One point with its interval as an error bar on a matplotlib axis."""
    ax.errorbar(
        [x], [interval.mean * scale], yerr=[[interval.half_width * scale]], capsize=3, linestyle="none", **style
    )

"""The benchmarks' statistics: intervals on known data, verdicts, paired against unpaired."""

import math

import pytest


@pytest.fixture(scope="module")
def stats(bench_script):
    return bench_script("stats")


def test_interval_on_known_data(stats):
    # mean 3, sample sd sqrt(2.5), t_{0.975, 4} = 2.776445
    interval = stats.mean_interval([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert interval.mean == pytest.approx(3.0)
    assert interval.half_width == pytest.approx(half, rel=1e-9)
    assert (interval.low, interval.high, interval.n) == (pytest.approx(3 - half), pytest.approx(3 + half), 5)
    # 99% is wider than 95%
    assert stats.mean_interval([1, 2, 3, 4, 5], confidence=0.99).half_width > half
    assert interval.format(scale=1, digits=2) == f"+3.00 ± {half:.2f}"


@pytest.mark.parametrize(
    ("values", "verdict"),
    [
        ([0.01, 0.02, 0.015, 0.012, 0.018], "better"),
        ([-0.01, -0.02, -0.015, -0.012, -0.018], "worse"),
        ([0.01, -0.01, 0.02, -0.02, 0.0], "tied"),
    ],
)
def test_verdict_logic(stats, values, verdict):
    interval = stats.mean_interval(values)
    assert interval.verdict() == verdict
    flipped = {"better": "worse", "worse": "better", "tied": "tied"}[verdict]
    assert interval.verdict(higher_is_better=False) == flipped


def test_paired_removes_the_seed_effect_unpaired_does_not(stats):
    # each seed moves both contenders alike; the method is always 0.5 points better
    seed_effect = {0: 0.90, 1: 0.95, 2: 0.85, 3: 0.93, 4: 0.88}
    reference = dict(seed_effect)
    method = {s: v + 0.005 + 0.0005 * (s % 2) for s, v in seed_effect.items()}
    paired = stats.paired_difference(method, reference)
    unpaired = stats.unpaired_difference(list(method.values()), list(reference.values()))
    assert paired.verdict() == "better"
    assert unpaired.verdict() == "tied"
    assert paired.mean == pytest.approx(unpaired.mean)
    assert paired.half_width < unpaired.half_width / 10


def test_welch_matches_scipy(stats):
    from scipy import stats as scipy_stats

    a, b = [0.91, 0.93, 0.92, 0.95, 0.90, 0.94], [0.89, 0.90, 0.88, 0.91, 0.87]
    interval = stats.unpaired_difference(a, b)
    result = scipy_stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert (interval.low, interval.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_paired_needs_matching_seeds_and_two_values(stats):
    with pytest.raises(ValueError, match="unmatched"):
        stats.paired_difference({0: 1.0, 1: 1.0}, {0: 1.0, 2: 1.0})
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_interval([1.0])


def test_compare_pairs_cells_by_seed(stats):
    rows = []
    for seed in range(5):
        rows.append({"sparsity": 0.9, "criterion": "lamp", "seed": seed, "test_accuracy": 0.90 + 0.01 * seed})
        rows.append({"sparsity": 0.9, "criterion": "slamp", "seed": seed, "test_accuracy": 0.91 + 0.01 * seed})
        rows.append({"sparsity": 0.9, "criterion": "global", "seed": seed, "test_accuracy": 0.90 + 0.01 * (4 - seed)})
    cells = stats.compare(
        rows,
        cell=lambda r: (r["sparsity"], r["criterion"]),
        reference=lambda r: (r["sparsity"], "lamp"),
    )
    by = {tuple(c["cell"]): c for c in cells}
    assert set(by) == {(0.9, "slamp"), (0.9, "global")}
    assert by[(0.9, "slamp")]["verdict"] == "better"
    assert by[(0.9, "slamp")]["difference"]["mean"] == pytest.approx(0.01)
    assert by[(0.9, "global")]["verdict"] == "tied"
    assert by[(0.9, "slamp")]["seeds"] == [0, 1, 2, 3, 4]

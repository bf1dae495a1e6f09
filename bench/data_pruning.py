"""For the same training cost, which data-pruning method gives the best accuracy?

1. **Equal-cost grid.** On each data-pruning workload of ``bench/workloads.py`` (``mnist1d40k-scnn1d``,
   ``nmnist5k-vggsnn``, ``mnist5k-scnn``) and seeds 0–4, every method trains at budgets of 30%, 50%
   and 70% of the full-data cost (examples visited; full data is the workload's dense run of E epochs):

   * ``fewer_epochs``: full data for ``b·E`` epochs (the last one cut short), the cosine schedule over
     the steps that run;
   * ``random``, ``loss``, ``ucb``, ``sadp``: E epochs of ``round(b·N)`` examples each (``prune_ratio =
     1 − b``), no warm-up and no annealing: at E = 2–4 epochs a full warm-up or annealing epoch alone
     costs 25–50% of the full-data budget, more than the smallest budget;
   * ``infobatch``: InfoBatch's own first epoch is full (it needs every example's loss), then each
     epoch's drop probability is calibrated from the current losses so that the expected epoch size
     meets the rest of the budget (``CalibratedInfoBatch``); a budget below its first epoch's cost
     cannot be met and is reported as such.

   Runs are interleaved: seed → workload → (full, then per budget the methods in an order that rotates
   from block to block). Each cell reports the mean accuracy, the realized cost, and the paired
   difference to random and to InfoBatch (and to full data) with a 95% interval and a verdict
   (``bench/stats.py``).
2. **Speed** (``--timing``, on an idle machine): per workload, full data and every method at every
   budget, on ``TIMING_EXAMPLES`` training examples, in rotating order after one discarded full-data run,
   ``TIMING_REPEATS`` repeats (seeds); medians of the speedup against full data, against the ideal ``1/b``,
   and SADP's scoring overhead.
3. **Score quality and variance** on each workload's seed-0 full-data model: Spearman correlation of
   SADP's score and of the ANN bound ``‖δ‖`` with the exact per-example gradient norm, and the variance
   of the weighted gradient estimator at k = N/2 under uniform and importance sampling (ANN bound,
   SADP, exact norm).

Run: ``python bench/data_pruning.py [--quick] [--runs FILE]`` (grid and diagnostics), then
``python bench/data_pruning.py --timing`` with nothing else running. Writes
``bench/results/data_pruning.{json,md,png}`` and ``data_pruning_timing.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from spikeprune.data import IndexedDataset
from spikeprune.datapruning import DataPruner, EpochPlan, SpikeProbe, delta_norm, spike_aware_score
from spikeprune.datapruning.baselines import InfoBatch
from spikeprune.datapruning.sampling import (
    budget,
    floor_probabilities,
    inclusion_probabilities,
    systematic_sample,
    unbiased_weights,
)
from spikeprune.train import Trainer

try:
    from harness import RESULTS, RunStore, environment, run_time_line, summarize, threads_text, write_results
    from stats import compare, mean_interval, tally_text
    from workloads import WORKLOADS, Workload, datasets, train_dense
except ImportError:  # imported as bench.data_pruning
    from bench.harness import RESULTS, RunStore, environment, run_time_line, summarize, threads_text, write_results
    from bench.stats import compare, mean_interval, tally_text
    from bench.workloads import WORKLOADS, Workload, datasets, train_dense

NAME = "data_pruning"
WORKLOAD_NAMES = ("mnist1d40k-scnn1d", "nmnist5k-vggsnn", "mnist5k-scnn")
BUDGETS = (0.3, 0.5, 0.7)
PRUNERS = ("random", "infobatch", "loss", "ucb", "sadp")
METHODS = ("fewer_epochs", *PRUNERS)
SEEDS = (0, 1, 2, 3, 4)
SCHEDULE = {"warmup_epochs": 0, "anneal_fraction": 0.0}
COST_TOLERANCE = 0.02  # realized cost within 2% of the budget
MAX_INFOBATCH_RATIO = 0.95  # survivors are weighted 1/(1 − r): at most 20; a budget that needs more is missed
BELOW_MEAN_MAX = 0.9  # the largest fraction of examples below the mean loss (InfoBatch's droppable ones)
SCORE_EXAMPLES = 512
DRAWS = 2000
SAMPLE_FRACTION = 0.5
EPSILON = 0.1
GRAD_CHUNK = 32
TIMING_EXAMPLES = {"mnist1d40k-scnn1d": 8000, "nmnist5k-vggsnn": 1024, "mnist5k-scnn": 2000}
TIMING_REPEATS = 5

QUICK = dict(
    workloads=("mnist5k-scnn",),
    seeds=(0, 1),
    budgets=(0.5,),
    methods=METHODS,
    epochs=2,
    train_examples=256,
    test_examples=128,
    score_examples=64,
    draws=50,
    timing_methods=("fewer_epochs", "sadp"),
)


# --------------------------------------------------------------------------------------------- contenders
class FewerEpochs(DataPruner):
    """Full data for ``b·E`` epochs: whole passes, then the last pass cut to the remaining fraction."""

    def __init__(self, passes: float, seed: int = 0) -> None:
        self.passes, self.seed = passes, seed

    def epoch_size(self, epoch: int, num_examples: int) -> int:
        return min(num_examples, round((self.passes - epoch) * num_examples))

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        size = self.epoch_size(epoch, num_examples)
        if size >= num_examples:
            return EpochPlan(torch.arange(num_examples))
        generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return EpochPlan(torch.randperm(num_examples, generator=generator)[:size])


class CalibratedInfoBatch(InfoBatch):
    """InfoBatch whose drop probability is set each epoch so that the expected epoch size is ``target``.

    InfoBatch drops below-mean-loss examples with probability r and weights their survivors
    ``1/(1 − r)``; its epoch size is random. Here r_e = (N − target)/#below-mean (at most 1), from the
    current losses, so the realized cost follows a budget (within the binomial noise of the draws).
    The first epoch is InfoBatch's own: full, since no loss is known yet. r stays at or below
    ``MAX_INFOBATCH_RATIO``, so a survivor's weight is at most 20; where a budget needs more, the realized
    cost exceeds it and the cell says so.
    """

    def __init__(self, epochs: int, target: int, seed: int = 0) -> None:
        super().__init__(0.5, epochs, anneal_fraction=0.0, seed=seed)
        self.target = target

    def _ratio(self, num_examples: int) -> float:
        well_learned = int((self.scores < self.scores.mean()).sum())
        wanted = (num_examples - self.target) / well_learned if well_learned else 0.0
        return min(MAX_INFOBATCH_RATIO, max(0.0, wanted))

    def epoch_size(self, epoch: int, num_examples: int) -> int:
        self._ensure(num_examples)
        self.prune_ratio = self._ratio(num_examples)
        return super().epoch_size(epoch, num_examples)

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        self._ensure(num_examples)
        self.prune_ratio = self._ratio(num_examples)
        return super().plan(epoch, num_examples)


def infobatch_target(workload: Workload, fraction: float, num_examples: int) -> int | None:
    """Per-epoch size after InfoBatch's full first epoch that spends ``fraction`` of the full-data cost,
    or None when the first epoch alone exceeds it."""
    rest = fraction * workload.epochs * num_examples - num_examples
    if workload.epochs < 2 or rest <= 0:
        return None
    target = round(rest / (workload.epochs - 1))
    # at most the below-mean examples can be dropped, at the capped rate; below-mean fractions stay under
    # BELOW_MEAN_MAX in every run we have seen, so a smaller epoch cannot be reached: do not spend the run
    if target < num_examples * (1 - MAX_INFOBATCH_RATIO * BELOW_MEAN_MAX):
        return None
    return target


def run_method(
    workload: Workload,
    seed: int,
    method: str,
    fraction: float,
    train: IndexedDataset,
    test: IndexedDataset,
) -> dict[str, Any]:
    """One run at ``fraction`` of the full-data cost; returns its record (no files)."""
    n = len(train)
    extra: dict[str, Any] = {}
    pruner: DataPruner | None = None
    if method == "fewer_epochs":
        passes = fraction * workload.epochs
        extra["epochs"] = math.ceil(passes - 1e-9)
        pruner = FewerEpochs(passes, seed)
    elif method == "infobatch":
        target = infobatch_target(workload, fraction, n)
        if target is None:
            return {"feasible": False}
        pruner = CalibratedInfoBatch(workload.epochs, target, seed)
    else:
        extra.update(data_pruning=method, prune_ratio=1.0 - fraction, data_pruning_options=dict(SCHEDULE))
    config = workload.config(seed, **extra)
    trainer = Trainer(config, None, train_set=train, test_set=test, data_pruner=pruner)
    summary = trainer.fit()
    record: dict[str, Any] = {
        "feasible": True,
        "test_accuracy": summary["test_accuracy"],
        "examples_visited": summary["examples_visited"],
        "cost": summary["examples_visited"] / (workload.epochs * n),
        "train_seconds": summary["train_seconds"],
        "epochs": config.epochs,
        "epoch_examples": [r["examples_visited"] for r in trainer.history],
    }
    if method == "sadp":
        record["scoring_seconds"] = sum(r.get("scoring_seconds", 0.0) for r in trainer.history)
    if method in ("sadp", "loss"):
        record["max_weight"] = [r.get("max_weight") for r in trainer.history]
    return record


def run_grid(
    workloads: list[Workload],
    seeds: tuple[int, ...],
    budgets: tuple[float, ...],
    methods: tuple[str, ...],
    runs: Path | None,
    train_examples: int | None = None,
    test_examples: int | None = None,
    cache: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, nn.Module]]:
    """Every run, interleaved and resumable; also the seed-first full-data model of each workload."""
    store = RunStore(runs, ("workload", "method", "budget", "seed"))
    kept: dict[str, nn.Module] = {}
    started = time.perf_counter()
    for seed in seeds:
        for block, workload in enumerate(workloads):
            train, test = datasets(workload, seed, train_examples, test_examples)
            model, record = train_dense(workload, seed, train, test, cache=cache)
            kept.setdefault(workload.name, model)
            if store.get(workload=workload.name, method="full", budget=1.0, seed=seed) is None:
                store.add(
                    {"workload": workload.name, "method": "full", "budget": 1.0, "seed": seed, "cost": 1.0, **record}
                )
            for b_index, fraction in enumerate(budgets):
                shift = (seed + block + b_index) % len(methods)
                for method in methods[shift:] + methods[:shift]:
                    if store.get(workload=workload.name, method=method, budget=fraction, seed=seed) is not None:
                        continue
                    record = run_method(workload, seed, method, fraction, train, test)
                    row = store.add(
                        {"workload": workload.name, "method": method, "budget": fraction, "seed": seed, **record}
                    )
                    if row["feasible"]:
                        print(
                            f"[{time.perf_counter() - started:6.0f}s] {workload.name} seed {seed} {method} "
                            f"b={fraction}: acc {row['test_accuracy']:.4f}, cost {row['cost']:.3f}",
                            flush=True,
                        )
    return store.rows, kept


# --------------------------------------------------------------------------------------------- aggregate
def within_budget(row: dict[str, Any]) -> bool:
    """A run that could be made and spent its budget (within the tolerance): the only runs compared."""
    if not row.get("feasible", True):
        return False
    return row["method"] == "full" or abs(row["cost"] - row["budget"]) <= COST_TOLERANCE * row["budget"]


def aggregate(rows: list[dict[str, Any]], workloads: list[Workload], budgets, methods) -> dict[str, Any]:
    """Per workload and budget: each method's accuracy and cost, and its paired verdicts. A method that
    cannot meet a budget (InfoBatch's full first epoch, or its drop rate's cap) is reported, not compared."""
    feasible = [r for r in rows if within_budget(r)]
    out: dict[str, Any] = {}
    for workload in workloads:
        mine = [r for r in feasible if r["workload"] == workload.name]
        full = [r for r in mine if r["method"] == "full"]
        if len(full) < 2:
            continue
        entry: dict[str, Any] = {"full": mean_interval([r["test_accuracy"] for r in full]).as_dict(), "cells": []}
        for fraction in budgets:
            for method in methods:
                group = [r for r in mine if r["method"] == method and r["budget"] == fraction]
                missed = [
                    r
                    for r in rows
                    if r["workload"] == workload.name
                    and r["method"] == method
                    and r["budget"] == fraction
                    and not within_budget(r)
                ]
                cell: dict[str, Any] = {"method": method, "budget": fraction, "seeds": sorted(r["seed"] for r in group)}
                if missed and not group:
                    costs = [r["cost"] for r in missed if r.get("feasible", True)]
                    cell.update(feasible=False, realized_costs=costs)
                    entry["cells"].append(cell)
                    continue
                if len(group) < 2:
                    continue
                costs = [r["cost"] for r in group]
                cell.update(
                    feasible=True,
                    accuracy=mean_interval([r["test_accuracy"] for r in group]).as_dict(),
                    cost_mean=statistics.fmean(costs),
                    cost_max_error=max(abs(c - fraction) for c in costs),
                    cost_within_tolerance=all(abs(c - fraction) <= COST_TOLERANCE * fraction for c in costs),
                )
                entry["cells"].append(cell)
        cell_rows = [r for r in mine if r["method"] != "full"] + [
            {**r, "budget": b} for r in full for b in budgets
        ]  # full data appears in every budget as a reference
        for reference in ("random", "infobatch", "full"):
            verdicts = compare(
                cell_rows,
                cell=lambda r: (r["budget"], r["method"]),
                reference=lambda r, ref=reference: (r["budget"], ref),
            )
            for v in verdicts:
                budget_value, method = v["cell"]
                for cell in entry["cells"]:
                    if cell["method"] == method and cell["budget"] == budget_value:
                        cell.setdefault("versus", {})[reference] = {
                            "difference": v["difference"],
                            "verdict": v["verdict"],
                            "seeds": v["seeds"],
                        }
        out[workload.name] = entry
    return out


# --------------------------------------------------------------------------------------------- timing
def timing(workloads: list[Workload], budgets, methods, repeats: int, examples: dict[str, int]) -> dict[str, Any]:
    """Train seconds of full data and of every method at every budget, interleaved; medians over repeats."""
    out: dict[str, Any] = {}
    for workload in workloads:
        samples: dict[str, list[dict[str, float]]] = {}
        # a discarded full-data run first: a fresh process's first runs are slower (scnn1d: 5.0 s per epoch in
        # the first, about 4.2 s in the next three), which would favour whichever contender runs first
        train, test = datasets(workload, 0, examples.get(workload.name), 256)
        Trainer(workload.config(0), None, train_set=train, test_set=test).fit()
        for repeat in range(repeats):
            train, test = datasets(workload, repeat, examples.get(workload.name), 256)
            contenders = [("full", 1.0)] + [(m, b) for b in budgets for m in methods]
            shift = repeat % len(contenders)
            for method, fraction in contenders[shift:] + contenders[:shift]:
                if method == "full":
                    config = workload.config(repeat)
                    trainer = Trainer(config, None, train_set=train, test_set=test)
                    trainer.fit()
                    record = {"train_seconds": sum(r["train_seconds"] for r in trainer.history), "cost": 1.0}
                else:
                    record = run_method(workload, repeat, method, fraction, train, test)
                    if not record["feasible"]:
                        continue
                samples.setdefault(f"{method}@{fraction}", []).append(record)
            print(f"timing {workload.name} repeat {repeat} done", flush=True)
        full = samples["full@1.0"]
        cells = {}
        for key, records in samples.items():
            if key == "full@1.0":
                continue
            method, fraction = key.split("@")
            speedups = [f["train_seconds"] / r["train_seconds"] for f, r in zip(full, records, strict=False)]
            cost = statistics.fmean(r["cost"] for r in records)
            cell = {
                "method": method,
                "budget": float(fraction),
                "speedup": statistics.median(speedups),
                "speedups": speedups,
                "ideal": 1.0 / cost,
                "fraction_of_ideal": statistics.median(speedups) * cost,
            }
            if method == "sadp":
                cell["scoring_overhead_percent"] = statistics.median(
                    100 * r["scoring_seconds"] / r["train_seconds"] for r in records
                )
            cells[key] = cell
        out[workload.name] = {
            "train_examples": len(datasets(workload, 0, examples.get(workload.name), 16)[0]),
            "full_seconds": summarize([r["train_seconds"] for r in full]),
            "cells": cells,
        }
    return out


# --------------------------------------------------------------------------------------------- diagnostics
def loop_copy(model: nn.Module) -> nn.Module:
    """A copy whose neurons use the step-by-step autograd backend (the fused one does not support vmap)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if hasattr(module, "backend"):
            module.backend = "loop"
    return twin.eval()


def per_example_gradients(
    model: nn.Module, x: Tensor, y: Tensor, bounded: list[str], chunk: int
) -> tuple[Tensor, Tensor]:
    """Exact per-example gradients of the cross-entropy, flattened over all parameters ``[N, D]``,
    and the per-example gradient norm over the parameters named in ``bounded`` ``[N]`` (may be empty)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(chosen: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, (chosen, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    flat, bounded_norms = [], []
    for start in range(0, len(x), chunk):
        grads = per_example(params, x[start : start + chunk], y[start : start + chunk])
        rows = torch.cat([g.flatten(1) for g in grads.values()], dim=1)
        flat.append(rows.cpu())
        squares = rows.new_zeros(len(rows), dtype=torch.float64)  # zero when ``bounded`` is empty
        for k in bounded:
            squares += grads[k].flatten(1).double().square().sum(1)
        bounded_norms.append(squares.sqrt().cpu())
    return torch.cat(flat), torch.cat(bounded_norms)


def gram(g: Tensor, block: int = 65_536) -> Tensor:
    """``G Gᵀ`` in float64, accumulated over column blocks (G may be large)."""
    out = torch.zeros(g.shape[0], g.shape[0], dtype=torch.float64)
    for start in range(0, g.shape[1], block):
        part = g[:, start : start + block].double()
        out += part @ part.T
    return out


def sadp_scores(model: nn.Module, x: Tensor, y: Tensor, chunk: int) -> tuple[Tensor, Tensor, dict[str, str]]:
    """SADP score and ANN bound of each example from the fused model (forward with grad enabled)."""
    probe = SpikeProbe(model)
    scores, ann = [], []
    try:
        with torch.enable_grad():
            for start in range(0, len(x), chunk):
                xb, yb = x[start : start + chunk], y[start : start + chunk]
                logits = model(xb).detach().float()
                extras = probe.collect()
                scores.append(spike_aware_score(logits.cpu(), yb.cpu(), {k: v.cpu() for k, v in extras.items()}))
                ann.append(delta_norm(logits.cpu(), yb.cpu()))
    finally:
        probe.remove()
    return torch.cat(scores).double(), torch.cat(ann).double(), dict(probe.names)


def spearman(a: Tensor, b: Tensor) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.numpy(), b.numpy())[0])


def estimator_mse(kernel: Tensor, coefficients: Tensor) -> tuple[float, float]:
    """Mean and standard error over draws of ‖Σ_i a_i g_i − ḡ‖² given ``K = G Gᵀ`` and rows ``a``."""
    n = kernel.shape[0]
    centred = coefficients - 1.0 / n
    errors = ((centred @ kernel) * centred).sum(1)
    return float(errors.mean()), float(errors.std() / math.sqrt(len(errors)))


def variance_study(kernel: Tensor, scores: dict[str, Tensor], draws: int, seed: int) -> dict[str, Any]:
    """E‖ĝ − ḡ‖² at k = SAMPLE_FRACTION·N: uniform without replacement, and importance sampling per score."""
    n = kernel.shape[0]
    k = budget(n, 1.0 - SAMPLE_FRACTION)
    generator = torch.Generator().manual_seed(seed)
    estimators: dict[str, dict[str, float]] = {}
    rows = torch.zeros(draws, n, dtype=torch.float64)
    for d in range(draws):
        rows[d, torch.randperm(n, generator=generator)[:k]] = 1.0 / k
    mse, se = estimator_mse(kernel, rows)
    estimators["uniform"] = {"mse": mse, "standard_error": se}
    for name, score in scores.items():
        pi = inclusion_probabilities(floor_probabilities(score, EPSILON), k)
        rows = torch.zeros(draws, n, dtype=torch.float64)
        for d in range(draws):
            chosen = systematic_sample(pi, generator)
            rows[d, chosen] = unbiased_weights(pi, chosen, n).double() / k
        mse, se = estimator_mse(kernel, rows)
        estimators[name] = {"mse": mse, "standard_error": se, "max_weight": float((k / (n * pi)).max())}
    base = estimators["uniform"]["mse"]
    for values in estimators.values():
        values["relative_to_uniform"] = values["mse"] / base
    spread = float(kernel.trace() - kernel.sum() / n)  # Σ‖g_i − ḡ‖²: closed form for uniform, as a check
    return {
        "examples": n,
        "k": k,
        "draws": draws,
        "epsilon": EPSILON,
        "estimators": estimators,
        "uniform_closed_form": (1.0 - k / n) / k * spread / (n - 1),
    }


def score_study(
    model: nn.Module, workload: Workload, examples: int, draws: int, train_examples: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score quality and estimator variance on a trained model and ``examples`` training examples."""
    started = time.perf_counter()
    model = model.eval()
    train, _ = datasets(workload, 0, train_examples, 16)
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:examples]
    x, y = train.data[chosen], train.targets[chosen]
    twin = loop_copy(model)
    sadp, ann, names = sadp_scores(model, x, y, chunk=128)
    modules = dict(twin.named_modules())
    bounded = [
        f"{name}.{pname}" if name else pname
        for name in (names["readout"], names["synapse"])
        for pname, _ in modules[name].named_parameters()
    ]
    flat, exact_bounded = per_example_gradients(twin, x, y, bounded, GRAD_CHUNK)
    kernel = gram(flat)
    del flat
    exact = kernel.diagonal().clamp(min=0).sqrt()
    quality = {
        "examples": examples,
        "spearman": {
            "sadp_vs_exact_all": spearman(sadp, exact),
            "ann_vs_exact_all": spearman(ann, exact),
            "sadp_vs_exact_bounded": spearman(sadp, exact_bounded),
            "ann_vs_exact_bounded": spearman(ann, exact_bounded),
        },
        "sadp_bound_holds_fraction": float((sadp >= exact_bounded * (1 - 1e-5)).double().mean()),
    }
    variance = variance_study(kernel, {"ann_bound": ann, "sadp": sadp, "oracle": exact}, draws, 0)
    quality["seconds"] = time.perf_counter() - started
    return quality, variance


# --------------------------------------------------------------------------------------------- report
LABELS = {
    "full": "full data",
    "fewer_epochs": "full data, fewer epochs",
    "random": "random",
    "infobatch": "InfoBatch (calibrated)",
    "loss": "loss importance (‖δ‖)",
    "ucb": "UCB",
    "sadp": "SADP",
}


def plot(grid: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(grid)
    fig, axes = plt.subplots(1, len(names), figsize=(6.0 * len(names), 4.8), squeeze=False)
    for col, name in enumerate(names):
        ax = axes[0][col]
        full = grid[name]["full"]
        ax.axhline(100 * full["mean"], color="black", lw=1.0, label="full data (cost 1)")
        ax.axhspan(100 * full["low"], 100 * full["high"], color="black", alpha=0.08)
        for i, method in enumerate(METHODS):
            cells = [c for c in grid[name]["cells"] if c["method"] == method and c.get("feasible")]
            if not cells:
                continue
            xs = [c["cost_mean"] + (i - 2.5) * 0.006 for c in cells]
            ys = [100 * c["accuracy"]["mean"] for c in cells]
            errs = [100 * c["accuracy"]["half_width"] for c in cells]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=LABELS[method], color=f"C{i}")
        ax.set_title(f"{name}: accuracy vs cost (95% intervals)")
        ax.set_xlabel("cost: examples visited / full data's")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _versus(cell: dict[str, Any], reference: str) -> str:
    v = cell.get("versus", {}).get(reference)
    if v is None:
        return "–"
    d = v["difference"]
    return f"{100 * d['mean']:+.2f} ± {100 * d['half_width']:.2f} {v['verdict']}"


def sadp_summary(grid: dict[str, Any]) -> list[str]:
    """SADP's verdicts in every workload and budget in one table, with their tally per reference."""
    lines = [
        "## SADP at a glance",
        "",
        "| workload | budget | SADP accuracy | vs random | vs InfoBatch | vs full data |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    tally: dict[str, Counter[str]] = {ref: Counter() for ref in ("random", "infobatch", "full")}
    for name, entry in grid.items():
        for cell in entry["cells"]:
            if cell["method"] != "sadp" or not cell.get("feasible", False):
                continue
            acc = cell["accuracy"]
            lines.append(
                f"| {name} | {cell['budget']:.0%} | {100 * acc['mean']:.2f} ± {100 * acc['half_width']:.2f} | "
                f"{_versus(cell, 'random')} | {_versus(cell, 'infobatch')} | {_versus(cell, 'full')} |"
            )
            for ref, counts in tally.items():
                if ref in cell.get("versus", {}):
                    counts[cell["versus"][ref]["verdict"]] += 1
    lines.append("")
    for ref, counts in tally.items():
        if counts:
            lines.append(f"- SADP vs {LABELS[ref]}: {tally_text(counts)}.")
    return [*lines, ""]


def markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    lines = [
        f"# {NAME}: accuracy at equal training cost" + (" (quick)" if payload["quick"] else ""),
        "",
        f"Generated by `bench/data_pruning.py`. Seeds {', '.join(map(str, settings['seeds']))}; budgets "
        f"{', '.join(f'{b:.0%}' for b in settings['budgets'])} of the full-data cost (examples visited). Every method "
        "trains the workload's E epochs with its ratio set by the budget and no warm-up or annealing, except "
        "'fewer epochs' (b·E passes of full data) and InfoBatch (its first epoch full, then calibrated to the "
        "budget). Accuracy is test accuracy in percent, mean ± 95% interval; differences are paired per seed "
        "(Student t), with a verdict.",
        run_time_line(
            payload,
            "the machine was shared with other work during the grid, and the grid was paused while anything was "
            "timed, so its train seconds (and their sum) are not timings (see Speed)",
        ),
        "",
    ]
    lines += sadp_summary(payload["grid"])
    for name, entry in payload["grid"].items():
        w = payload["workloads"][name]
        full = entry["full"]
        lines += [
            f"## {name}",
            "",
            f"{w['model']} on {w['dataset']}, T={w['timesteps']}, E={w['epochs']} epochs; full data "
            f"{100 * full['mean']:.2f} ± {100 * full['half_width']:.2f}.",
            "",
            "| budget | method | cost | accuracy | vs random | vs InfoBatch | vs full data |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for cell in entry["cells"]:
            if not cell.get("feasible", False):
                spent = sorted({f"{c:.2f}" for c in cell.get("realized_costs", [])})  # one figure when all agree
                why = "its full first epoch alone costs more"
                if spent:
                    shown = spent[0] if len(spent) == 1 else f"{spent[0]}–{spent[-1]}"
                    why = f"spent {shown} of the cost; its drop rate is capped at {MAX_INFOBATCH_RATIO}"
                lines.append(
                    f"| {cell['budget']:.0%} | {LABELS[cell['method']]} | – | cannot meet this budget ({why}) | | | |"
                )
                continue
            cost = f"{cell['cost_mean']:.3f}" + ("" if cell["cost_within_tolerance"] else " (off by >2%)")
            acc = cell["accuracy"]
            lines.append(
                f"| {cell['budget']:.0%} | {LABELS[cell['method']]} | {cost} | "
                f"{100 * acc['mean']:.2f} ± {100 * acc['half_width']:.2f} | {_versus(cell, 'random')} | "
                f"{_versus(cell, 'infobatch')} | {_versus(cell, 'full')} |"
            )
        lines.append("")
    timing_payload = payload.get("timing")
    if timing_payload:
        lines += timing_markdown(timing_payload)
    lines += [
        "## Score quality and estimator variance (seed-0 full-data models)",
        "",
        "| workload | examples | SADP vs exact (all) | ANN vs exact (all) | SADP vs exact (bounded) | "
        "ANN vs exact (bounded) | SADP ≥ exact bounded norm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, q in payload["score_quality"].items():
        s = q["spearman"]
        lines.append(
            f"| {name} | {q['examples']} | {s['sadp_vs_exact_all']:.3f} | {s['ann_vs_exact_all']:.3f} | "
            f"{s['sadp_vs_exact_bounded']:.3f} | {s['ann_vs_exact_bounded']:.3f} | "
            f"{100 * q['sadp_bound_holds_fraction']:.1f}% |"
        )
    lines += [
        "",
        "E‖ĝ − ḡ‖² of the weighted gradient estimate at k = N/2 (exact per-example gradients, Monte Carlo), "
        "relative to uniform sampling:",
        "",
        "| workload | ANN bound | SADP score | exact norm (oracle) | largest weight, SADP |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in payload["variance"].items():
        e = v["estimators"]
        lines.append(
            f"| {name} | {e['ann_bound']['relative_to_uniform']:.3f} | {e['sadp']['relative_to_uniform']:.3f} | "
            f"{e['oracle']['relative_to_uniform']:.3f} | {e['sadp']['max_weight']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


def timing_markdown(timing_payload: dict[str, Any]) -> list[str]:
    env = timing_payload["environment"]
    lines = [
        "## Speed",
        "",
        f"`bench/data_pruning.py --timing`, with nothing else running: {threads_text(env['threads'])} "
        f"({env['processor']}). "
        f"Per workload, full data and every method at every budget on a subset of the training data, in "
        f"rotating order after one discarded full-data run, {timing_payload['repeats']} repeats (seeds); train "
        "seconds exclude evaluation. Speedup = "
        "full-data seconds / method seconds, median over repeats; ideal = 1 / realized cost.",
        "",
        "| workload | examples | budget | method | speedup | ideal | fraction of ideal | scoring overhead |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, entry in timing_payload["workloads"].items():
        for cell in entry["cells"].values():
            overhead = f"{cell['scoring_overhead_percent']:.2f}%" if "scoring_overhead_percent" in cell else ""
            lines.append(
                f"| {name} | {entry['train_examples']} | {cell['budget']:.0%} | {LABELS[cell['method']]} | "
                f"{cell['speedup']:.2f}× | {cell['ideal']:.2f}× | {100 * cell['fraction_of_ideal']:.1f}% | {overhead} |"
            )
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--timing", action="store_true", help="the speed phase (run on an idle machine)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOAD_NAMES, default=list(WORKLOAD_NAMES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--runs", type=Path, default=None, help="JSON-lines file of finished runs (resume, append)")
    parser.add_argument("--out-dir", type=Path, default=None, help="default bench/results")
    parser.add_argument(
        "--report", action="store_true", help="re-render the results from --runs only (keeps the saved run time)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out_dir = Path(args.out_dir) if args.out_dir is not None else RESULTS
    q = QUICK if args.quick else {}
    names = q.get("workloads", args.workloads)
    workloads = [WORKLOADS[n] for n in names]
    if args.quick:
        workloads = [replace(w, epochs=QUICK["epochs"]) for w in workloads]
    budgets = q.get("budgets", BUDGETS)
    methods = q.get("methods", METHODS)
    if args.timing:
        examples = {w.name: QUICK["train_examples"] for w in workloads} if args.quick else TIMING_EXAMPLES
        repeats = 2 if args.quick else TIMING_REPEATS
        payload = {
            "repeats": repeats,
            "workloads": timing(workloads, budgets, q.get("timing_methods", methods), repeats, examples),
            "environment": environment(),
            "seconds": time.perf_counter() - started,
        }
        write_results(f"{NAME}_timing", payload, "\n".join(timing_markdown(payload)), out_dir)
        main_json = out_dir / f"{NAME}.json"
        report = json.loads(main_json.read_text()) if main_json.exists() else {}
        if "budgets" in report.get("settings", {}):  # put the timing into the main (equal-cost) report too
            report["timing"] = payload
            write_results(NAME, report, markdown(report), out_dir)
        elif report:
            print(f"{main_json} predates the equal-cost grid: the timing joins it when the grid writes it")
        return payload
    seeds = q.get("seeds", tuple(args.seeds))
    if args.report:  # the grid and diagnostics ran already: aggregate again with this code
        report = json.loads((out_dir / f"{NAME}.json").read_text())
        report["runs"] = RunStore(args.runs, ()).rows if args.runs else report["runs"]
        report["grid"] = aggregate(report["runs"], workloads, budgets, methods)
        write_results(NAME, report, markdown(report), out_dir)
        plot(report["grid"], report["runs"], out_dir / f"{NAME}.png")
        return report
    resumed = len(RunStore(args.runs, ()).rows) if args.runs else 0
    rows, models = run_grid(
        workloads,
        seeds,
        budgets,
        methods,
        args.runs,
        q.get("train_examples"),
        q.get("test_examples"),
        cache=not args.quick,
    )
    grid = aggregate(rows, workloads, budgets, methods)
    quality, variance = {}, {}
    for workload in workloads:
        quality[workload.name], variance[workload.name] = score_study(
            models[workload.name],
            workload,
            q.get("score_examples", SCORE_EXAMPLES),
            q.get("draws", DRAWS),
            q.get("train_examples"),
        )
    payload = {
        "question": "For the same training cost, which data-pruning method gives the best accuracy?",
        "quick": args.quick,
        "environment": environment(),
        "settings": {
            "seeds": list(seeds),
            "budgets": list(budgets),
            "methods": list(methods),
            "schedule": SCHEDULE,
            "cost_tolerance": COST_TOLERANCE,
        },
        "workloads": {w.name: {**asdict(w), "data_options": dict(w.data_options)} for w in workloads},
        "runs": rows,
        "resumed_runs": resumed,
        "grid": grid,
        "score_quality": quality,
        "variance": variance,
        "total_seconds": time.perf_counter() - started,
    }
    timing_file = out_dir / f"{NAME}_timing.json"
    if timing_file.exists() and not args.quick:
        payload["timing"] = json.loads(timing_file.read_text())
    write_results(NAME, payload, markdown(payload), out_dir)
    plot(grid, rows, out_dir / f"{NAME}.png")
    return payload


if __name__ == "__main__":
    main()

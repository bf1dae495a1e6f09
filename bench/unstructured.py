"""Which unstructured allocation criterion keeps SNN accuracy best at equal sparsity and retraining budget?

At equal sparsity and equal retraining budget, which allocation criterion keeps SNN accuracy best, and
what does each save?

1. **Dense runs.** ``scnn`` on ``mnist5k`` and ``scnn1d`` on ``mnist1d`` (settings in ``DATASETS``),
   seeds 0, 1, 2, each trained once into a temporary run folder and profiled on the test set (the
   dense reference: accuracy, effective SynOps, energy, firing rates).
2. **Prune and retrain.** From each dense run, every criterion in ``CRITERIA`` (global magnitude,
   uniform, uniform-plus, ERK, LAMP = SLAMP with p = 0, SLAMP p = 1, SLAMP p = 2) at every sparsity in
   ``SPARSITIES``, through :func:`spikeprune.sparsity.pipeline.prune_run`: all Conv/Linear weights
   (first and last layer included), one shot, BatchNorm recalibrated on the first 8 training batches
   (the same batches calibrate SLAMP's temporal factors), then ``FINETUNE_EPOCHS[dataset]`` epochs of
   retraining with the masks fixed, the dense run's optimizer, learning rate and cosine schedule:
   the same budget for every criterion and sparsity. uniform-plus (first layer dense, last ≥ 20 %)
   cannot reach every sparsity on every model; such a cell is recorded as infeasible (n/a). Runs
   are interleaved: seed → dataset → (untimed warm-up, dense run, then per sparsity the criteria in
   an order that rotates from block to block).
3. **Report.** Per (dataset, criterion, sparsity), mean ± std over seeds: accuracy after pruning
   (before retraining) and after retraining, Δ vs dense in points (paired per seed), achieved
   density, effective SynOps and energy per sample relative to dense (after retraining), mean
   firing rate dense → after pruning → after retraining (how much pruning disturbs the membranes),
   per-layer densities, and SLAMP's temporal factors ρ_l (seed 0). The "Targets" section checks,
   per dataset, that SLAMP (p = 2) is at least as accurate as LAMP and global magnitude at every
   sparsity ≥ 0.95 (mean over seeds), and says where SLAMP p = 1 stands.

LAMP is SLAMP with p = 0: SLAMP multiplies each layer's LAMP scores by ρ_l^p, and ρ_l^0 = 1, so the
scores and masks are LAMP's; it runs as ``method="lamp"``.

Run: ``python bench/unstructured.py`` (``--quick`` for a small smoke run). Writes
``bench/results/unstructured.{json,md}``, ``unstructured.png`` and ``unstructured_density.png`` (or
into ``--out-dir``).
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from spikeprune.data import IndexedDataset, build_dataset
from spikeprune.errors import SpikepruneError
from spikeprune.metrics import ProfileReport
from spikeprune.sparsity import prunable_layers
from spikeprune.sparsity.pipeline import prune_run
from spikeprune.train import Trainer, make_config
from spikeprune.train.trainer import profile_summary

try:
    from harness import environment, write_results
except ImportError:  # imported as bench.unstructured
    from bench.harness import environment, write_results

NAME = "unstructured"
QUESTION = (
    "At equal sparsity and equal retraining budget, which allocation criterion keeps SNN accuracy best, "
    "and what does each save?"
)

# Dense training per dataset. mnist5k: 4,000 train / 1,000 test real MNIST digits; mnist1d: 4,000 / 1,000.
DATASETS: dict[str, dict[str, Any]] = {
    "mnist5k": dict(model="scnn", epochs=6, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, timesteps=4),
    "mnist1d": dict(
        model="scnn1d", epochs=16, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, timesteps=4
    ),
}
# Retraining budget R after pruning, in epochs with the masks fixed: the same for every criterion and
# sparsity of a dataset (a third of the dense schedule on mnist5k, a quarter on mnist1d). prune_run
# retrains with the dense run's optimizer, learning rate and cosine schedule (restarted over R epochs).
FINETUNE_EPOCHS = {"mnist5k": 1, "mnist1d": 2}
# criterion -> (prune_run method, SLAMP power p or None)
CRITERIA: dict[str, tuple[str, float | None]] = {
    "global": ("global", None),
    "uniform": ("uniform", None),
    "uniform-plus": ("uniform-plus", None),
    "erk": ("erk", None),
    "lamp": ("lamp", None),  # = SLAMP with p = 0 (ρ^0 = 1)
    "slamp-p1": ("slamp", 1.0),
    "slamp-p2": ("slamp", 2.0),
}
LABELS = {
    "global": "global magnitude",
    "uniform": "uniform",
    "uniform-plus": "uniform-plus",
    "erk": "ERK",
    "lamp": "LAMP (SLAMP p=0)",
    "slamp-p1": "SLAMP p=1",
    "slamp-p2": "SLAMP p=2",
}
SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)
SEEDS = (0, 1, 2)
TARGET_FROM = 0.95  # the targets compare criteria at every sparsity >= this
DETAIL_SPARSITIES = (0.9, 0.98)  # per-layer densities in the Markdown and the density plot
DENSITY_PLOT_DATASET = "mnist5k"
WARMUP_EXAMPLES = 256  # one untimed epoch on this many examples before each (seed, dataset) block
UNIFORM_PLUS_LAST = 0.2  # uniform-plus keeps at least this fraction of the last layer

# --quick: the same code paths, tiny (mnist5k only, 1 dense epoch, one seed, one sparsity, 1 retraining
# epoch, profiles on the first 4 test batches of 128).
QUICK = dict(
    datasets=("mnist5k",),
    epochs=1,
    seeds=(0,),
    sparsities=(0.9,),
    criteria=("global", "lamp", "slamp-p2", "uniform-plus"),
    finetune_epochs=1,
    profile_batches=4,
)


# --------------------------------------------------------------------------------------------- runs
def stage_of(report: ProfileReport) -> dict[str, Any]:
    """The figures of one measurement, as ``prune_run`` records its stages."""
    return {
        "accuracy": report.totals.get("accuracy"),
        "firing_rates": {n.name: n.firing_rate for n in report.neurons},
        **profile_summary(report),
    }


def warm_up(dataset: str, settings: dict[str, Any], seed: int, examples: int = WARMUP_EXAMPLES) -> None:
    """One untimed short epoch, so one-time costs (data cache, allocator, thread pools, the switch from
    the other dataset's model) do not land on the block's first run."""
    train, test = build_dataset(dataset, seed=seed)
    train = IndexedDataset(
        train.data[:examples], train.targets[:examples], train.info, augment=train.augment, seed=train.seed
    )
    values = {**settings, "dataset": dataset, "epochs": 1, "seed": seed, "progress": False}
    Trainer(make_config(values, f"{NAME} warm-up"), None, train_set=train, test_set=test).fit()


def train_dense(
    dataset: str, settings: dict[str, Any], seed: int, folder: Path, profile_batches: int | None
) -> dict[str, Any]:
    """Train the dense run into ``folder`` and profile it on the test set."""
    config = make_config({**settings, "dataset": dataset, "seed": seed, "progress": False}, f"{NAME} settings")
    started = time.perf_counter()
    trainer = Trainer(config, folder)
    summary = trainer.fit()
    wall = time.perf_counter() - started
    return {
        "dataset": dataset,
        "seed": seed,
        "epochs": config.epochs,
        "test_accuracy": summary["test_accuracy"],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": wall,
        "train_examples": len(trainer.train_set),
        "test_examples": len(trainer.test_set),
        "layer_sizes": {name: module.weight.numel() for name, module in prunable_layers(trainer.model)},
        "stage": stage_of(trainer.profile(profile_batches)),
    }


def prune_one(
    dense_dir: Path,
    out_dir: Path,
    dataset: str,
    seed: int,
    criterion: str,
    sparsity: float,
    finetune_epochs: int,
    profile_batches: int | None,
) -> dict[str, Any]:
    """Prune the dense run with ``criterion`` to ``sparsity``, retrain, and keep the figures (not the run)."""
    method, power = CRITERIA[criterion]
    record: dict[str, Any] = {
        "dataset": dataset,
        "seed": seed,
        "criterion": criterion,
        "method": method,
        "slamp_power": power,
        "sparsity": sparsity,
        "finetune_epochs": finetune_epochs,
    }
    options = {"slamp_power": power} if power is not None else {}
    started = time.perf_counter()
    try:
        summary = prune_run(
            dense_dir,
            out_dir,
            method=method,
            sparsity=sparsity,
            finetune_epochs=finetune_epochs,
            profile_batches=profile_batches,
            progress=False,
            **options,
        )
    except SpikepruneError as error:
        if method != "uniform-plus" or "cannot reach" not in str(error):
            raise
        return {**record, "feasible": False, "reason": str(error), "wall_seconds": time.perf_counter() - started}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    pruning = summary["pruning"]
    return {
        **record,
        "feasible": True,
        "stages": pruning["stages"],
        "layer_density": pruning["layer_density"],
        "temporal_factors": pruning["temporal_factors"],
        "retrain_seconds": summary["train_seconds"],
        "wall_seconds": time.perf_counter() - started,
    }


def run_grid(
    datasets: dict[str, dict[str, Any]],
    criteria: tuple[str, ...],
    sparsities: tuple[float, ...],
    seeds: tuple[int, ...],
    finetune: dict[str, int],
    profile_batches: int | None,
    workdir: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All runs, interleaved: seed → dataset → (untimed warm-up, dense run, then per sparsity the
    criteria in an order that rotates from block to block). Returns dense and pruned records."""
    dense: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    blocks = dict.fromkeys(datasets, 0)  # per dataset, so the rotation also moves across seeds
    total = len(seeds) * len(datasets) * len(sparsities) * len(criteria)
    started = time.perf_counter()
    for seed in seeds:
        for dataset, settings in datasets.items():
            warm_up(dataset, settings, seed)
            folder = workdir / f"{dataset}-seed{seed}"
            record = train_dense(dataset, settings, seed, folder / "dense", profile_batches)
            dense.append(record)
            print(
                f"[{time.perf_counter() - started:7.0f}s] {dataset} dense seed={seed}: "
                f"acc {record['test_accuracy']:.4f}, train {record['train_seconds']:.1f}s",
                flush=True,
            )
            for sparsity in sparsities:
                shift = blocks[dataset] % len(criteria)
                for criterion in criteria[shift:] + criteria[:shift]:
                    out = folder / f"{criterion}-s{sparsity:g}"
                    run = prune_one(
                        folder / "dense", out, dataset, seed, criterion, sparsity, finetune[dataset], profile_batches
                    )
                    runs.append(run)
                    if run["feasible"]:
                        stages = run["stages"]
                        note = (
                            f"acc {stages['after_prune']['accuracy']:.4f} -> {stages['after_retrain']['accuracy']:.4f}"
                            f", density {stages['after_retrain']['density']:.4f}, retrain {run['retrain_seconds']:.1f}s"
                        )
                    else:
                        note = "infeasible"
                    print(
                        f"[{len(runs)}/{total} {time.perf_counter() - started:7.0f}s] {dataset} {criterion} "
                        f"s={sparsity:g} seed={seed}: {note} ({run['wall_seconds']:.1f}s)",
                        flush=True,
                    )
                blocks[dataset] += 1
            shutil.rmtree(folder, ignore_errors=True)
    return dense, runs


# --------------------------------------------------------------------------------------------- aggregate
def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def uniform_plus_limit(sizes: dict[str, int]) -> float:
    """The highest sparsity uniform-plus can reach: the first layer dense and 20 % of the last kept."""
    names = list(sizes)
    floor = sizes[names[0]] + (math.ceil(UNIFORM_PLUS_LAST * sizes[names[-1]]) if len(names) > 1 else 0)
    return 1.0 - floor / sum(sizes.values())


def aggregate(
    dense: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    criteria: tuple[str, ...],
    sparsities: tuple[float, ...],
) -> dict[str, dict[str, Any]]:
    """Per dataset: the dense reference and one row per (criterion, sparsity), means over seeds."""
    grid: dict[str, dict[str, Any]] = {}
    for dataset in dict.fromkeys(d["dataset"] for d in dense):
        refs = {d["seed"]: d["stage"] for d in dense if d["dataset"] == dataset}
        sizes = next(d["layer_sizes"] for d in dense if d["dataset"] == dataset)
        accuracy, accuracy_std = mean_std([s["accuracy"] for s in refs.values()])
        reference = {
            "seeds": list(refs),
            "accuracies": [s["accuracy"] for s in refs.values()],
            "accuracy_mean": accuracy,
            "accuracy_std": accuracy_std,
            "effective_synops": statistics.fmean(s["effective_synops"] for s in refs.values()),
            "energy_pj": statistics.fmean(s["energy_pj"] for s in refs.values()),
            "mean_firing_rate": statistics.fmean(s["mean_firing_rate"] for s in refs.values()),
            "density": statistics.fmean(s["density"] for s in refs.values()),
            "layer_sizes": sizes,
            "train_seconds": statistics.fmean(d["train_seconds"] for d in dense if d["dataset"] == dataset),
        }
        rows = []
        for sparsity in sparsities:
            for criterion in criteria:
                group = [
                    r for r in runs if (r["dataset"], r["criterion"], r["sparsity"]) == (dataset, criterion, sparsity)
                ]
                if not group:
                    continue
                ok = [r for r in group if r["feasible"]]
                row: dict[str, Any] = {
                    "criterion": criterion,
                    "sparsity": sparsity,
                    "feasible": bool(ok) and len(ok) == len(group),
                    "seeds": [r["seed"] for r in ok],
                    "infeasible_seeds": [r["seed"] for r in group if not r["feasible"]],
                }
                rows.append(row)
                if not ok:
                    row.update(accuracy_after_retrain_mean=None, layer_density=None)
                    continue
                after = [r["stages"]["after_retrain"] for r in ok]
                pruned = [r["stages"]["after_prune"] for r in ok]
                before = [r["stages"]["before"] for r in ok]
                base = [refs[r["seed"]] for r in ok]
                retrained_acc = [s["accuracy"] for s in after]
                pruned_acc = [s["accuracy"] for s in pruned]
                row["accuracies_after_prune"] = pruned_acc
                row["accuracies_after_retrain"] = retrained_acc
                row["accuracy_after_prune_mean"], row["accuracy_after_prune_std"] = mean_std(pruned_acc)
                row["accuracy_after_retrain_mean"], row["accuracy_after_retrain_std"] = mean_std(retrained_acc)
                row["delta_after_prune_points"] = 100 * statistics.fmean(
                    p["accuracy"] - b["accuracy"] for p, b in zip(pruned, base, strict=True)
                )
                row["delta_vs_dense_points"] = 100 * statistics.fmean(
                    a["accuracy"] - b["accuracy"] for a, b in zip(after, base, strict=True)
                )
                row["density"] = statistics.fmean(s["density"] for s in after)
                row["density_error"] = max(abs(s["density"] - (1.0 - sparsity)) for s in after)
                row["effective_synops"] = statistics.fmean(s["effective_synops"] for s in after)
                row["energy_pj"] = statistics.fmean(s["energy_pj"] for s in after)
                row["relative_synops"] = statistics.fmean(
                    a["effective_synops"] / b["effective_synops"] for a, b in zip(after, base, strict=True)
                )
                row["relative_synops_after_prune"] = statistics.fmean(
                    p["effective_synops"] / b["effective_synops"] for p, b in zip(pruned, base, strict=True)
                )
                row["relative_energy"] = statistics.fmean(
                    a["energy_pj"] / b["energy_pj"] for a, b in zip(after, base, strict=True)
                )
                row["firing_rate_before"] = statistics.fmean(s["mean_firing_rate"] for s in before)
                row["firing_rate_after_prune"] = statistics.fmean(s["mean_firing_rate"] for s in pruned)
                row["firing_rate_after_retrain"] = statistics.fmean(s["mean_firing_rate"] for s in after)
                row["firing_rates_after_retrain"] = {
                    name: statistics.fmean(s["firing_rates"][name] for s in after) for name in after[0]["firing_rates"]
                }
                row["layer_density"] = {
                    name: statistics.fmean(r["layer_density"][name] for r in ok) for name in ok[0]["layer_density"]
                }
                row["retrain_seconds"] = statistics.fmean(r["retrain_seconds"] for r in ok)
                row["wall_seconds"] = statistics.fmean(r["wall_seconds"] for r in ok)
        grid[dataset] = {"dense": reference, "uniform_plus_max_sparsity": uniform_plus_limit(sizes), "rows": rows}
    return grid


def temporal_factor_table(runs: list[dict[str, Any]], seed: int) -> dict[str, dict[str, Any]]:
    """SLAMP's ρ_l per layer, per dataset, from the given seed's SLAMP runs (they are computed on the dense
    model, so every SLAMP run of a seed has the same ones; ``spread`` checks that)."""
    out = {}
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        found = [
            r["temporal_factors"]
            for r in runs
            if r["dataset"] == dataset and r["seed"] == seed and r["feasible"] and r["temporal_factors"]
        ]
        if found:
            spread = max(abs(f[name] - found[0][name]) for f in found for name in found[0])
            out[dataset] = {"seed": seed, "factors": found[0], "runs": len(found), "spread": spread}
    return out


# --------------------------------------------------------------------------------------------- targets
def _pct(row: dict[str, Any]) -> str:
    return f"{100 * row['accuracy_after_retrain_mean']:.2f} ± {100 * row['accuracy_after_retrain_std']:.2f} %"


def _at_least(row: dict[str, Any], rival: dict[str, Any]) -> tuple[int, int]:
    """Seeds where ``row`` is at least as accurate as ``rival`` after retraining, and the seeds compared."""
    mine = dict(zip(row["seeds"], row["accuracies_after_retrain"], strict=True))
    theirs = dict(zip(rival["seeds"], rival["accuracies_after_retrain"], strict=True))
    common = sorted(set(mine) & set(theirs))
    return sum(mine[s] >= theirs[s] for s in common), len(common)


def targets(grid: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset and sparsity >= TARGET_FROM: SLAMP p=2 vs LAMP and global (the target), SLAMP p=1 (info).

    ``holds`` is None where the grid lacks the runs."""
    out = []
    for dataset, block in grid.items():
        at = {(r["criterion"], r["sparsity"]): r for r in block["rows"] if r["accuracy_after_retrain_mean"] is not None}
        high = sorted({s for _, s in at if s >= TARGET_FROM - 1e-12})
        per_sparsity = []
        for sparsity in high:
            p2, p1 = at.get(("slamp-p2", sparsity)), at.get(("slamp-p1", sparsity))
            rivals = {c: at.get((c, sparsity)) for c in ("lamp", "global")}
            missing = p2 is None or any(v is None for v in rivals.values())
            holds = None
            measured = "not run"
            order = sorted(
                (c for c, s in at if s == sparsity), key=lambda c: -at[(c, sparsity)]["accuracy_after_retrain_mean"]
            )
            if not missing:
                holds = all(
                    p2["accuracy_after_retrain_mean"] >= v["accuracy_after_retrain_mean"] for v in rivals.values()
                )
                wins = ", ".join(
                    f"≥ {LABELS[c]} in {'/'.join(map(str, _at_least(p2, v)))} seeds" for c, v in rivals.items()
                )
                measured = (
                    f"SLAMP p=2 {_pct(p2)} (rank {order.index('slamp-p2') + 1} of {len(order)} criteria); "
                    + "; ".join(f"{LABELS[c]} {_pct(v)}" for c, v in rivals.items())
                    + f" (per seed: {wins})"
                )
            per_sparsity.append(holds)
            out.append(
                {
                    "dataset": dataset,
                    "target": "SLAMP p=2 >= LAMP and global (mean accuracy after retraining)",
                    "sparsity": sparsity,
                    "holds": holds,
                    "measured": measured,
                }
            )
            if p1 is not None and not missing:
                gap = 100 * (p1["accuracy_after_retrain_mean"] - p2["accuracy_after_retrain_mean"])
                out.append(
                    {
                        "dataset": dataset,
                        "target": "(info) SLAMP p=1 >= LAMP and global",
                        "sparsity": sparsity,
                        "holds": all(
                            p1["accuracy_after_retrain_mean"] >= v["accuracy_after_retrain_mean"]
                            for v in rivals.values()
                        ),
                        "measured": f"SLAMP p=1 {_pct(p1)}, rank {order.index('slamp-p1') + 1} of {len(order)} "
                        f"criteria, {gap:+.2f} points vs SLAMP p=2",
                    }
                )
        out.append(
            {
                "dataset": dataset,
                "target": f"SLAMP p=2 >= LAMP and global at every sparsity >= {TARGET_FROM:g}",
                "sparsity": None,
                "holds": None if not per_sparsity or None in per_sparsity else all(per_sparsity),
                "measured": f"no sparsity >= {TARGET_FROM:g} in this run"
                if not per_sparsity
                else f"holds at {sum(bool(h) for h in per_sparsity)} of {len(per_sparsity)} sparsities",
            }
        )
    return out


# --------------------------------------------------------------------------------------------- report
COLORS = {c: f"C{i}" for i, c in enumerate(CRITERIA)}
MARKERS = dict(zip(CRITERIA, "osDv^PX", strict=True))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(grid: dict[str, dict[str, Any]], criteria: tuple[str, ...], path: Path) -> None:
    """Accuracy after retraining vs sparsity (log scale of 1 − s), one panel per dataset."""
    from matplotlib.ticker import NullFormatter

    plt = _pyplot()
    names = list(grid)
    fig, axes = plt.subplots(1, len(names), figsize=(6.8 * len(names), 4.8), squeeze=False)
    for axis, dataset in zip(axes[0], names, strict=True):
        block = grid[dataset]
        dense, rows = block["dense"], [r for r in block["rows"] if r["accuracy_after_retrain_mean"] is not None]
        axis.axhline(100 * dense["accuracy_mean"], color="black", lw=1.2, label="dense")
        axis.axhspan(
            100 * (dense["accuracy_mean"] - dense["accuracy_std"]),
            100 * (dense["accuracy_mean"] + dense["accuracy_std"]),
            color="black",
            alpha=0.08,
        )
        present = [c for c in criteria if any(r["criterion"] == c for r in rows)]
        for i, criterion in enumerate(present):
            mine = sorted((r for r in rows if r["criterion"] == criterion), key=lambda r: r["sparsity"])
            shift = 10 ** ((i - (len(present) - 1) / 2) * 0.01)  # small horizontal offsets, for readability
            axis.errorbar(
                [(1 - r["sparsity"]) * shift for r in mine],
                [100 * r["accuracy_after_retrain_mean"] for r in mine],
                yerr=[100 * r["accuracy_after_retrain_std"] for r in mine],
                marker=MARKERS[criterion],
                capsize=3,
                color=COLORS[criterion],
                lw=2.0 if criterion.startswith("slamp") else 1.1,
                label=LABELS[criterion],
            )
        sparsities = sorted({r["sparsity"] for r in block["rows"]})
        if sparsities:
            axis.set_xscale("log")
            axis.set_xticks([1 - s for s in sparsities])
            axis.set_xticklabels([f"{s:g}" for s in sparsities])
            axis.xaxis.set_minor_formatter(NullFormatter())
            axis.set_xlim(1.5 * (1 - sparsities[0]), (1 - sparsities[-1]) / 1.5)  # sparsity grows to the right
        axis.set_title(f"{dataset}: accuracy after retraining (mean ± std over seeds)")
        axis.set_xlabel("sparsity s (axis: log of density 1 − s)")
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_density(grid: dict[str, dict[str, Any]], criteria: tuple[str, ...], path: Path) -> None:
    """Per-layer density of each criterion at DETAIL_SPARSITIES (grouped bars per layer), one dataset."""
    plt = _pyplot()
    dataset = DENSITY_PLOT_DATASET if DENSITY_PLOT_DATASET in grid else next(iter(grid))
    block = grid[dataset]
    sizes = block["dense"]["layer_sizes"]
    layers = list(sizes)
    available = sorted({r["sparsity"] for r in block["rows"] if r["layer_density"]})
    chosen = [s for s in DETAIL_SPARSITIES if s in available] or available[-2:]
    fig, axes = plt.subplots(1, max(len(chosen), 1), figsize=(7.0 * max(len(chosen), 1), 4.8), squeeze=False)
    for axis, sparsity in zip(axes[0], chosen, strict=False):
        rows = [r for c in criteria for r in block["rows"] if r["criterion"] == c and r["sparsity"] == sparsity]
        drawn = [r for r in rows if r["layer_density"]]
        width = 0.8 / max(len(drawn), 1)
        for i, row in enumerate(drawn):
            axis.bar(
                [j - 0.4 + width * (i + 0.5) for j in range(len(layers))],
                [row["layer_density"][name] for name in layers],
                width,
                color=COLORS[row["criterion"]],
                label=LABELS[row["criterion"]],
            )
        axis.axhline(1 - sparsity, color="black", ls="--", lw=1.0, label=f"overall density {1 - sparsity:g}")
        axis.set_yscale("log")
        axis.set_xticks(range(len(layers)))
        axis.set_xticklabels([f"{name}\n{sizes[name]:,} weights" for name in layers], fontsize=8)
        missing = [LABELS[r["criterion"]] for r in rows if not r["layer_density"]]
        axis.set_title(
            f"{dataset}, sparsity {sparsity:g}: density per layer"
            + (f" (infeasible: {', '.join(missing)})" if missing else "")
        )
        axis.set_ylabel("kept fraction of the layer (log)")
        axis.grid(axis="y", alpha=0.3)
    if chosen:
        axes[0][len(chosen) - 1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if not chosen:
        axes[0][0].text(0.5, 0.5, "no feasible runs", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _acc(row: dict[str, Any], stage: str) -> str:
    mean = row.get(f"accuracy_{stage}_mean")
    if mean is None:
        return "n/a"
    return f"{100 * mean:.2f} ± {100 * row[f'accuracy_{stage}_std']:.2f}"


def markdown(payload: dict[str, Any]) -> str:
    env, settings = payload["environment"], payload["settings"]
    criteria = settings["criteria"]
    lines = [
        f"## {NAME}" + (" (quick)" if payload["quick"] else ""),
        "",
        f"{QUESTION}",
        "",
        f"torch {env['torch']}, {env['threads']} threads, {env['processor']}, CUDA: {env['cuda']}. "
        f"Seeds {', '.join(map(str, settings['seeds']))}; "
        f"sparsities {', '.join(f'{s:g}' for s in settings['sparsities'])}; "
        "all runs in one process, interleaved (seed → dataset → dense run, then per sparsity the criteria in "
        "rotating order). Every criterion prunes all Conv/Linear weights (first and last layer included) in one "
        "shot through `prune_run`; BatchNorm is recalibrated on the first 8 training batches (which also "
        "calibrate SLAMP's ρ_l), then the model retrains with fixed masks for the same number of epochs R for "
        "every criterion, with the dense run's optimizer, learning rate and a fresh cosine schedule. LAMP is SLAMP "
        "with p = 0 (ρ^0 = 1). Accuracy, effective SynOps and energy (45 nm FP32, compute only) per test sample "
        f"from `spikeprune profile` on {settings['profile_examples']}. Relative figures and Δ are paired per seed "
        "against that seed's dense model.",
        "",
        "| dataset | model | dense epochs | retrain epochs R | batch | optimizer | lr | weight decay | T "
        "| uniform-plus feasible up to s |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for dataset, s in settings["datasets"].items():
        limit = payload["grid"][dataset]["uniform_plus_max_sparsity"]
        lines.append(
            f"| {dataset} | {s['model']} | {s['epochs']} | {settings['finetune_epochs'][dataset]} | {s['batch_size']} "
            f"| {s['optimizer']} | {s['lr']:g} | {s['weight_decay']:g} | {s['timesteps']} | {limit:.4f} |"
        )
    lines.append("")
    for dataset, block in payload["grid"].items():
        dense, rows = block["dense"], block["rows"]
        at = {(r["criterion"], r["sparsity"]): r for r in rows}
        sparsities = [s for s in settings["sparsities"] if any(k[1] == s for k in at)]
        lines += [
            f"### {dataset}",
            "",
            f"Dense: accuracy {100 * dense['accuracy_mean']:.2f} ± {100 * dense['accuracy_std']:.2f} %, "
            f"{dense['effective_synops'] / 1e6:.3f} M effective SynOps and {dense['energy_pj'] / 1e6:.3f} µJ per "
            f"sample, mean firing rate {dense['mean_firing_rate']:.4f}; prunable layers "
            + ", ".join(f"{name} ({n:,})" for name, n in dense["layer_sizes"].items())
            + ".",
            "",
            "Accuracy after retraining (%, mean over seeds; best per sparsity in bold):",
            "",
            "| s | " + " | ".join(LABELS[c] for c in criteria) + " |",
            "|---:|" + "---:|" * len(criteria),
        ]
        for sparsity in sparsities:
            values = {c: at[(c, sparsity)]["accuracy_after_retrain_mean"] for c in criteria if (c, sparsity) in at}
            best = max((v for v in values.values() if v is not None), default=None)
            cells = []
            for c in criteria:
                v = values.get(c)
                text = "n/a" if v is None else f"{100 * v:.2f}"
                cells.append(f"**{text}**" if v is not None and v == best else text)
            lines.append(f"| {sparsity:g} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| s | criterion | density | acc. after prune % | acc. after retrain % | Δ vs dense (points) "
            "| SynOps / dense | energy / dense | firing rate dense → prune → retrain |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in rows:
            if row["accuracy_after_retrain_mean"] is None:
                lines.append(f"| {row['sparsity']:g} | {LABELS[row['criterion']]} | n/a (infeasible) | | | | | | |")
                continue
            lines.append(
                f"| {row['sparsity']:g} | {LABELS[row['criterion']]} | {row['density']:.4f} | "
                f"{_acc(row, 'after_prune')} | {_acc(row, 'after_retrain')} | {row['delta_vs_dense_points']:+.2f} | "
                f"{row['relative_synops']:.3f} | {row['relative_energy']:.3f} | {row['firing_rate_before']:.4f} → "
                f"{row['firing_rate_after_prune']:.4f} → {row['firing_rate_after_retrain']:.4f} |"
            )
        layers = list(dense["layer_sizes"])
        for sparsity in [s for s in DETAIL_SPARSITIES if s in sparsities]:
            lines += [
                "",
                f"Per-layer density at s = {sparsity:g} (mean over seeds):",
                "",
                "| criterion | " + " | ".join(layers) + " |",
                "|---|" + "---:|" * len(layers),
            ]
            for c in criteria:
                row = at.get((c, sparsity))
                if row is None:
                    continue
                cells = (
                    ["n/a"] * len(layers)
                    if not row["layer_density"]
                    else [f"{row['layer_density'][name]:.4f}" for name in layers]
                )
                lines.append(f"| {LABELS[c]} | " + " | ".join(cells) + " |")
        lines.append("")
    factors = payload["temporal_factors"]
    if factors:
        lines += [
            "### SLAMP temporal factors",
            "",
            "ρ_l = max_t ‖Σ_{k≤t} λ^{t−k} x_{l,k}‖ / max_t ‖x_{l,t}‖ of each layer's input on the calibration "
            "batches of the dense model (seed "
            f"{next(iter(factors.values()))['seed']}); SLAMP multiplies the layer's LAMP scores by ρ_l^p.",
            "",
            "| dataset | layer | weights | ρ_l | ρ_l² |",
            "|---|---|---:|---:|---:|",
        ]
        for dataset, entry in factors.items():
            sizes = payload["grid"][dataset]["dense"]["layer_sizes"]
            for name, rho in entry["factors"].items():
                lines.append(f"| {dataset} | {name} | {sizes.get(name, 0):,} | {rho:.3f} | {rho**2:.3f} |")
        lines.append("")
    lines += [
        "### Targets",
        "",
        "Measured: mean test accuracy after retraining over seeds; '≥ in k/n seeds' counts the paired seeds. "
        "Differences smaller than the ± (std over seeds) are within seed noise.",
        "",
        "| dataset | target | s | holds | measured |",
        "|---|---|---:|---|---|",
    ]
    for t in payload["targets"]:
        holds = "n/a" if t["holds"] is None else ("yes" if t["holds"] else "**no**")
        where = "all" if t["sparsity"] is None else f"{t['sparsity']:g}"
        lines.append(f"| {t['dataset']} | {t['target']} | {where} | {holds} | {t['measured']} |")
    timing = payload["timing"]
    lines += [
        "",
        f"Runtime {timing['total_seconds'] / 60:.1f} min in all; per run (wall, with profiling): "
        + "; ".join(
            f"{d}: dense {t['dense_wall_seconds']:.1f} s, prune + retrain {t['prune_wall_seconds']:.1f} s"
            for d, t in timing["per_dataset"].items()
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (mnist5k, 1 epoch, one seed, s=0.9)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default {list(SEEDS)}")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=None, help="default: both")
    parser.add_argument("--criteria", nargs="+", choices=list(CRITERIA), default=None, help="default: all")
    parser.add_argument("--sparsities", type=float, nargs="+", default=None, help=f"default {list(SPARSITIES)}")
    parser.add_argument("--out-dir", type=Path, default=None, help="default bench/results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    q = QUICK if args.quick else {}
    names = args.datasets or list(q.get("datasets", DATASETS))
    datasets = {name: dict(DATASETS[name]) for name in names}
    if args.quick:
        for settings in datasets.values():
            settings["epochs"] = QUICK["epochs"]
    finetune = {name: q.get("finetune_epochs", FINETUNE_EPOCHS[name]) for name in names}
    seeds = tuple(args.seeds) if args.seeds else q.get("seeds", SEEDS)
    sparsities = tuple(args.sparsities) if args.sparsities else q.get("sparsities", SPARSITIES)
    if not all(0.0 < s < 1.0 for s in sparsities):
        parser.error("sparsities must lie in (0, 1)")
    criteria = tuple(args.criteria) if args.criteria else q.get("criteria", tuple(CRITERIA))
    profile_batches = q.get("profile_batches")

    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as workdir:
        dense, runs = run_grid(datasets, criteria, sparsities, seeds, finetune, profile_batches, Path(workdir))
    grid = aggregate(dense, runs, criteria, sparsities)
    test_examples = dense[0]["test_examples"]
    payload = {
        "question": QUESTION,
        "quick": args.quick,
        "environment": environment(),
        "settings": {
            "datasets": datasets,
            "finetune_epochs": finetune,
            "criteria": list(criteria),
            "criterion_methods": {c: {"method": CRITERIA[c][0], "slamp_power": CRITERIA[c][1]} for c in criteria},
            "sparsities": list(sparsities),
            "seeds": list(seeds),
            "profile_batches": profile_batches,
            "profile_examples": f"the first {profile_batches} test batches of {2 * DATASETS[names[0]]['batch_size']}"
            if profile_batches
            else f"all {test_examples:,} test examples",
            "calibration_batches": 8,
            "bn_recalibrated": True,
            "layers": "all Conv/Linear (first and last included)",
            "target_from_sparsity": TARGET_FROM,
        },
        "dense": dense,
        "runs": runs,
        "grid": grid,
        "temporal_factors": temporal_factor_table(runs, seeds[0]),
    }
    payload["targets"] = targets(grid)
    payload["timing"] = {
        "total_seconds": time.perf_counter() - started,
        "per_dataset": {
            d: {
                "dense_wall_seconds": statistics.fmean(r["wall_seconds"] for r in dense if r["dataset"] == d),
                "prune_wall_seconds": statistics.fmean(
                    r["wall_seconds"] for r in runs if r["dataset"] == d and r["feasible"]
                ),
                "prune_runs": sum(r["dataset"] == d for r in runs),
            }
            for d in datasets
        },
    }
    text = markdown(payload)
    write_results(NAME, payload, text, args.out_dir)
    out_dir = Path(args.out_dir) if args.out_dir is not None else Path(__file__).resolve().parent / "results"
    plot_accuracy(grid, criteria, out_dir / f"{NAME}.png")
    plot_density(grid, criteria, out_dir / f"{NAME}_density.png")
    print(text)
    return payload


if __name__ == "__main__":
    main()

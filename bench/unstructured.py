"""Where layer allocation decides accuracy: which unstructured criterion keeps deep SNNs accurate at 90–99.5%?

1. **Grid.** On the pruning workloads of ``bench/workloads.py`` (``mnist5k-convnet6``: 7 prunable
   layers; ``nmnist5k-vggsnn``: 9), seeds 0–4, each workload's dense model (shared with the other
   benchmarks through the dense cache) is pruned by every criterion (global magnitude, ERK, LAMP,
   SLAMP with its default exponent p = 2, and uniform-plus as the floor) to every sparsity in
   ``SPARSITIES``, all Conv/Linear weights, then retrained with the masks fixed:

   * ``one-shot``: prune once, then retrain for the workload's budget (a quarter epoch);
   * ``iterative``: 3 rounds to sparsity ``1 − (1 − s)^{i/3}``, each followed by a third of the budget.

   BatchNorm statistics are recalibrated after every pruning on the first 8 training batches, which
   also calibrate SLAMP's temporal factors. Each pruned model is profiled on the whole test set right
   after pruning and after retraining (accuracy, effective SynOps, energy, per-layer firing rates).
   Verdicts: SLAMP against LAMP and against global magnitude, paired per seed (``bench/stats.py``).
2. **Per layer.** On each seed's dense model: SLAMP's ρ_l, and each layer's sensitivity (the accuracy
   lost when only that layer is pruned to ``SENSITIVITY_SPARSITY`` by magnitude, without retraining);
   the Spearman correlation of ρ_l with sensitivity; each criterion's per-layer densities; per-layer
   firing rates dense → pruned → retrained.

Run: ``python bench/unstructured.py [--quick] [--runs FILE]``. Writes ``bench/results/unstructured.{json,md}``,
``unstructured.png`` (accuracy vs sparsity), ``unstructured_layers.png`` and ``unstructured_synops.png``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from torch import nn

from spikeprune.data import IndexedDataset
from spikeprune.errors import SpikepruneError
from spikeprune.metrics import ProfileReport, profile
from spikeprune.sparsity import prunable_layers, prune_model
from spikeprune.sparsity.masks import attach_masks, finalize
from spikeprune.sparsity.slamp import temporal_factors
from spikeprune.sparsity.unstructured import global_magnitude

try:
    from harness import RESULTS, RunStore, environment, run_time_line, write_results
    from stats import compare, mean_interval
    from workloads import (
        CALIBRATION_BATCHES,
        WORKLOADS,
        Workload,
        calibration_batches,
        datasets,
        evaluate,
        retrain,
        train_dense,
    )
except ImportError:  # imported as bench.unstructured
    from bench.harness import RESULTS, RunStore, environment, run_time_line, write_results
    from bench.stats import compare, mean_interval
    from bench.workloads import (
        CALIBRATION_BATCHES,
        WORKLOADS,
        Workload,
        calibration_batches,
        datasets,
        evaluate,
        retrain,
        train_dense,
    )

NAME = "unstructured"
WORKLOAD_NAMES = ("mnist5k-convnet6", "nmnist5k-vggsnn")
SPARSITIES = (0.9, 0.95, 0.98, 0.99, 0.995)
# criterion -> (prune_model method, SLAMP exponent or None)
CRITERIA: dict[str, tuple[str, float | None]] = {
    "global": ("global", None),
    "erk": ("erk", None),
    "lamp": ("lamp", None),
    "slamp": ("slamp", 2.0),
    "uniform-plus": ("uniform-plus", None),
}
LABELS = {"global": "global magnitude", "erk": "ERK", "lamp": "LAMP", "slamp": "SLAMP", "uniform-plus": "uniform-plus"}
SCHEDULES = {"one-shot": 1, "iterative": 3}
SEEDS = (0, 1, 2, 3, 4)
SENSITIVITY_SPARSITY = 0.95
# A (sparsity, schedule) block where every criterion ended within CHANCE_MARGIN of chance on the first
# CHANCE_SEEDS seeds cannot separate criteria with this retraining: later seeds skip it (reported as such).
CHANCE_SEEDS = 2
CHANCE_MARGIN = 0.02
DETAIL_SPARSITY = 0.98  # the per-layer tables and plots

QUICK = dict(
    workloads=("mnist5k-convnet6",),
    seeds=(0, 1),
    sparsities=(0.9,),
    epochs=1,
    train_examples=128,
    test_examples=64,
    criteria=("global", "lamp", "slamp", "uniform-plus"),
    calibration=2,
)


# --------------------------------------------------------------------------------------------- runs
def stage(report: ProfileReport) -> dict[str, Any]:
    """What one measurement keeps: accuracy, per-sample SynOps/energy, firing rates per spiking layer."""
    return {
        "accuracy": report.totals["accuracy"],
        "effective_synops": report.totals["effective_synops"],
        "energy_pj": report.totals["energy_pj"],
        "mean_firing_rate": report.totals["mean_firing_rate"],
        "firing_rates": {n.name: n.firing_rate for n in report.neurons},
    }


def measure(workload: Workload, model: nn.Module, test: IndexedDataset) -> dict[str, Any]:
    return stage(profile(model, test, batch_size=workload.batch_size * 2))


def dense_record(
    workload: Workload,
    seed: int,
    model: nn.Module,
    train: IndexedDataset,
    test: IndexedDataset,
    calibration: int = CALIBRATION_BATCHES,
) -> dict[str, Any]:
    """The dense reference of one seed: its profile, SLAMP's ρ_l and each layer's sensitivity."""
    layers = prunable_layers(model)
    batches = calibration_batches(train, workload.batch_size, calibration)
    dense = measure(workload, model, test)
    sensitivity = {}
    for name, module in layers:
        single = copy.deepcopy(model)
        attach_masks(single, global_magnitude({name: module.weight.detach()}, SENSITIVITY_SPARSITY))
        sensitivity[name] = dense["accuracy"] - evaluate(workload, seed, single, test)
    return {
        **dense,
        "layer_sizes": {name: module.weight.numel() for name, module in layers},
        "temporal_factors": temporal_factors(model, batches, layers),
        "sensitivity": sensitivity,
    }


def prune_cell(
    workload: Workload,
    seed: int,
    dense: nn.Module,
    criterion: str,
    sparsity: float,
    schedule: str,
    train: IndexedDataset,
    test: IndexedDataset,
    calibration: int = CALIBRATION_BATCHES,
) -> dict[str, Any]:
    """Prune a copy of the dense model with ``criterion`` to ``sparsity`` on ``schedule``, retrain, measure."""
    method, power = CRITERIA[criterion]
    rounds = SCHEDULES[schedule]
    model = copy.deepcopy(dense)
    batches = calibration_batches(train, workload.batch_size, calibration)
    options = {"slamp_power": power} if power is not None else {}
    factors = None
    for index in range(rounds):
        target = 1.0 - (1.0 - sparsity) ** ((index + 1) / rounds)
        try:
            masks, found = prune_model(model, method, target, batches=batches, **options)
        except SpikepruneError as error:
            if method != "uniform-plus" or "cannot reach" not in str(error):
                raise
            return {"feasible": False, "reason": str(error)}
        factors = found or factors
        if index == rounds - 1:
            after_prune = measure(workload, model, test)
        retrain(workload, seed, model, masks, train, workload.retrain_fraction / rounds)
    layer_density = {name: float(mask.mean()) for name, mask in masks.items()}
    finalize(model)
    after = measure(workload, model, test)
    kept = sum(float(mask.sum()) for mask in masks.values())
    return {
        "feasible": True,
        "accuracy_after_prune": after_prune["accuracy"],
        "test_accuracy": after["accuracy"],
        "density": kept / sum(mask.numel() for mask in masks.values()),
        "layer_density": layer_density,
        "after_prune": after_prune,
        "after_retrain": after,
        "temporal_factors": factors,
    }


def at_chance(store: RunStore, workload: Workload, schedule: str, sparsity: float, seed: int, classes: int) -> bool:
    """Whether every criterion of this block stayed at chance after retraining on CHANCE_SEEDS earlier seeds."""
    earlier = [
        r
        for r in store.rows
        if r["workload"] == workload.name
        and r["kind"] == "pruned"
        and r["schedule"] == schedule
        and r["sparsity"] == sparsity
        and r["seed"] < seed
        and r.get("feasible")
    ]
    if len({r["seed"] for r in earlier}) < CHANCE_SEEDS:
        return False
    return all(r["test_accuracy"] <= 1.0 / classes + CHANCE_MARGIN for r in earlier)


def run_grid(
    workloads: list[Workload],
    seeds: tuple[int, ...],
    sparsities: tuple[float, ...],
    runs: Path | None,
    criteria: tuple[str, ...] = tuple(CRITERIA),
    train_examples: int | None = None,
    test_examples: int | None = None,
    calibration: int = CALIBRATION_BATCHES,
    cache: bool = True,
) -> list[dict[str, Any]]:
    """seed → workload → (dense record, then per sparsity and schedule the criteria in rotating order)."""
    store = RunStore(runs, ("workload", "seed", "kind", "schedule", "criterion", "sparsity"))
    criteria = list(criteria)
    started = time.perf_counter()
    for seed in seeds:
        for workload in workloads:
            train, test = datasets(workload, seed, train_examples, test_examples)
            model, _ = train_dense(workload, seed, train, test, cache=cache)
            key = {"workload": workload.name, "seed": seed, "schedule": None, "criterion": None, "sparsity": None}
            if store.get(**key, kind="dense") is None:
                store.add({**key, "kind": "dense", **dense_record(workload, seed, model, train, test, calibration)})
            block = 0
            for sparsity in sparsities:
                for schedule in SCHEDULES:
                    shift = (seed + block) % len(criteria)
                    block += 1
                    if at_chance(store, workload, schedule, sparsity, seed, test.info.num_classes):
                        print(f"{workload.name} seed {seed} {schedule} s={sparsity}: skipped, at chance", flush=True)
                        continue
                    for criterion in criteria[shift:] + criteria[:shift]:
                        cell = {**key, "kind": "pruned", "schedule": schedule, "criterion": criterion}
                        cell["sparsity"] = sparsity
                        if store.get(**cell) is not None:
                            continue
                        record = prune_cell(
                            workload, seed, model, criterion, sparsity, schedule, train, test, calibration
                        )
                        row = store.add({**cell, **record})
                        if row["feasible"]:
                            print(
                                f"[{time.perf_counter() - started:6.0f}s] {workload.name} seed {seed} {schedule} "
                                f"{criterion} s={sparsity}: {row['accuracy_after_prune']:.4f} -> "
                                f"{row['test_accuracy']:.4f}",
                                flush=True,
                            )
    return store.rows


# --------------------------------------------------------------------------------------------- aggregate
def _spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b)[0])


def aggregate(rows: list[dict[str, Any]], workloads: list[Workload], sparsities) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workload in workloads:
        dense = {r["seed"]: r for r in rows if r["workload"] == workload.name and r["kind"] == "dense"}
        pruned = [r for r in rows if r["workload"] == workload.name and r["kind"] == "pruned" and r["feasible"]]
        if len(dense) < 2:
            continue
        layers = list(next(iter(dense.values()))["layer_sizes"])
        factors = {n: statistics.fmean(d["temporal_factors"][n] for d in dense.values()) for n in layers}
        sensitivity = {n: statistics.fmean(d["sensitivity"][n] for d in dense.values()) for n in layers}
        entry: dict[str, Any] = {
            "dense": mean_interval([d["accuracy"] for d in dense.values()]).as_dict(),
            "dense_synops": statistics.fmean(d["effective_synops"] for d in dense.values()),
            "layer_sizes": next(iter(dense.values()))["layer_sizes"],
            "temporal_factors": factors,
            "sensitivity": sensitivity,
            "factor_sensitivity_spearman": _spearman([factors[n] for n in layers], [sensitivity[n] for n in layers]),
            "firing_rates_dense": {
                n: statistics.fmean(d["firing_rates"][n] for d in dense.values())
                for n in next(iter(dense.values()))["firing_rates"]
            },
            "cells": [],
        }
        for schedule in SCHEDULES:
            for sparsity in sparsities:
                for criterion in CRITERIA:
                    group = [
                        r
                        for r in pruned
                        if (r["schedule"], r["criterion"], r["sparsity"]) == (schedule, criterion, sparsity)
                    ]
                    infeasible = [
                        r
                        for r in rows
                        if r["workload"] == workload.name
                        and r["kind"] == "pruned"
                        and (r["schedule"], r["criterion"], r["sparsity"]) == (schedule, criterion, sparsity)
                        and not r["feasible"]
                    ]
                    cell: dict[str, Any] = {"schedule": schedule, "criterion": criterion, "sparsity": sparsity}
                    if infeasible and not group:
                        entry["cells"].append({**cell, "feasible": False})
                        continue
                    if len(group) < 2:
                        continue
                    base = [dense[r["seed"]] for r in group]
                    cell.update(
                        feasible=True,
                        seeds=sorted(r["seed"] for r in group),
                        accuracy=mean_interval([r["test_accuracy"] for r in group]).as_dict(),
                        accuracy_after_prune=statistics.fmean(r["accuracy_after_prune"] for r in group),
                        density=statistics.fmean(r["density"] for r in group),
                        relative_synops=statistics.fmean(
                            r["after_retrain"]["effective_synops"] / b["effective_synops"]
                            for r, b in zip(group, base, strict=True)
                        ),
                        relative_energy=statistics.fmean(
                            r["after_retrain"]["energy_pj"] / b["energy_pj"] for r, b in zip(group, base, strict=True)
                        ),
                        layer_density={
                            n: statistics.fmean(r["layer_density"][n] for r in group) for n in group[0]["layer_density"]
                        },
                        firing_rates_after_prune={
                            n: statistics.fmean(r["after_prune"]["firing_rates"][n] for r in group)
                            for n in group[0]["after_prune"]["firing_rates"]
                        },
                        firing_rates_after_retrain={
                            n: statistics.fmean(r["after_retrain"]["firing_rates"][n] for r in group)
                            for n in group[0]["after_retrain"]["firing_rates"]
                        },
                    )
                    entry["cells"].append(cell)
        compared = pruned + [
            {**d, "schedule": s, "criterion": "dense", "sparsity": p, "test_accuracy": d["accuracy"]}
            for d in dense.values()
            for s in SCHEDULES
            for p in sparsities
        ]
        for reference in ("lamp", "global", "dense"):
            for v in compare(
                compared,
                cell=lambda r: (r["schedule"], r["sparsity"], r["criterion"]),
                reference=lambda r, ref=reference: (r["schedule"], r["sparsity"], ref),
            ):
                schedule, sparsity, criterion = v["cell"]
                for cell in entry["cells"]:
                    if (cell["schedule"], cell["sparsity"], cell["criterion"]) == (schedule, sparsity, criterion):
                        cell.setdefault("versus", {})[reference] = {
                            "difference": v["difference"],
                            "verdict": v["verdict"],
                        }
        out[workload.name] = entry
    return out


# --------------------------------------------------------------------------------------------- report
def detail_cells(entry: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """The one-shot cells at DETAIL_SPARSITY (or the highest sparsity run, in a smaller grid)."""
    present = sorted({c["sparsity"] for c in entry["cells"] if c.get("feasible") and c["schedule"] == "one-shot"})
    sparsity = DETAIL_SPARSITY if DETAIL_SPARSITY in present else present[-1]
    cells = [
        c for c in entry["cells"] if c.get("feasible") and c["schedule"] == "one-shot" and c["sparsity"] == sparsity
    ]
    return sparsity, cells


def _versus(cell: dict[str, Any], reference: str) -> str:
    v = cell.get("versus", {}).get(reference)
    if v is None:
        return "–"
    d = v["difference"]
    return f"{100 * d['mean']:+.2f} ± {100 * d['half_width']:.2f} {v['verdict']}"


def markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    lines = [
        f"# {NAME}: SLAMP and the LAMP family on deep SNNs" + (" (quick)" if payload["quick"] else ""),
        "",
        f"Generated by `bench/unstructured.py`. Seeds {', '.join(map(str, settings['seeds']))}. All Conv/Linear "
        "weights pruned; BatchNorm recalibrated after pruning; retraining with fixed masks for a quarter epoch "
        "in total (one-shot: once; iterative: 3 rounds of a twelfth). Accuracy is test accuracy in percent "
        "after retraining, mean ± 95% interval; differences are paired per seed (Student t), with a verdict. "
        "SynOps and energy are effective (non-zero input × non-zero weight) per sample after retraining, "
        "relative to the same seed's dense model. A block (schedule, sparsity) where every criterion ended within "
        f"{CHANCE_MARGIN * 100:g} points of chance on the first {CHANCE_SEEDS} seeds is not run on later seeds: it "
        "cannot separate criteria with this retraining (its cells name their seeds).",
        run_time_line(payload),
        "",
    ]
    for name, entry in payload["grid"].items():
        w = payload["workloads"][name]
        dense = entry["dense"]
        lines += [
            f"## {name}",
            "",
            f"{w['model']} (width {w['width']:g}) on {w['dataset']}, T={w['timesteps']}; dense "
            f"{100 * dense['mean']:.2f} ± {100 * dense['half_width']:.2f}.",
            "",
            "| schedule | sparsity | criterion | after pruning | after retraining | SLAMP is… vs this | "
            "vs dense | SynOps | energy |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for cell in entry["cells"]:
            head = f"| {cell['schedule']} | {cell['sparsity']:g} | {LABELS.get(cell['criterion'], cell['criterion'])} |"
            if not cell.get("feasible"):
                lines.append(f"{head} – | cannot reach this sparsity | | | | |")
                continue
            acc = cell["accuracy"]
            slamp = next(
                (
                    c
                    for c in entry["cells"]
                    if (c["schedule"], c["sparsity"], c["criterion"]) == (cell["schedule"], cell["sparsity"], "slamp")
                ),
                None,
            )
            versus = _versus(slamp, cell["criterion"]) if slamp and cell["criterion"] in ("lamp", "global") else ""
            seeds = ""  # a block skipped at chance after CHANCE_SEEDS names the seeds it has
            if len(cell["seeds"]) < len(settings["seeds"]):
                seeds = f" (seeds {', '.join(map(str, cell['seeds']))})"
            lines.append(
                f"{head} {100 * cell['accuracy_after_prune']:.2f} | {100 * acc['mean']:.2f} ± "
                f"{100 * acc['half_width']:.2f}{seeds} | {versus} | {_versus(cell, 'dense')} | "
                f"{cell['relative_synops']:.3f}× | {cell['relative_energy']:.3f}× |"
            )
        layers = list(entry["layer_sizes"])
        sparsity, detail = detail_cells(entry)
        spearman = entry["factor_sensitivity_spearman"]
        lines += [
            "",
            f"### {name}: per layer (one-shot, sparsity {sparsity:g}; ρ and sensitivity on the dense models)",
            "",
            f"Sensitivity: accuracy lost (points) when only that layer is pruned to {SENSITIVITY_SPARSITY:.0%} by "
            f"magnitude, without retraining. Spearman(ρ_l, sensitivity) = "
            f"{'n/a' if spearman is None else f'{spearman:+.2f}'}.",
            "",
            "| layer | weights | ρ_l | sensitivity | " + " | ".join(LABELS[c["criterion"]] for c in detail) + " |",
            "|---|---:|---:|---:|" + "---:|" * len(detail),
        ]
        for layer in layers:
            densities = " | ".join(f"{c['layer_density'][layer]:.4f}" for c in detail)
            lines.append(
                f"| {layer} | {entry['layer_sizes'][layer]:,} | {entry['temporal_factors'][layer]:.3f} | "
                f"{100 * entry['sensitivity'][layer]:.2f} | {densities} |"
            )
        lines += [
            "",
            "Firing rate per spiking layer: dense → after pruning → after retraining (one-shot, "
            f"sparsity {sparsity:g}):",
            "",
            "| spiking layer | dense | " + " | ".join(LABELS[c["criterion"]] for c in detail) + " |",
            "|---|---:|" + "---|" * len(detail),
        ]
        for neuron, rate in entry["firing_rates_dense"].items():
            steps = " | ".join(
                f"{c['firing_rates_after_prune'][neuron]:.3f} → {c['firing_rates_after_retrain'][neuron]:.3f}"
                for c in detail
            )
            lines.append(f"| {neuron} | {rate:.3f} | {steps} |")
        lines.append("")
    lines.append(payload.get("notes", ""))
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plots(grid: dict[str, Any], out_dir: Path) -> None:
    plt = _pyplot()
    names = list(grid)
    colors = {c: f"C{i}" for i, c in enumerate(CRITERIA)}
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.8), squeeze=False)
    fig2, axes2 = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.8), squeeze=False)
    for col, name in enumerate(names):
        entry = grid[name]
        ax, ax2 = axes[0][col], axes2[0][col]
        for target in (ax, ax2):
            target.axhline(100 * entry["dense"]["mean"], color="black", lw=1.0, label="dense")
        for schedule, style in zip(SCHEDULES, ("-", "--"), strict=True):
            for criterion in CRITERIA:
                cells = [
                    c
                    for c in entry["cells"]
                    if c.get("feasible") and c["schedule"] == schedule and c["criterion"] == criterion
                ]
                if not cells:
                    continue
                label = f"{LABELS[criterion]} ({schedule})"
                ax.errorbar(
                    [1 - c["sparsity"] for c in cells],
                    [100 * c["accuracy"]["mean"] for c in cells],
                    yerr=[100 * c["accuracy"]["half_width"] for c in cells],
                    ls=style,
                    marker="o",
                    capsize=3,
                    color=colors[criterion],
                    label=label,
                )
                ax2.errorbar(
                    [c["relative_synops"] for c in cells],
                    [100 * c["accuracy"]["mean"] for c in cells],
                    yerr=[100 * c["accuracy"]["half_width"] for c in cells],
                    ls=style,
                    marker="o",
                    capsize=3,
                    color=colors[criterion],
                    label=label,
                )
        if len({c["sparsity"] for c in entry["cells"]}) > 1:
            ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("density 1 − s (log)")
        ax2.set_xscale("log")
        ax2.set_xlabel("effective SynOps relative to dense (log)")
        for target in (ax, ax2):
            target.set_ylabel("test accuracy after retraining (%)")
            target.set_title(f"{name} (95% intervals)")
            target.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out_dir / f"{NAME}.png", dpi=120)
    fig2.tight_layout()
    fig2.savefig(out_dir / f"{NAME}_synops.png", dpi=120)
    plt.close(fig)
    plt.close(fig2)
    fig, axes = plt.subplots(1, len(names), figsize=(7.0 * len(names), 4.8), squeeze=False)
    for col, name in enumerate(names):
        entry, ax = grid[name], axes[0][col]
        layers = list(entry["layer_sizes"])
        sparsity, detail = detail_cells(entry)
        width = 0.8 / max(len(detail), 1)
        for i, cell in enumerate(detail):
            ax.bar(
                [j + i * width for j in range(len(layers))],
                [cell["layer_density"][n] for n in layers],
                width,
                color=colors[cell["criterion"]],
                label=LABELS[cell["criterion"]],
            )
        ax.set_yscale("log")
        ax.set_xticks([j + 0.4 for j in range(len(layers))])
        ax.set_xticklabels([f"{n}\nρ={entry['temporal_factors'][n]:.2f}" for n in layers], fontsize=6, rotation=30)
        ax.set_ylabel(f"layer density at sparsity {sparsity:g}")
        ax.set_title(f"{name}: per-layer density")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"{NAME}_layers.png", dpi=120)
    plt.close(fig)


NOTES = (
    "How the grid ran: in resumable invocations over several sessions, one thread per process, with two or three "
    "benchmark processes sharing the 2 cores. By the benchmark's logs (seconds since each process started, "
    "summed over processes), its 440 pruned runs took 7.0 process-hours.\n"
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOAD_NAMES, default=list(WORKLOAD_NAMES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--runs", type=Path, default=None, help="JSON-lines file of finished runs (resume, append)")
    parser.add_argument("--out-dir", type=Path, default=None, help="default bench/results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out_dir = Path(args.out_dir) if args.out_dir is not None else RESULTS
    q = QUICK if args.quick else {}
    workloads = [WORKLOADS[n] for n in q.get("workloads", args.workloads)]
    if args.quick:
        workloads = [replace(w, epochs=QUICK["epochs"]) for w in workloads]
    seeds = q.get("seeds", tuple(args.seeds))
    sparsities = q.get("sparsities", SPARSITIES)
    resumed = len(RunStore(args.runs, ()).rows) if args.runs else 0
    rows = run_grid(
        workloads,
        seeds,
        sparsities,
        args.runs,
        q.get("criteria", tuple(CRITERIA)),
        q.get("train_examples"),
        q.get("test_examples"),
        q.get("calibration", CALIBRATION_BATCHES),
        not args.quick,
    )
    grid = aggregate(rows, workloads, sparsities)
    payload = {
        "question": "Which unstructured criterion keeps deep SNNs most accurate at 90–99.5% sparsity?",
        "quick": args.quick,
        "environment": environment(),
        "settings": {
            "seeds": list(seeds),
            "sparsities": list(sparsities),
            "criteria": {k: list(v) for k, v in CRITERIA.items()},
            "schedules": SCHEDULES,
            "sensitivity_sparsity": SENSITIVITY_SPARSITY,
        },
        "workloads": {w.name: {**asdict(w), "data_options": dict(w.data_options)} for w in workloads},
        "runs": rows,
        "resumed_runs": resumed,
        "grid": grid,
        "notes": "" if args.quick else NOTES,
        "total_seconds": time.perf_counter() - started,
    }
    write_results(NAME, payload, markdown(payload), out_dir)
    plots(grid, out_dir)
    return payload


if __name__ == "__main__":
    main()

"""N:M on deep SNNs: how close do SpikeNM, SpikeNM+EID, SR-STE and ASP get to dense, and what does EID change?

1. **Grid.** On the N:M workloads of ``bench/workloads.py`` (``mnist5k-convnet6``, ``nmnist5k-vggsnn``),
   seeds 0–4, patterns 2:4, 1:4, 2:8, 1:8 and 1:16, all with the same total number of epochs E:

   * ``dense``: the workload's dense run (shared through the dense cache);
   * ``asp``: NVIDIA's ASP recipe: dense for E − 1 epochs, one-shot N:M by magnitude (BatchNorm
     recalibrated on the first 8 training batches), one epoch of fine-tuning with the masks fixed;
   * ``srste``: SR-STE from scratch for E epochs;
   * ``spikenm``: SpikeNM from scratch for E epochs (its defaults);
   * ``spikenm_eid``: the same with EID (``EID_WEIGHT``).

   Layers whose input dimension is not a multiple of M (the first conv: 1 or 2 channels) stay dense,
   for every contender alike. Reported per cell: test accuracy (mean ± 95% interval), the paired
   difference to SR-STE and to dense with a verdict (``bench/stats.py``), SpikeNM+EID's also to SpikeNM
   (EID's own effect), effective SynOps relative to dense, and, for the learned methods, the
   deployed-mask flip rate and sampling entropy per epoch.
2. **Overhead** (``--timing``, on an idle machine): seconds per training step of every from-scratch
   contender against dense, whole epochs of the one training loop on ``TIMING_EXAMPLES`` examples,
   interleaved, ``TIMING_REPEATS`` repeats, medians.

Run: ``python bench/nm.py [--quick] [--runs FILE] [--workloads ...]``, then ``python bench/nm.py --timing``.
To share the grid between processes, give each a disjoint part (``--seeds``, ``--methods``, ``--patterns``)
of the same runs file and an ``--out-dir`` of its own (each process reads the file once, at its start;
a seed's dense row must exist before two processes share that seed); a last call without them trains
nothing and reports all runs.
Writes ``bench/results/nm.{json,md,png}``, ``nm_dynamics.png`` and ``nm_timing.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from torch import nn

from spikeprune.data import IndexedDataset
from spikeprune.metrics import profile
from spikeprune.sparsity import prune_model
from spikeprune.sparsity.masks import finalize
from spikeprune.train import Trainer

try:
    from harness import RESULTS, RunStore, environment, interleaved_times, run_time_line, summarize, write_results
    from stats import compare, mean_interval, tally_text
    from workloads import CALIBRATION_BATCHES, WORKLOADS, Workload, calibration_batches, datasets, retrain, train_dense
except ImportError:  # imported as bench.nm
    from bench.harness import RESULTS, RunStore, environment, interleaved_times, run_time_line, summarize, write_results
    from bench.stats import compare, mean_interval, tally_text
    from bench.workloads import (
        CALIBRATION_BATCHES,
        WORKLOADS,
        Workload,
        calibration_batches,
        datasets,
        retrain,
        train_dense,
    )

NAME = "nm"
WORKLOAD_NAMES = ("mnist5k-convnet6", "nmnist5k-vggsnn")
PATTERNS = ("2:4", "1:4", "2:8", "1:8", "1:16")
METHODS = ("asp", "srste", "spikenm", "spikenm_eid")
TRAINED = ("srste", "spikenm", "spikenm_eid")
LABELS = {"dense": "dense", "asp": "ASP", "srste": "SR-STE", "spikenm": "SpikeNM", "spikenm_eid": "SpikeNM+EID"}
EID_WEIGHT = 0.1
SEEDS = (0, 1, 2, 3, 4)
TARGET_24_POINTS = 0.3  # 2:4 within this many points of dense
# reference → the methods compared with it (None: all); EID's own effect is SpikeNM+EID against SpikeNM
REFERENCES: dict[str, tuple[str, ...] | None] = {"srste": None, "dense": None, "spikenm": ("spikenm_eid",)}
TIMING_PATTERNS = ("2:4", "1:8", "1:16")
TIMING_EXAMPLES = 512  # 8 steps per epoch: the per-epoch mask work weighs more than in a real epoch
TIMING_REPEATS = 11

QUICK = dict(
    workloads=("mnist5k-convnet6",),
    seeds=(0, 1),
    patterns=("2:4", "1:8"),
    epochs=2,
    train_examples=192,
    test_examples=64,
    calibration=2,
)


def sparsity_settings(pattern: str, method: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """TrainConfig entries of a from-scratch N:M contender."""
    extra = {"eid_weight": EID_WEIGHT} if method == "spikenm_eid" else {}
    nm_method = "srste" if method == "srste" else "spikenm"
    return {"sparsity": "nm", "nm": pattern, "nm_method": nm_method, "sparsity_options": {**extra, **(options or {})}}


def synops(workload: Workload, model: nn.Module, test: IndexedDataset) -> float:
    return profile(model, test, batch_size=workload.batch_size * 2).totals["effective_synops"]


def train_nm(
    workload: Workload,
    seed: int,
    pattern: str,
    method: str,
    train: IndexedDataset,
    test: IndexedDataset,
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Trainer]:
    """One from-scratch N:M run (SR-STE or SpikeNM, with ``options`` for the sparsifier); record and trainer."""
    config = workload.config(seed, **sparsity_settings(pattern, method, options))
    with warnings.catch_warnings():  # "left dense" notes: the same layers for every contender
        warnings.simplefilter("ignore", UserWarning)
        trainer = Trainer(config, None, train_set=train, test_set=test)
    summary = trainer.fit()
    history = trainer.history
    return {
        "test_accuracy": summary["test_accuracy"],
        "mask_flip_rates": [r.get("mask_flip_rate") for r in history],
        "sampling_entropy": [r.get("sampling_entropy") for r in history],
        "logit_entropy": [r.get("logit_entropy") for r in history],
        "train_seconds": summary["train_seconds"],
    }, trainer


def run_asp(
    workload: Workload,
    seed: int,
    pattern: str,
    early: nn.Module,
    train: IndexedDataset,
    test: IndexedDataset,
    calibration: int,
) -> tuple[dict[str, Any], nn.Module]:
    """One-shot N:M by magnitude on the (E − 1)-epoch dense model, then one epoch with the masks fixed."""
    model = copy.deepcopy(early)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        masks, _ = prune_model(
            model, "nm-magnitude", nm=pattern, batches=calibration_batches(train, workload.batch_size, calibration)
        )
    retrain(workload, seed, model, masks, train, fraction=1.0)
    finalize(model)
    trainer = Trainer(workload.config(seed), None, model=model, train_set=test, test_set=test)
    return {"test_accuracy": trainer.evaluate()["test_accuracy"]}, model


def run_grid(
    workloads: list[Workload],
    seeds: tuple[int, ...],
    patterns: tuple[str, ...],
    methods: tuple[str, ...],
    runs: Path | None,
    train_examples: int | None = None,
    test_examples: int | None = None,
    calibration: int = CALIBRATION_BATCHES,
    cache: bool = True,
) -> list[dict[str, Any]]:
    """seed → workload → (dense, then per pattern the methods in rotating order); resumable."""
    store = RunStore(runs, ("workload", "seed", "pattern", "method"))
    started = time.perf_counter()
    for seed in seeds:
        for workload in workloads:
            train, test = datasets(workload, seed, train_examples, test_examples)
            key = {"workload": workload.name, "seed": seed}
            if store.get(**key, pattern=None, method="dense") is None:
                dense, record = train_dense(workload, seed, train, test, cache=cache)
                store.add(
                    {**key, "pattern": None, "method": "dense", **record, "synops": synops(workload, dense, test)}
                )
            early = None
            for p_index, pattern in enumerate(patterns):
                shift = (seed + p_index) % len(methods)
                for method in methods[shift:] + methods[:shift]:
                    if store.get(**key, pattern=pattern, method=method) is not None:
                        continue
                    if method == "asp":
                        if early is None:
                            early, _ = train_dense(workload, seed, train, test, epochs=workload.epochs - 1, cache=cache)
                        record, model = run_asp(workload, seed, pattern, early, train, test, calibration)
                    else:
                        record, trainer = train_nm(workload, seed, pattern, method, train, test)
                        model = finalize(trainer.model)
                    row = store.add(
                        {**key, "pattern": pattern, "method": method, **record, "synops": synops(workload, model, test)}
                    )
                    print(
                        f"[{time.perf_counter() - started:6.0f}s] {workload.name} seed {seed} {pattern} {method}: "
                        f"{row['test_accuracy']:.4f}",
                        flush=True,
                    )
    return store.rows


# --------------------------------------------------------------------------------------------- aggregate
def aggregate(rows: list[dict[str, Any]], workloads: list[Workload], patterns, methods) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workload in workloads:
        mine = [r for r in rows if r["workload"] == workload.name]
        dense = {r["seed"]: r for r in mine if r["method"] == "dense"}
        if len(dense) < 2:
            continue
        entry: dict[str, Any] = {"dense": mean_interval([r["test_accuracy"] for r in dense.values()]).as_dict()}
        cells = []
        for pattern in patterns:
            for method in methods:
                group = [r for r in mine if r["pattern"] == pattern and r["method"] == method]
                if len(group) < 2:
                    continue
                cell: dict[str, Any] = {
                    "pattern": pattern,
                    "method": method,
                    "seeds": sorted(r["seed"] for r in group),
                    "accuracy": mean_interval([r["test_accuracy"] for r in group]).as_dict(),
                    "relative_synops": statistics.fmean(r["synops"] / dense[r["seed"]]["synops"] for r in group),
                }
                if method in TRAINED:
                    epochs = len(group[0]["mask_flip_rates"])
                    for key in ("mask_flip_rates", "sampling_entropy", "logit_entropy"):
                        values = [[r[key][e] for r in group if r[key][e] is not None] for e in range(epochs)]
                        cell[key] = [statistics.fmean(v) if v else None for v in values]
                cells.append(cell)
        compared = [r for r in mine if r["method"] != "dense"] + [
            {**r, "pattern": p} for r in dense.values() for p in patterns
        ]
        for reference, compared_methods in REFERENCES.items():
            for v in compare(
                compared,
                cell=lambda r: (r["pattern"], r["method"]),
                reference=lambda r, ref=reference, of=compared_methods: (
                    (r["pattern"], ref) if of is None or r["method"] in of else None
                ),
            ):
                for cell in cells:
                    if (cell["pattern"], cell["method"]) == tuple(v["cell"]):
                        cell.setdefault("versus", {})[reference] = {
                            "difference": v["difference"],
                            "verdict": v["verdict"],
                        }
        entry["cells"] = cells
        out[workload.name] = entry
    return out


# --------------------------------------------------------------------------------------------- timing
def step_times(workload: Workload, patterns, repeats: int, examples: int) -> dict[str, dict[str, float]]:
    """Seconds per training step of dense and every from-scratch contender, whole epochs, interleaved."""
    train, test = datasets(workload, 0, examples, 64)
    contenders = {"dense": {}} | {f"{p} {m}": sparsity_settings(p, m) for p in patterns for m in TRAINED}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainers = {
            name: Trainer(workload.config(0, epochs=1000, **extra), None, train_set=train, test_set=test)
            for name, extra in contenders.items()
        }
    steps = {name: trainer.steps_in_epoch(0, len(train)) for name, trainer in trainers.items()}
    times = interleaved_times({name: trainer.train_epoch for name, trainer in trainers.items()}, repeats, warmup=1)
    return {name: summarize([t / steps[name] for t in samples]) for name, samples in times.items()}


def timing_main(workloads: list[Workload], repeats: int, examples: int, patterns, out_dir: Path) -> dict[str, Any]:
    results = {w.name: step_times(w, patterns, repeats, examples) for w in workloads}
    overheads = {
        name: {c: row["median"] / rows["dense"]["median"] - 1.0 for c, row in rows.items() if c != "dense"}
        for name, rows in results.items()
    }
    payload = {
        "question": "training-step overhead of N:M sparsifiers vs dense (same loop, same examples, interleaved)",
        "environment": environment(),
        "settings": {"examples": examples, "repeats": repeats, "patterns": list(patterns), "eid_weight": EID_WEIGHT},
        "seconds_per_step": results,
        "overhead": overheads,
    }
    write_results(f"{NAME}_timing", payload, timing_markdown(payload), out_dir)
    grid = out_dir / f"{NAME}.json"
    if grid.exists():
        report = json.loads(grid.read_text())
        report["timing"] = payload
        write_results(NAME, report, markdown(report), out_dir)
    return payload


def timing_markdown(payload: dict[str, Any]) -> str:
    env, settings = payload["environment"], payload["settings"]
    lines = [
        "## Step overhead",
        "",
        f"`bench/nm.py --timing`, with nothing else running: {env['threads']} threads ({env['processor']}). Whole "
        f"epochs of the training loop on the same {settings['examples']} examples, contenders in rotating order, "
        f"{settings['repeats']} repeats; median ms per step; overhead = median / dense median − 1. Target: ≤ 20%.",
        "",
        "| workload | contender | ms per step | overhead vs dense |",
        "|---|---|---:|---:|",
    ]
    for name, rows in payload["seconds_per_step"].items():
        for contender, row in rows.items():
            overhead = payload["overhead"][name].get(contender)
            lines.append(
                f"| {name} | {contender} | {row['median'] * 1e3:.1f} | "
                f"{'' if overhead is None else f'{overhead:+.1%}'} |"
            )
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- report
def _versus(cell: dict[str, Any], reference: str) -> str:
    v = cell.get("versus", {}).get(reference)
    if v is None:
        return "–"
    d = v["difference"]
    return f"{100 * d['mean']:+.2f} ± {100 * d['half_width']:.2f} {v['verdict']}"


def _series(values: list[float | None] | None) -> str:
    return " → ".join("–" if v is None else f"{v:.3f}" for v in values) if values else ""


def summary(grid: dict[str, Any], patterns) -> list[str]:
    """Every pattern's verdicts against SR-STE and EID's against SpikeNM in one table, their tally, and
    the 2:4 target (within ``TARGET_24_POINTS`` of dense)."""
    columns = (("spikenm", "srste"), ("spikenm_eid", "srste"), ("asp", "srste"), ("spikenm_eid", "spikenm"))
    lines = [
        "## At a glance",
        "",
        "Paired differences in points, 95% interval, verdict.",
        "",
        "| workload | pattern | " + " | ".join(f"{LABELS[m]} vs {LABELS[r]}" for m, r in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    tally: dict[tuple[str, str], Counter[str]] = {c: Counter() for c in columns}
    targets = []
    for name, entry in grid.items():
        cells = {(c["pattern"], c["method"]): c for c in entry["cells"]}
        for pattern in patterns:
            row = []
            for method, reference in columns:
                cell = cells.get((pattern, method), {})
                row.append(_versus(cell, reference))
                if reference in cell.get("versus", {}):
                    tally[method, reference][cell["versus"][reference]["verdict"]] += 1
            lines.append(f"| {name} | {pattern} | " + " | ".join(row) + " |")
        for method in ("spikenm", "spikenm_eid", "srste", "asp"):
            v = cells.get(("2:4", method), {}).get("versus", {}).get("dense")
            if v is not None:
                d = round(100 * v["difference"]["mean"], 2)  # judged as printed, so float noise can't flip -0.30
                met = "yes" if d >= -TARGET_24_POINTS else "no"
                targets.append(f"{name} {LABELS[method]} {d:+.2f} ({met})")
    lines.append("")
    for (method, reference), counts in tally.items():
        if counts:
            lines.append(f"- {LABELS[method]} vs {LABELS[reference]}: {tally_text(counts)}.")
    if targets:
        lines.append(
            f"- 2:4 within {TARGET_24_POINTS} points of dense (mean paired difference): " + "; ".join(targets) + "."
        )
    return [*lines, ""]


def markdown(payload: dict[str, Any]) -> str:
    settings = payload["settings"]
    lines = [
        f"# {NAME}: N:M sparsity on deep SNNs" + (" (quick)" if payload["quick"] else ""),
        "",
        f"Generated by `bench/nm.py`. Seeds {', '.join(map(str, settings['seeds']))}; every contender trains E "
        "epochs in total (ASP: E − 1 dense, then 1 with fixed masks). Accuracy is test accuracy in percent, "
        "mean ± 95% interval; differences are paired per seed (Student t), with a verdict: better or worse "
        "when the interval excludes 0, tied when it includes it. SynOps: effective per sample relative to dense. "
        f"EID weight {settings['eid_weight']}.",
        run_time_line(
            payload,
            "the grid shared the machine with other work and was paused while anything was timed, so its train "
            "seconds (and their sum) are not timings, and ASP's fine-tuning epochs are not in the sum (see Step "
            "overhead for speed)",
        ),
        "",
        *summary(payload["grid"], settings["patterns"]),
    ]
    for name, entry in payload["grid"].items():
        w = payload["workloads"][name]
        dense = entry["dense"]
        lines += [
            f"## {name}",
            "",
            f"{w['model']} (width {w['width']:g}) on {w['dataset']}, T={w['timesteps']}, E={w['epochs']}; dense "
            f"{100 * dense['mean']:.2f} ± {100 * dense['half_width']:.2f}.",
            "",
            "| pattern | method | accuracy | vs SR-STE | vs dense | SynOps | flip rate per epoch | "
            "sampling entropy per epoch (nats) |",
            "|---|---|---:|---:|---:|---:|---|---|",
        ]
        for cell in entry["cells"]:
            acc = cell["accuracy"]
            accuracy = f"{100 * acc['mean']:.2f} ± {100 * acc['half_width']:.2f}"
            lines.append(
                f"| {cell['pattern']} | {LABELS[cell['method']]} | {accuracy}"
                f" | {_versus(cell, 'srste')} | {_versus(cell, 'dense')} | {cell['relative_synops']:.3f}× | "
                f"{_series(cell.get('mask_flip_rates'))} | {_series(cell.get('sampling_entropy'))} |"
            )
        lines.append("")
    if payload.get("timing"):
        lines.append(timing_markdown(payload["timing"]))
    lines.append(payload.get("notes", ""))
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plots(grid: dict[str, Any], patterns, out_dir: Path) -> None:
    plt = _pyplot()
    names = list(grid)
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 4.8), squeeze=False)
    for col, name in enumerate(names):
        ax, entry = axes[0][col], grid[name]
        ax.axhline(100 * entry["dense"]["mean"], color="black", lw=1.0, label="dense")
        for i, method in enumerate(METHODS):
            cells = {c["pattern"]: c for c in entry["cells"] if c["method"] == method}
            xs = [j + (i - 1.5) * 0.08 for j, p in enumerate(patterns) if p in cells]
            ax.errorbar(
                xs,
                [100 * cells[p]["accuracy"]["mean"] for p in patterns if p in cells],
                yerr=[100 * cells[p]["accuracy"]["half_width"] for p in patterns if p in cells],
                marker="o",
                capsize=3,
                ls="none",
                color=f"C{i}",
                label=LABELS[method],
            )
        ax.set_xticks(range(len(patterns)))
        ax.set_xticklabels(patterns)
        ax.set_xlabel("pattern N:M")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{name} (95% intervals)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"{NAME}.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(2, len(names), figsize=(6.5 * len(names), 7.5), squeeze=False)
    for col, name in enumerate(names):
        for row, key in enumerate(("mask_flip_rates", "sampling_entropy")):
            ax = axes[row][col]
            for cell in grid[name]["cells"]:
                if cell["method"] in ("spikenm", "spikenm_eid") and cell.get(key):
                    ax.plot(
                        range(1, len(cell[key]) + 1),
                        cell[key],
                        marker="o",
                        ls="-" if cell["method"] == "spikenm" else "--",
                        color=f"C{patterns.index(cell['pattern'])}",
                        label=f"{cell['pattern']} {LABELS[cell['method']]}",
                    )
            ax.set_xlabel("epoch")
            ax.set_ylabel(key.replace("_", " "))
            ax.set_title(name)
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out_dir / f"{NAME}_dynamics.png", dpi=120)
    plt.close(fig)


NOTES = ""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--timing", action="store_true", help="time the training steps only (idle machine)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOAD_NAMES, default=list(WORKLOAD_NAMES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--patterns", nargs="+", choices=PATTERNS, default=list(PATTERNS))
    parser.add_argument("--runs", type=Path, default=None, help="JSON-lines file of finished runs (resume, append)")
    parser.add_argument("--out-dir", type=Path, default=None, help="default bench/results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out_dir = Path(args.out_dir) if args.out_dir is not None else RESULTS
    q = QUICK if args.quick else {}
    workloads = [WORKLOADS[n] for n in q.get("workloads", args.workloads)]
    if args.quick:
        workloads = [replace(w, epochs=QUICK["epochs"]) for w in workloads]
    patterns = q.get("patterns", tuple(args.patterns))
    if args.timing:
        if args.quick:
            return timing_main(workloads, 1, 128, ("2:4",), out_dir)
        return timing_main(workloads, TIMING_REPEATS, TIMING_EXAMPLES, TIMING_PATTERNS, out_dir)
    seeds = q.get("seeds", tuple(args.seeds))
    methods = tuple(args.methods)
    resumed = len(RunStore(args.runs, ()).rows) if args.runs else 0
    rows = run_grid(
        workloads,
        seeds,
        patterns,
        methods,
        args.runs,
        q.get("train_examples"),
        q.get("test_examples"),
        q.get("calibration", CALIBRATION_BATCHES),
        not args.quick,
    )
    grid = aggregate(rows, workloads, patterns, methods)
    payload = {
        "question": "N:M on deep SNNs: SpikeNM (± EID) vs SR-STE vs ASP vs dense, at equal epochs",
        "quick": args.quick,
        "environment": environment(),
        "settings": {
            "seeds": list(seeds),
            "patterns": list(patterns),
            "methods": list(methods),
            "eid_weight": EID_WEIGHT,
        },
        "workloads": {w.name: {**asdict(w), "data_options": dict(w.data_options)} for w in workloads},
        "runs": rows,
        "resumed_runs": resumed,
        "grid": grid,
        "notes": NOTES,
        "total_seconds": time.perf_counter() - started,
    }
    timing_file = out_dir / f"{NAME}_timing.json"
    if timing_file.exists() and not args.quick:
        payload["timing"] = json.loads(timing_file.read_text())
    write_results(NAME, payload, markdown(payload), out_dir)
    plots(grid, patterns, out_dir)
    return payload


if __name__ == "__main__":
    main()

"""N:M from scratch: how close do SpikeNM, SR-STE and ASP get to dense, and at what training cost?

For each dataset (``scnn``/mnist5k, ``scnn1d``/mnist1d), seed and pattern (2:4, 1:4, 2:8, 1:8,
1:16), all in one process, the contenders are:

* ``dense``;
* ``asp``: the dense run pruned one-shot by N:M magnitude, then retrained ``ASP_FINETUNE`` epochs
  with fixed masks (its total budget is dense + retraining, which favours it);
* ``srste``: SR-STE from scratch, same epochs as dense;
* ``spikenm``: SpikeNM from scratch, same epochs, without EID;
* ``spikenm_eid``: the same with EID (``EID_WEIGHT``).

Reported: test accuracy (mean ± std over seeds); the final epoch's mask flip rate; the mean sampling
entropy over training; effective SynOps and energy relative to dense; and the training-step overhead
against dense. The overhead is timed in its own phase (``--timing``, run on an idle machine): one
Trainer per contender on the same ``TIMING_EXAMPLES`` examples, whole epochs of the real training
loop called in rotating order, ``TIMING_REPEATS`` times, medians of seconds per step. The Targets section checks SpikeNM
2:4 within 0.3 points of dense, SpikeNM ≥ SR-STE at 1:8 and 1:16, and step overhead ≤ 20%.
Figures are reported as measured.

Run: ``python bench/nm.py [--quick] [--seeds 0 1 2] [--datasets mnist5k mnist1d]`` for the accuracy
grid (``bench/results/nm.{json,md,png}``, ``nm_dynamics.png``), then ``python bench/nm.py --timing``
for the step overheads (``bench/results/nm_timing.{json,md}``; nm.md quotes them when present).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from spikeprune.data import build_dataset
from spikeprune.data.indexed import IndexedDataset
from spikeprune.sparsity.pipeline import prune_run
from spikeprune.train import Trainer, make_config

try:
    from harness import RESULTS, environment, interleaved_times, summarize, write_results
except ImportError:
    from bench.harness import RESULTS, environment, interleaved_times, summarize, write_results

SETTINGS = {
    "mnist5k": dict(model="scnn", epochs=4, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, timesteps=4),
    "mnist1d": dict(
        model="scnn1d", epochs=10, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, timesteps=4
    ),
}
PATTERNS = ("2:4", "1:4", "2:8", "1:8", "1:16")
ASP_FINETUNE = {"mnist5k": 1, "mnist1d": 2}
EID_WEIGHT = 0.1
METHODS = ("asp", "srste", "spikenm", "spikenm_eid")
TRAINED = ("srste", "spikenm", "spikenm_eid")  # the from-scratch methods whose step cost is timed
TIMING_PATTERNS = ("2:4", "1:8", "1:16")
TIMING_EXAMPLES = 1024
TIMING_REPEATS = 11


def _train(dataset: str, seed: int, folder: Path, **extra) -> dict:
    config = make_config(
        {**SETTINGS[dataset], **extra, "dataset": dataset, "seed": seed, "progress": False, "profile": True}
    )
    trainer = Trainer(config, folder)
    summary = trainer.fit()
    history = trainer.history
    return {
        "test_accuracy": summary["test_accuracy"],
        "effective_synops": summary["effective_synops"],
        "energy_pj": summary["energy_pj"],
        "mask_flip_rate_last": history[-1].get("mask_flip_rate"),
        "mask_flip_rates": [r.get("mask_flip_rate") for r in history],
        "sampling_entropy": [r.get("sampling_entropy") for r in history],
    }


def run_one(dataset: str, seed: int, pattern: str, method: str, dense_dir: Path, folder: Path) -> dict:
    if method == "asp":
        summary = prune_run(
            dense_dir, folder, method="nm-magnitude", nm=pattern, finetune_epochs=ASP_FINETUNE[dataset], progress=False
        )
        return {
            "test_accuracy": summary["test_accuracy"],
            "effective_synops": summary["effective_synops"],
            "energy_pj": summary["energy_pj"],
            "mask_flip_rate_last": None,
            "mask_flip_rates": [],
            "sampling_entropy": [],
        }
    return _train(dataset, seed, folder, **_sparsity(pattern, method))


def _sparsity(pattern: str, method: str) -> dict:
    """Config entries of a from-scratch N:M contender."""
    options = {"eid_weight": EID_WEIGHT} if method == "spikenm_eid" else {}
    nm_method = "srste" if method == "srste" else "spikenm"
    return {"sparsity": "nm", "nm": pattern, "nm_method": nm_method, "sparsity_options": options}


def step_times(dataset: str, patterns: tuple[str, ...], repeats: int, examples: int, scratch: Path) -> dict[str, dict]:
    """Seconds per training step of dense and every from-scratch contender, timed interleaved.

    Each contender is a real Trainer on the same first ``examples`` training examples; one call is a whole
    epoch of the one training loop (forward, loss, sparsifier hooks, backward, optimizer step).
    """
    train, test = build_dataset(dataset, seed=0)
    subset = IndexedDataset(train.data[:examples], train.targets[:examples], train.info)
    base = {**SETTINGS[dataset], "dataset": dataset, "seed": 0, "progress": False, "epochs": 1000}
    contenders = {"dense": {}} | {f"{p} {m}": _sparsity(p, m) for p in patterns for m in TRAINED}
    trainers = {
        name: Trainer(make_config({**base, **extra}), scratch / name.replace(" ", "-").replace(":", "of"),
                      train_set=subset, test_set=test)
        for name, extra in contenders.items()
    }  # fmt: skip
    steps = {name: trainer.steps_in_epoch(0, len(subset)) for name, trainer in trainers.items()}
    times = interleaved_times({name: trainer.train_epoch for name, trainer in trainers.items()}, repeats, warmup=1)
    return {name: summarize([t / steps[name] for t in samples]) for name, samples in times.items()}


def timing_main(
    datasets: list[str],
    repeats: int,
    out_dir: Path | None,
    patterns: tuple[str, ...] = TIMING_PATTERNS,
    examples: int = TIMING_EXAMPLES,
) -> dict:
    """The ``--timing`` phase: step overheads vs dense; re-renders nm.md when the grid is there."""
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in datasets:
            results[dataset] = step_times(dataset, patterns, repeats, examples, Path(scratch) / dataset)
            print(dataset, {k: round(v["median"] * 1e3, 2) for k, v in results[dataset].items()}, flush=True)
    overheads = {
        dataset: {name: row["median"] / rows["dense"]["median"] - 1.0 for name, row in rows.items() if name != "dense"}
        for dataset, rows in results.items()
    }
    payload = {
        "question": "training-step overhead of N:M sparsifiers vs dense (same loop, same examples, interleaved)",
        "environment": environment(),
        "settings": {"examples": examples, "repeats": repeats, "patterns": patterns,
                     "per_dataset": {d: SETTINGS[d] for d in datasets}, "eid_weight": EID_WEIGHT},
        "seconds_per_step": results,
        "overhead": overheads,
    }  # fmt: skip
    write_results("nm_timing", payload, render_timing(payload), out_dir)
    grid = (out_dir or RESULTS) / "nm.json"
    if grid.exists():
        saved = json.loads(grid.read_text())
        settings = saved["settings"]
        markdown = render(saved["table"], settings["datasets"], settings["seeds"], saved["quick"], overheads)
        (grid.parent / "nm.md").write_text(markdown)
    return payload


def render_timing(payload: dict) -> str:
    env, settings = payload["environment"], payload["settings"]
    lines = [
        "## nm_timing",
        "",
        f"torch {env['torch']}, {env['threads']} CPU threads. Whole epochs of the training loop on the same "
        f"{settings['examples']} examples, contenders interleaved in rotating order, {settings['repeats']} repeats; "
        "median ms per step [IQR]; overhead = median / dense median − 1.",
        "",
        "| dataset | contender | ms per step | IQR | overhead vs dense |",
        "|---|---|---:|---:|---:|",
    ]
    for dataset, rows in payload["seconds_per_step"].items():
        for name, row in rows.items():
            overhead = payload["overhead"][dataset].get(name)
            lines.append(
                f"| {dataset} | {name} | {row['median'] * 1e3:.2f} | {row['q1'] * 1e3:.2f}–{row['q3'] * 1e3:.2f} | "
                f"{_fmt(overhead, '+.1%')} |"
            )
    lines.append("")
    return "\n".join(lines)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="mnist5k, 1 epoch, one seed, 2:4 and 1:8 only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SETTINGS))
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--runs", type=Path, default=None, help="JSON-lines file: reuse finished blocks, append")
    parser.add_argument(
        "--merge", type=Path, nargs="+", default=None,
        help="summarize these --runs files only; a later file's row replaces an earlier one for the same run",
    )  # fmt: skip
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS),
        help="contenders to run besides dense (e.g. re-run SpikeNM only, then --merge over an older grid)",
    )  # fmt: skip
    parser.add_argument("--timing", action="store_true", help="time the training steps only (idle machine)")
    parser.add_argument("--repeats", type=int, default=TIMING_REPEATS, help="timing repeats per contender")
    args = parser.parse_args(argv)
    if args.timing:
        if args.quick:  # a smoke run of the timing phase: 2:4 only, a few steps
            return timing_main(["mnist5k"], 1, args.out_dir, patterns=("2:4",), examples=256)
        return timing_main(args.datasets, args.repeats, args.out_dir)
    datasets, seeds, patterns = args.datasets, args.seeds, PATTERNS
    if args.quick:
        datasets, seeds, patterns = ["mnist5k"], [0], ("2:4", "1:8")
        SETTINGS["mnist5k"] = {**SETTINGS["mnist5k"], "epochs": 1}
        ASP_FINETUNE["mnist5k"] = 1
    if args.merge:
        rows = _read_runs(args.merge)
        datasets = [d for d in SETTINGS if any(r["dataset"] == d for r in rows)]
        seeds = sorted({r["seed"] for r in rows})
    else:
        rows = run_grid(datasets, seeds, patterns, args.runs, tuple(args.methods))
    table = summarize_rows(rows, datasets, patterns)
    payload = {
        "question": "N:M sparsity from scratch: SpikeNM vs SR-STE vs ASP vs dense",
        "quick": args.quick,
        "environment": environment(),
        "settings": {"per_dataset": SETTINGS, "asp_finetune": ASP_FINETUNE, "eid_weight": EID_WEIGHT, "seeds": seeds,
                     "datasets": datasets, "patterns": patterns},
        "runs": rows,
        "table": table,
    }  # fmt: skip
    out = args.out_dir or RESULTS
    timing = out / "nm_timing.json"
    overheads = json.loads(timing.read_text())["overhead"] if timing.exists() else None
    markdown = render(table, datasets, seeds, args.quick, overheads)
    write_results("nm", payload, markdown, args.out_dir)
    plot(table, datasets, patterns, out / "nm.png")
    plot_dynamics(rows, datasets, out / "nm_dynamics.png")
    print(markdown)
    return payload


def run_grid(
    datasets: list[str],
    seeds: list[int],
    patterns: tuple[str, ...],
    runs: Path | None,
    methods: tuple[str, ...] = METHODS,
) -> list[dict]:
    """Every (seed, dataset) block of runs; with ``runs`` (JSON lines), finished blocks are reused and new rows
    appended, so several processes (one per seed) can share the work and an interrupted grid resumes."""
    done = (
        [json.loads(line) for line in runs.read_text().splitlines() if line.strip()] if runs and runs.exists() else []
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for seed in seeds:
            for dataset in datasets:
                block = [r for r in done if r["seed"] == seed and r["dataset"] == dataset]
                if len(block) == 1 + len(patterns) * len(methods):
                    rows += block
                    continue
                dense_dir = scratch / f"{dataset}-{seed}-dense"
                dense = _train(dataset, seed, dense_dir)
                new = [{"dataset": dataset, "seed": seed, "pattern": "-", "method": "dense", **dense}]
                print(f"{dataset} seed {seed} dense: {dense['test_accuracy']:.4f}", flush=True)
                for p_index, pattern in enumerate(patterns):
                    shift = (p_index + seed) % len(methods)
                    for method in methods[shift:] + methods[:shift]:  # rotate the order: no fixed position
                        folder = scratch / f"{dataset}-{seed}-{pattern.replace(':', 'of')}-{method}"
                        result = run_one(dataset, seed, pattern, method, dense_dir, folder)
                        new.append({"dataset": dataset, "seed": seed, "pattern": pattern, "method": method, **result})
                        print(f"{dataset} seed {seed} {pattern} {method}: {result['test_accuracy']:.4f}", flush=True)
                if runs is not None:
                    with runs.open("a") as handle:
                        handle.writelines(json.dumps(row) + "\n" for row in new)
                rows += new
    return rows


def _read_runs(paths: list[Path]) -> list[dict]:
    """Rows of the JSON-lines files in order; a later row replaces an earlier one with the same key."""
    rows: dict[tuple, dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["dataset"], row["seed"], row["pattern"], row["method"])] = row
    return list(rows.values())


def summarize_rows(rows: list[dict], datasets: list[str], patterns: tuple[str, ...]) -> list[dict]:
    table = []
    for dataset in datasets:
        dense = [r for r in rows if r["dataset"] == dataset and r["method"] == "dense"]
        dense_by_seed = {r["seed"]: r for r in dense}
        dense_accuracy, std = _mean_std([r["test_accuracy"] for r in dense])
        table.append({"dataset": dataset, "pattern": "-", "method": "dense", "accuracy": dense_accuracy, "std": std,
                      "delta": 0.0, "synops": 1.0, "energy": 1.0, "flip": None, "entropy": None})  # fmt: skip
        for pattern in patterns:
            for method in METHODS:
                chosen = [
                    r for r in rows if r["dataset"] == dataset and r["pattern"] == pattern and r["method"] == method
                ]
                if not chosen:
                    continue
                acc, std = _mean_std([r["test_accuracy"] for r in chosen])
                entropies = [statistics.mean(e for e in r["sampling_entropy"] if e is not None)
                             for r in chosen if any(e is not None for e in r["sampling_entropy"])]  # fmt: skip
                flips = [r["mask_flip_rate_last"] for r in chosen if r["mask_flip_rate_last"] is not None]
                table.append(
                    {
                        "dataset": dataset,
                        "pattern": pattern,
                        "method": method,
                        "accuracy": acc,
                        "std": std,
                        "delta": acc - dense_accuracy,
                        "synops": statistics.mean(
                            r["effective_synops"] / dense_by_seed[r["seed"]]["effective_synops"] for r in chosen),
                        "energy": statistics.mean(
                            r["energy_pj"] / dense_by_seed[r["seed"]]["energy_pj"] for r in chosen),
                        "flip": statistics.mean(flips) if flips else None,
                        "entropy": statistics.mean(entropies) if entropies else None,
                    }
                )  # fmt: skip
    return table


def _fmt(value, spec: str, none: str = "–") -> str:
    return none if value is None else format(value, spec)


def render(
    table: list[dict], datasets: list[str], seeds: list[int], quick: bool, overheads: dict[str, dict] | None = None
) -> str:
    """The grid as Markdown; ``overheads`` (from ``--timing``) fills the step-overhead column."""
    env = environment()

    def overhead(row: dict) -> float | None:
        if overheads is None or row["method"] not in TRAINED:
            return None
        return overheads.get(row["dataset"], {}).get(f"{row['pattern']} {row['method']}")

    lines = [
        "## nm" + (" (quick)" if quick else ""),
        "",
        f"torch {env['torch']}, {env['threads']} CPU threads; seeds {seeds}. Same epochs for dense, SR-STE and SpikeNM "
        f"(from scratch); ASP = dense + {ASP_FINETUNE} retraining epochs. EID weight {EID_WEIGHT}. SynOps/energy "
        "relative to dense. Mean entropy: of the sampling distribution softmax(a/τ) (a = logits + magnitude prior), "
        "averaged over epochs. Step overhead vs dense: from `--timing` (nm_timing.md; – where not timed)"
        + ("." if overheads else ", not run yet."),
        "",
    ]
    for dataset in datasets:
        lines += [
            f"### {dataset}",
            "",
            "| pattern | method | accuracy | Δ vs dense (pts) | step overhead | last-epoch flip rate | mean entropy "
            "| SynOps × | energy × |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in (r for r in table if r["dataset"] == dataset):
            lines.append(
                f"| {row['pattern']} | {row['method']} | {row['accuracy']:.4f} ± {row['std']:.4f} | "
                f"{row['delta'] * 100:+.2f} | {_fmt(overhead(row), '+.1%')} | {_fmt(row['flip'], '.4f')} | "
                f"{_fmt(row['entropy'], '.3f')} | {row['synops']:.3f} | {row['energy']:.3f} |"
            )
        lines.append("")
    lines += ["### Targets", ""]
    for dataset in datasets:
        rows = {(r["pattern"], r["method"]): r for r in table if r["dataset"] == dataset}
        if ("2:4", "spikenm") in rows:
            delta = rows[("2:4", "spikenm")]["delta"] * 100
            lines.append(
                f"- {dataset}: SpikeNM 2:4 within 0.3 points of dense: "
                f"{'yes' if delta >= -0.3 - 1e-9 else 'no'} ({delta:+.2f})"
            )
        for pattern in ("1:8", "1:16"):
            if (pattern, "spikenm") in rows and (pattern, "srste") in rows:
                ours, theirs = rows[(pattern, "spikenm")]["accuracy"], rows[(pattern, "srste")]["accuracy"]
                verdict = "yes" if ours >= theirs else "no"
                lines.append(f"- {dataset}: SpikeNM ≥ SR-STE at {pattern}: {verdict} ({ours:.4f} vs {theirs:.4f})")
        timed = [(overhead(r), r) for r in table if r["dataset"] == dataset and r["method"].startswith("spikenm")]
        timed = [(value, r) for value, r in timed if value is not None]
        if timed:
            worst, row = max(timed, key=lambda item: item[0])
            lines.append(
                f"- {dataset}: SpikeNM step overhead ≤ 20%: {'yes' if worst <= 0.2 else 'no'} "
                f"(worst {worst:+.1%}, {row['pattern']} {row['method']})"
            )
    lines.append("")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def plot(table: list[dict], datasets: list[str], patterns: tuple[str, ...], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = [r for r in table if r["dataset"] == dataset]
        dense = next(r for r in rows if r["method"] == "dense")
        ax.axhline(dense["accuracy"], color="black", linestyle="--", label="dense")
        for method in METHODS:
            points = [(patterns.index(r["pattern"]), r["accuracy"], r["std"]) for r in rows if r["method"] == method]
            if points:
                xs, ys, es = zip(*points, strict=True)
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
        ax.set_xticks(range(len(patterns)), patterns)
        ax.set_title(dataset)
        ax.set_xlabel("N:M pattern")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_dynamics(rows: list[dict], datasets: list[str], path: Path) -> None:
    """Mask flip rate and sampling entropy per epoch (seed means) of SpikeNM with and without EID."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(datasets), figsize=(6 * len(datasets), 7), squeeze=False)
    for column, dataset in enumerate(datasets):
        for row_index, key in enumerate(("mask_flip_rates", "sampling_entropy")):
            ax = axes[row_index][column]
            for method in ("srste", "spikenm", "spikenm_eid"):
                for pattern in ("2:4", "1:8"):
                    series = [r[key] for r in rows if r["dataset"] == dataset and r["method"] == method
                              and r["pattern"] == pattern and r[key] and None not in r[key]]  # fmt: skip
                    if not series:
                        continue
                    mean = [statistics.mean(values) for values in zip(*series, strict=True)]
                    style = "-" if pattern == "2:4" else "--"
                    ax.plot(range(1, len(mean) + 1), mean, style, marker="o", label=f"{method} {pattern}")
            ax.set_title(f"{dataset}: {'mask flip rate' if row_index == 0 else 'sampling entropy (nats)'}")
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
    _save(fig, path)


if __name__ == "__main__":
    main()

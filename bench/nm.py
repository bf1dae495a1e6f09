"""N:M from scratch: how close do SpikeNM, SR-STE and ASP get to dense, and at what training cost?

For each dataset (``scnn``/mnist5k, ``scnn1d``/mnist1d), seed and pattern (2:4, 1:4, 2:8, 1:8,
1:16), all in one process, the contenders are:

* ``dense``;
* ``asp``: the dense run pruned one-shot by N:M magnitude, then retrained ``ASP_FINETUNE`` epochs
  with fixed masks (its total budget is dense + retraining, which favours it);
* ``srste``: SR-STE from scratch, same epochs as dense;
* ``spikenm``: SpikeNM from scratch, same epochs, without EID;
* ``spikenm_eid``: the same with EID (``EID_WEIGHT``).

Reported: test accuracy (mean ± std over seeds); training-step overhead against dense (train
seconds per step, per seed, median); the final epoch's mask flip rate; the mean sampling entropy
over training; effective SynOps and energy relative to dense. The Targets section checks SpikeNM
2:4 within 0.3 points of dense, SpikeNM ≥ SR-STE at 1:8 and 1:16, and step overhead ≤ 20%.
Figures are reported as measured.

Run: ``python bench/nm.py [--quick] [--seeds 0 1 2] [--datasets mnist5k mnist1d]``. Writes
``bench/results/nm.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from spikeprune.sparsity.pipeline import prune_run
from spikeprune.train import Trainer, make_config

try:
    from harness import environment, write_results
except ImportError:
    from bench.harness import environment, write_results

SETTINGS = {
    "mnist5k": dict(model="scnn", epochs=6, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, timesteps=4),
    "mnist1d": dict(
        model="scnn1d", epochs=16, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, timesteps=4
    ),
}
PATTERNS = ("2:4", "1:4", "2:8", "1:8", "1:16")
ASP_FINETUNE = {"mnist5k": 2, "mnist1d": 4}
EID_WEIGHT = 0.1
METHODS = ("asp", "srste", "spikenm", "spikenm_eid")


def _train(dataset: str, seed: int, folder: Path, **extra) -> dict:
    config = make_config(
        {**SETTINGS[dataset], **extra, "dataset": dataset, "seed": seed, "progress": False, "profile": True}
    )
    trainer = Trainer(config, folder)
    summary = trainer.fit()
    history = trainer.history
    return {
        "test_accuracy": summary["test_accuracy"],
        "seconds_per_step": sum(r["train_seconds"] for r in history) / max(sum(r["steps"] for r in history), 1),
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
            "seconds_per_step": None,
            "effective_synops": summary["effective_synops"],
            "energy_pj": summary["energy_pj"],
            "mask_flip_rate_last": None,
            "mask_flip_rates": [],
            "sampling_entropy": [],
        }
    options = {"eid_weight": EID_WEIGHT} if method == "spikenm_eid" else {}
    nm_method = "srste" if method == "srste" else "spikenm"
    return _train(dataset, seed, folder, sparsity="nm", nm=pattern, nm_method=nm_method, sparsity_options=options)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="mnist5k, 1 epoch, one seed, 2:4 and 1:8 only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SETTINGS))
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    datasets, seeds, patterns = args.datasets, args.seeds, PATTERNS
    if args.quick:
        datasets, seeds, patterns = ["mnist5k"], [0], ("2:4", "1:8")
        SETTINGS["mnist5k"] = {**SETTINGS["mnist5k"], "epochs": 1}
        ASP_FINETUNE["mnist5k"] = 1
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for seed in seeds:
            for dataset in datasets:
                dense_dir = scratch / f"{dataset}-{seed}-dense"
                dense = _train(dataset, seed, dense_dir)
                rows.append({"dataset": dataset, "seed": seed, "pattern": "-", "method": "dense", **dense})
                print(f"{dataset} seed {seed} dense: {dense['test_accuracy']:.4f}", flush=True)
                for p_index, pattern in enumerate(patterns):
                    shift = (p_index + seed) % len(METHODS)
                    for method in METHODS[shift:] + METHODS[:shift]:  # rotate the order: no fixed position
                        folder = scratch / f"{dataset}-{seed}-{pattern.replace(':', 'of')}-{method}"
                        result = run_one(dataset, seed, pattern, method, dense_dir, folder)
                        rows.append({"dataset": dataset, "seed": seed, "pattern": pattern, "method": method, **result})
                        print(f"{dataset} seed {seed} {pattern} {method}: {result['test_accuracy']:.4f}", flush=True)
    table = summarize_rows(rows, datasets, patterns)
    payload = {
        "question": "N:M sparsity from scratch: SpikeNM vs SR-STE vs ASP vs dense",
        "quick": args.quick,
        "environment": environment(),
        "settings": {"per_dataset": SETTINGS, "asp_finetune": ASP_FINETUNE, "eid_weight": EID_WEIGHT, "seeds": seeds},
        "runs": rows,
        "table": table,
    }
    markdown = render(table, datasets, seeds, args.quick)
    write_results("nm", payload, markdown, args.out_dir)
    plot(table, datasets, patterns, (args.out_dir or Path(__file__).resolve().parent / "results") / "nm.png")
    print(markdown)
    return payload


def summarize_rows(rows: list[dict], datasets: list[str], patterns: tuple[str, ...]) -> list[dict]:
    table = []
    for dataset in datasets:
        dense = [r for r in rows if r["dataset"] == dataset and r["method"] == "dense"]
        dense_by_seed = {r["seed"]: r for r in dense}
        dense_accuracy, std = _mean_std([r["test_accuracy"] for r in dense])
        table.append({"dataset": dataset, "pattern": "-", "method": "dense", "accuracy": dense_accuracy, "std": std,
                      "delta": 0.0, "overhead": 0.0, "synops": 1.0, "energy": 1.0, "flip": None,
                      "entropy": None})  # fmt: skip
        for pattern in patterns:
            for method in METHODS:
                chosen = [
                    r for r in rows if r["dataset"] == dataset and r["pattern"] == pattern and r["method"] == method
                ]
                if not chosen:
                    continue
                acc, std = _mean_std([r["test_accuracy"] for r in chosen])
                overheads = [
                    r["seconds_per_step"] / dense_by_seed[r["seed"]]["seconds_per_step"] - 1.0
                    for r in chosen
                    if r["seconds_per_step"] is not None
                ]
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
                        "overhead": statistics.median(overheads) if overheads else None,
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


def render(table: list[dict], datasets: list[str], seeds: list[int], quick: bool) -> str:
    env = environment()
    lines = [
        "## nm" + (" (quick)" if quick else ""),
        "",
        f"torch {env['torch']}, {env['threads']} CPU threads; seeds {seeds}. Same epochs for dense, SR-STE and SpikeNM "
        f"(from scratch); ASP = dense + {ASP_FINETUNE} retraining epochs. EID weight {EID_WEIGHT}. Overhead = train "
        "seconds per step vs dense (median over seeds). SynOps/energy relative to dense.",
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
                f"{row['delta'] * 100:+.2f} | {_fmt(row['overhead'], '+.1%')} | {_fmt(row['flip'], '.4f')} | "
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
                f"{'yes' if delta >= -0.3 else 'no'} ({delta:+.2f})"
            )
        for pattern in ("1:8", "1:16"):
            if (pattern, "spikenm") in rows and (pattern, "srste") in rows:
                ours, theirs = rows[(pattern, "spikenm")]["accuracy"], rows[(pattern, "srste")]["accuracy"]
                verdict = "yes" if ours >= theirs else "no"
                lines.append(f"- {dataset}: SpikeNM ≥ SR-STE at {pattern}: {verdict} ({ours:.4f} vs {theirs:.4f})")
        overheads = [r["overhead"] for r in table if r["dataset"] == dataset and r["method"].startswith("spikenm")
                     and r["overhead"] is not None]  # fmt: skip
        if overheads:
            worst = max(overheads)
            lines.append(
                f"- {dataset}: SpikeNM step overhead ≤ 20%: {'yes' if worst <= 0.2 else 'no'} (worst {worst:+.1%})"
            )
    lines.append("")
    return "\n".join(lines)


def plot(table: list[dict], datasets: list[str], patterns: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""Does ``spikeprune quickstart`` reach >= 95% on mnist5k in under 3 minutes here? Wall clock, end to end.

Run: ``python bench/quickstart.py [--seeds 0 1 2]``. Writes ``bench/results/quickstart.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from spikeprune.quickstart import QUICKSTART, run_quickstart

try:
    from harness import environment, write_results
except ImportError:
    from bench.harness import environment, write_results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            summary = run_quickstart(Path(folder) / "run", epochs=args.epochs, progress=False, seed=seed)
            wall = time.perf_counter() - started
        runs.append(
            {
                "seed": seed,
                "test_accuracy": summary["test_accuracy"],
                "wall_seconds": wall,
                "train_seconds": summary["train_seconds"],
                "seconds_per_epoch": summary["seconds_per_epoch"],
                "effective_synops": summary["effective_synops"],
                "acs": summary["acs"],
                "macs": summary["macs"],
                "energy_pj": summary["energy_pj"],
                "mean_firing_rate": summary["mean_firing_rate"],
            }
        )
        print(runs[-1])
    accuracies = [r["test_accuracy"] for r in runs]
    walls = [r["wall_seconds"] for r in runs]
    payload = {
        "question": "quickstart accuracy and wall-clock time",
        "settings": {**QUICKSTART, "epochs": args.epochs},
        "environment": environment(),
        "runs": runs,
        "median_test_accuracy": statistics.median(accuracies),
        "median_wall_seconds": statistics.median(walls),
    }
    lines = [
        "## quickstart",
        "",
        f"scnn on mnist5k, T=4, {args.epochs} epochs, {environment()['threads']} CPU threads, whole run timed "
        "(data, training, evaluation, checkpoints).",
        "",
        "| seed | test accuracy | wall s | train s/epoch (median) | SynOps/sample | energy/sample (µJ, 45 nm FP32) "
        "| firing rate |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['seed']} | {r['test_accuracy']:.4f} | {r['wall_seconds']:.1f} | "
            f"{statistics.median(r['seconds_per_epoch']):.1f} | {r['effective_synops'] / 1e6:.2f} M | "
            f"{r['energy_pj'] / 1e6:.2f} | {r['mean_firing_rate']:.3f} |"
        )
    lines.append("")
    write_results("quickstart", payload, "\n".join(lines), args.out_dir)
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()

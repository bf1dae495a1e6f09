"""Does ``spikeprune train --dataset nmnist5k`` reach 90% test accuracy in a few minutes here?

Two measurements, in one process:

* conversion: the 5,000 ``mnist5k`` digits turned into events by the saccade emulator and binned
  into T=4 frames (``load_nmnist5k``, no cache), ``CONVERSION_REPEATS`` times, median seconds;
* training: the defaults of ``spikeprune train --dataset nmnist5k`` (the Trainer with only the
  dataset set), one run per seed, wall clock from an empty dataset cache to the final summary
  (conversion, training, evaluation, checkpoints), test accuracy after each epoch.

Run: ``python bench/events.py [--seeds 0 1 2] [--quick]``. Writes ``bench/results/events.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from spikeprune.data.registry import build_dataset, clear_cache
from spikeprune.train import Trainer, make_config
from spikeprune.train.trainer import data_options

try:
    from harness import environment, write_results
    from workloads import subset
except ImportError:
    from bench.harness import environment, write_results
    from bench.workloads import subset

CONVERSION_REPEATS = 3
QUICK_EXAMPLES = 512
TARGET = 0.90


def conversion_seconds(repeats: int) -> list[float]:
    """Seconds to emulate and bin all 5,000 digits, each repeat from scratch (empty dataset cache)."""
    config = make_config({"dataset": "nmnist5k"})
    samples = []
    for _ in range(repeats):
        clear_cache()
        started = time.perf_counter()
        build_dataset(config.dataset, seed=0, augment=config.augment, options=data_options(config))
        samples.append(time.perf_counter() - started)
    return samples


def train_run(seed: int, epochs: int | None, fresh: bool = True, examples: int | None = None) -> dict:
    """One ``spikeprune train --dataset nmnist5k`` run with the defaults (``epochs`` and ``examples``, the
    first training examples, only in quick mode); ``fresh`` empties the dataset cache first, so the wall
    clock includes the conversion."""
    settings = {"dataset": "nmnist5k", "seed": seed, "progress": False}
    if epochs is not None:
        settings["epochs"] = epochs
    if fresh:
        clear_cache()  # as a fresh command does
    config = make_config(settings)
    data = {}
    if examples is not None:
        train, test = build_dataset(config.dataset, seed=seed, augment=config.augment, options=data_options(config))
        data = {"train_set": subset(train, examples), "test_set": subset(test, examples)}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        trainer = Trainer(config, Path(folder) / "run", **data)
        summary = trainer.fit()
        wall = time.perf_counter() - started
    config = trainer.config
    return {
        "seed": seed,
        "wall_seconds": wall,
        "train_seconds": summary["train_seconds"],
        "test_accuracy": summary["test_accuracy"],
        "accuracy_per_epoch": [record["test_accuracy"] for record in trainer.history],
        "config": {key: getattr(config, key) for key in ("model", "epochs", "timesteps", "batch_size", "optimizer",
                                                          "lr", "weight_decay")},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 conversion, 1 epoch on 512 of the converted examples (a smoke run)"
    )
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    conversion = conversion_seconds(1 if args.quick else CONVERSION_REPEATS)
    runs = []
    for seed in args.seeds:
        if args.quick:  # one epoch on part of the data the conversion above already built
            runs.append(train_run(seed, epochs=1, fresh=False, examples=QUICK_EXAMPLES))
        else:
            runs.append(train_run(seed, epochs=None))
        print(runs[-1], flush=True)
    payload = {
        "question": "nmnist5k: conversion time, and accuracy and wall clock of the default training command",
        "quick": args.quick,
        "environment": environment(),
        "conversion_seconds": conversion,
        "runs": runs,
        "target_accuracy": TARGET,
    }
    env = environment()
    config = runs[0]["config"]
    lines = [
        "## events" + (" (quick)" if args.quick else ""),
        "",
        f"torch {env['torch']}, {env['threads']} CPU threads. `spikeprune train --dataset nmnist5k` defaults: "
        f"{config['model']}, T={config['timesteps']}, {config['epochs']} epochs, batch {config['batch_size']}, "
        f"{config['optimizer']} lr {config['lr']}, weight decay {config['weight_decay']}.",
        "",
        f"Conversion of the 5,000 digits (emulator + T=4 frames, no cache): median "
        f"{statistics.median(conversion):.1f} s over {len(conversion)} runs.",
        "",
        "| seed | wall clock (s) | of which training (s) | test accuracy | per epoch | ≥ 90% |",
        "|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['seed']} | {r['wall_seconds']:.1f} | {r['train_seconds']:.1f} | {r['test_accuracy']:.4f} | "
            f"{', '.join(f'{a:.3f}' for a in r['accuracy_per_epoch'])} | "
            f"{'yes' if r['test_accuracy'] >= TARGET else 'no'} |"
        )
    lines.append("")
    markdown = "\n".join(lines)
    write_results("events", payload, markdown, args.out_dir)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()

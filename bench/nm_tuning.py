"""Which SpikeNM settings matter? An ablation around the defaults, on the grid's hardest small case.

``scnn1d`` on mnist1d at 1:8, with the grid's training settings (``bench/nm.py``). The seeds are
100 and 101, not the grid's 0–2, so the grid stays a held-out check of whatever this picks. Each row changes one
thing from the defaults of ``SpikeNM`` (the first row restores the previous defaults: no magnitude
prior, τ from 1 to 0.1); SR-STE on the same seeds is the reference. Reported per row: test accuracy
per seed and mean, the last epoch's deployed-mask flip rate and sampling entropy.

Run: ``python bench/nm_tuning.py [--quick] [--workers 2]`` → ``bench/results/nm_tuning.{json,md}``.
Runs go to ``--workers`` processes of one thread each: accuracy does not depend on the scheduling.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

try:
    from harness import environment, write_results
    from nm import SETTINGS, _train
except ImportError:
    from bench.harness import environment, write_results
    from bench.nm import SETTINGS, _train

DATASET, PATTERN, SEEDS = "mnist1d", "1:8", (100, 101)
VARIANTS: dict[str, tuple[str, dict]] = {
    "previous defaults (β=0, τ 1→0.1)": ("spikenm", {"magnitude_prior": 0.0, "tau_start": 1.0, "tau_end": 0.1}),
    "β=0": ("spikenm", {"magnitude_prior": 0.0}),
    "τ 1→0.1": ("spikenm", {"tau_start": 1.0, "tau_end": 0.1}),
    "defaults (β=3, τ 0.3→0.03)": ("spikenm", {}),
    "β=1": ("spikenm", {"magnitude_prior": 1.0}),
    "β=10": ("spikenm", {"magnitude_prior": 10.0}),
    "init uniform": ("spikenm", {"init": "uniform"}),
    "dense_gradient off": ("spikenm", {"dense_gradient": False}),
    "logit_lr 0.01": ("spikenm", {"logit_lr": 0.01}),
    "logit_lr 0.2": ("spikenm", {"logit_lr": 0.2}),
    "SR-STE (reference)": ("srste", {}),
}


def run_variant(job: tuple[str, str, dict, int, int]) -> dict:
    """One training run in a worker process (one thread), through the grid's own ``_train``."""
    name, method, options, seed, epochs = job
    torch.set_num_threads(1)
    sparsity = {"sparsity": "nm", "nm": PATTERN, "nm_method": method, "sparsity_options": options}
    with tempfile.TemporaryDirectory() as folder:
        result = _train(DATASET, seed, Path(folder), epochs=epochs, **sparsity)
    return {"variant": name, "seed": seed, "test_accuracy": result["test_accuracy"],
            "mask_flip_rate": result["mask_flip_rate_last"],
            "sampling_entropy": result["sampling_entropy"][-1]}  # fmt: skip


def summarize(rows: list[dict], variants: list[str]) -> list[dict]:
    table = []
    for name in variants:
        chosen = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["seed"])
        flips = [r["mask_flip_rate"] for r in chosen if r["mask_flip_rate"] is not None]
        entropies = [r["sampling_entropy"] for r in chosen if r["sampling_entropy"] is not None]
        table.append({
            "variant": name,
            "accuracy": statistics.mean(r["test_accuracy"] for r in chosen),
            "per_seed": [r["test_accuracy"] for r in chosen],
            "flip": statistics.mean(flips) if flips else None,
            "entropy": statistics.mean(entropies) if entropies else None,
        })  # fmt: skip
    return table


def render(table: list[dict], seeds: tuple[int, ...], epochs: int, quick: bool) -> str:
    env = environment()
    lines = [
        "## nm_tuning" + (" (quick)" if quick else ""),
        "",
        f"torch {env['torch']}; `scnn1d` on {DATASET} at {PATTERN}, {epochs} epochs, seeds {list(seeds)} (not the "
        "grid's). Each SpikeNM row changes one setting from the defaults; β = `magnitude_prior`. Flip rate and "
        "sampling entropy: last epoch.",
        "",
        "| variant | accuracy (mean) | per seed | last-epoch flip rate | last-epoch sampling entropy |",
        "|---|---:|---|---:|---:|",
    ]
    for row in table:
        flip = "–" if row["flip"] is None else f"{row['flip']:.5f}"
        entropy = "–" if row["entropy"] is None else f"{row['entropy']:.3f}"
        seeds_text = ", ".join(f"{a:.3f}" for a in row["per_seed"])
        lines.append(f"| {row['variant']} | {row['accuracy']:.4f} | {seeds_text} | {flip} | {entropy} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, one seed, two variants")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = list(VARIANTS)
    seeds, epochs = SEEDS, SETTINGS[DATASET]["epochs"]
    if args.quick:
        variants, seeds, epochs = ["defaults (β=3, τ 0.3→0.03)", "SR-STE (reference)"], SEEDS[:1], 1
    jobs = [(name, *VARIANTS[name], seed, epochs) for name in variants for seed in seeds]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(run_variant, jobs))
    else:
        rows = [run_variant(job) for job in jobs]
    table = summarize(rows, variants)
    payload = {
        "question": "SpikeNM ablation around the defaults (mnist1d, 1:8)",
        "quick": args.quick,
        "environment": environment(),
        "settings": {"dataset": DATASET, "pattern": PATTERN, "seeds": list(seeds), "epochs": epochs,
                     "training": SETTINGS[DATASET], "variants": {name: VARIANTS[name] for name in variants}},
        "runs": rows,
        "table": table,
    }  # fmt: skip
    markdown = render(table, seeds, epochs, args.quick)
    write_results("nm_tuning", payload, markdown, args.out_dir)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()

"""Does EID lower SpikeNM's sampling variance, and does exploring early help at high sparsity?

On ``mnist5k-convnet6`` (``bench/workloads.py``) at 1:8 and 1:16, seeds 100–102 (not the benchmark's
0–4, so ``bench/nm.py`` stays a held-out check of whatever this picks), each variant trains from
scratch for the workload's E epochs:

* ``SpikeNM`` (defaults: β = 3, τ 0.3 → 0.03) and ``SpikeNM + EID`` (weight 0.1);
* exploring early, two ways: a hotter start (τ 1 → 0.03) and a weaker magnitude prior at the start
  (β rising linearly from 0 to 3 over training, ``prior_start=0``), each with and without EID;
* ``SR-STE``, the reference.

Measured per run: test accuracy; the deployed-mask flip rate and the sampling entropy of every epoch;
and, after the first epoch, the variance of the logits' gradient estimate: the task loss's gradient
with respect to every layer's logits on one fixed training batch, over ``DRAWS`` independent mask
samples, as ``Σ Var / ‖mean‖²`` (the relative variance of the estimator the logits learn from).

Run: ``python bench/nm_tuning.py [--quick]`` → ``bench/results/nm_tuning.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from spikeprune.train import Trainer

try:
    from harness import RESULTS, RunStore, environment, threads_text, write_results
    from nm import sparsity_settings
    from stats import mean_interval, paired_difference
    from workloads import WORKLOADS, Workload, datasets
except ImportError:  # imported as bench.nm_tuning
    from bench.harness import RESULTS, RunStore, environment, threads_text, write_results
    from bench.nm import sparsity_settings
    from bench.stats import mean_interval, paired_difference
    from bench.workloads import WORKLOADS, Workload, datasets

NAME = "nm_tuning"
WORKLOAD = "mnist5k-convnet6"
PATTERNS = ("1:8", "1:16")
SEEDS = (100, 101, 102)
DRAWS = 16
EXPLORE_TAU = {"tau_start": 1.0}
EXPLORE_PRIOR = {"prior_start": 0.0}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "SpikeNM": ("spikenm", {}),
    "SpikeNM + EID": ("spikenm_eid", {}),
    "hot start (τ 1→0.03)": ("spikenm", EXPLORE_TAU),
    "hot start + EID": ("spikenm_eid", EXPLORE_TAU),
    "prior rising (β 0→3)": ("spikenm", EXPLORE_PRIOR),
    "prior rising + EID": ("spikenm_eid", EXPLORE_PRIOR),
    "SR-STE": ("srste", {}),
}
QUICK = dict(patterns=("1:8",), seeds=(100, 101), variants=("SpikeNM", "SpikeNM + EID"), epochs=2, examples=192)


def logit_gradient_variance(trainer: Trainer, draws: int) -> float | None:
    """``Σ Var[g] / ‖E g‖²`` of the task loss's gradient w.r.t. all logits over ``draws`` mask samples."""
    layers = getattr(trainer.sparsifier, "layers", [])
    logits = [module.nm_logits for _, module in layers if "nm_logits" in module._parameters]
    if not logits:
        return None
    x, y, _ = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=trainer.config.batch_size)))
    model = trainer.model
    model.train()
    samples = []
    for _ in range(draws):  # every training forward draws new masks; BN sees the same batch each time
        loss = F.cross_entropy(model(x), y)
        samples.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, logits)]))
    stacked = torch.stack(samples).double()
    return float(stacked.var(0).sum() / stacked.mean(0).square().sum())


def run_variant(workload: Workload, seed: int, pattern: str, variant: str, examples: int | None) -> dict[str, Any]:
    method, options = VARIANTS[variant]
    train, test = datasets(workload, seed, examples, examples)
    config = workload.config(seed, **sparsity_settings(pattern, method, options))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer = Trainer(config, None, train_set=train, test_set=test)
    variance = None
    while trainer.epoch < config.epochs:  # the loop of Trainer.fit, with a measurement after the first epoch
        trainer.history.append(trainer.train_epoch())
        trainer.epoch += 1
        if trainer.epoch == 1:
            variance = logit_gradient_variance(trainer, DRAWS)
    return {
        "test_accuracy": trainer.evaluate()["test_accuracy"],
        "mask_flip_rates": [r.get("mask_flip_rate") for r in trainer.history],
        "sampling_entropy": [r.get("sampling_entropy") for r in trainer.history],
        "logit_gradient_variance": variance,
    }


def summarize_rows(rows: list[dict[str, Any]], patterns, variants) -> list[dict[str, Any]]:
    table = []
    for pattern in patterns:
        base = {r["seed"]: r["test_accuracy"] for r in rows if r["pattern"] == pattern and r["variant"] == "SpikeNM"}
        for variant in variants:
            group = [r for r in rows if r["pattern"] == pattern and r["variant"] == variant]
            if len(group) < 2:
                continue
            own = {r["seed"]: r["test_accuracy"] for r in group}
            row = {
                "pattern": pattern,
                "variant": variant,
                "accuracy": mean_interval(own.values()).as_dict(),
                "per_seed": own,
                "flip_rate_first_epoch": statistics.fmean(r["mask_flip_rates"][0] or 0.0 for r in group),
                "entropy_first_epoch": statistics.fmean(r["sampling_entropy"][0] or 0.0 for r in group),
                "logit_gradient_variance": (
                    statistics.fmean(r["logit_gradient_variance"] for r in group)
                    if group[0]["logit_gradient_variance"] is not None
                    else None
                ),
            }
            if variant != "SpikeNM" and set(base) == set(own):
                diff = paired_difference(own, base)
                row["versus_spikenm"] = {"difference": diff.as_dict(), "verdict": diff.verdict()}
            table.append(row)
    return table


def markdown(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    lines = [
        f"# {NAME}: EID and early exploration" + (" (quick)" if payload["quick"] else ""),
        "",
        f"Generated by `bench/nm_tuning.py`: {payload['workload']}, seeds {', '.join(map(str, payload['seeds']))} "
        "(not the benchmark's). Accuracy: mean ± 95% interval; vs SpikeNM: paired difference and verdict. Flip rate "
        "and sampling entropy of the first epoch; gradient variance: Σ Var / ‖mean‖² of the logits' gradient over "
        f"{DRAWS} mask samples after the first epoch.",
        f"Measured run time: {payload['seconds'] / 60:.1f} min on {threads_text(env['threads'])}.",
        "",
        "| pattern | variant | accuracy | vs SpikeNM | flip rate, epoch 1 | sampling entropy, epoch 1 | "
        "logit-gradient variance |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in payload["table"]:
        acc = row["accuracy"]
        versus = row.get("versus_spikenm")
        vs = (
            f"{100 * versus['difference']['mean']:+.2f} ± {100 * versus['difference']['half_width']:.2f} "
            f"{versus['verdict']}"
            if versus
            else "–"
        )
        variance = row["logit_gradient_variance"]
        lines.append(
            f"| {row['pattern']} | {row['variant']} | {100 * acc['mean']:.2f} ± {100 * acc['half_width']:.2f} | {vs} | "
            f"{row['flip_rate_first_epoch']:.4f} | {row['entropy_first_epoch']:.3f} | "
            f"{'–' if variance is None else f'{variance:.3g}'} |"
        )
    lines += ["", payload.get("notes", ""), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--runs", type=Path, default=None, help="JSON-lines file of finished runs (resume, append)")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    q = QUICK if args.quick else {}
    workload = WORKLOADS[WORKLOAD]
    if args.quick:
        workload = replace(workload, epochs=QUICK["epochs"])
    patterns, seeds = q.get("patterns", PATTERNS), q.get("seeds", SEEDS)
    variants = q.get("variants", tuple(VARIANTS))
    store = RunStore(args.runs, ("pattern", "variant", "seed"))
    for seed in seeds:
        for pattern in patterns:
            for variant in variants:
                if store.get(pattern=pattern, variant=variant, seed=seed) is None:
                    row = run_variant(workload, seed, pattern, variant, q.get("examples"))
                    store.add({"pattern": pattern, "variant": variant, "seed": seed, **row})
                    print(f"{pattern} {variant} seed {seed}: {row['test_accuracy']:.4f}", flush=True)
    payload = {
        "question": "Does EID lower SpikeNM's sampling variance, and does exploring early help at high sparsity?",
        "quick": args.quick,
        "workload": workload.name,
        "seeds": list(seeds),
        "variants": {v: VARIANTS[v] for v in variants},
        "runs": store.rows,
        "table": summarize_rows(store.rows, patterns, variants),
        "environment": environment(),
        "seconds": time.perf_counter() - started,
        "notes": NOTES,
    }
    write_results(NAME, payload, markdown(payload), args.out_dir or RESULTS)
    return payload


NOTES = ""


if __name__ == "__main__":
    main()

"""How do SADP and the baselines trade accuracy for training time? Data-pruning grid, score quality, variance.

1. **Accuracy/time grid.** ``scnn`` on ``mnist5k`` and ``scnn1d`` on ``mnist1d``, trained with full data
   (``full``), with full data for ``round((1 − r)·epochs)`` epochs (``fewer_epochs``: same compute), and
   with each data pruner (``random``, ``infobatch``, ``loss``, ``ucb``, ``sadp``) at prune ratios
   r ∈ {0.3, 0.5, 0.7}, seeds 0, 1, 2, all in this one process. Runs are interleaved: for each seed
   and dataset, ``full`` once, then per ratio the six contenders in an order that rotates from block
   to block. All pruners use their default schedule (1 warm-up epoch, last 12.5 % of epochs on full
   data; InfoBatch has no warm-up). Speedup = full train seconds / method train seconds, per seed,
   then the median; "ideal" is the best speedup the method's data budget allows.
2. **Score quality.** On the seed-0 full-data model of each dataset (eval mode) and a fixed set of
   training examples (not augmented): the exact per-example gradient norm (all parameters, and only
   the layers SADP bounds: readout + the probed synapse), from ``torch.func`` on a ``loop``-backend
   copy; the SADP score (``SpikeProbe`` on the fused model); the ANN bound ``‖softmax(z) − onehot(y)‖``.
   Spearman correlations of both scores with both exact norms.
3. **Gradient-estimator variance at the same budget.** With the same examples' exact per-example
   gradients g_i and k = N/2: Monte Carlo of E‖ĝ − ḡ‖² for ĝ = (1/k) Σ_{i∈S} w_i g_i under uniform
   sampling without replacement (w = 1) and under importance sampling (ε-floored probabilities,
   water-filled inclusion probabilities, systematic sampling, weights k/(Nπ_i), as SADP samples) with
   the ANN bound, the SADP score and the exact norms (oracle) as scores.

Run: ``python bench/data_pruning.py`` (``--quick`` for a small smoke run). Writes
``bench/results/data_pruning.{json,md,png}`` (or into ``--out-dir``).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from spikeprune.data import IndexedDataset, build_dataset
from spikeprune.datapruning import PruningSchedule, SpikeProbe, delta_norm, spike_aware_score
from spikeprune.datapruning.sampling import (
    budget,
    floor_probabilities,
    inclusion_probabilities,
    systematic_sample,
    unbiased_weights,
)
from spikeprune.train import Trainer, make_config

try:
    from harness import environment, write_results
except ImportError:  # imported as bench.data_pruning
    from bench.harness import environment, write_results

NAME = "data_pruning"

# Training settings per dataset (the same for every method; only epochs change for fewer_epochs).
# mnist5k: 4,000 train / 1,000 test real MNIST digits; mnist1d: 4,000 / 1,000 MNIST-1D signals.
DATASETS: dict[str, dict[str, Any]] = {
    "mnist5k": dict(model="scnn", epochs=8, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, timesteps=4),
    "mnist1d": dict(
        model="scnn1d", epochs=16, batch_size=64, optimizer="adamw", lr=2e-3, weight_decay=1e-4, timesteps=4
    ),
}
PRUNERS = ("random", "infobatch", "loss", "ucb", "sadp")  # data_pruning names, default options
METHODS = ("full", "fewer_epochs", *PRUNERS)
RATIOS = (0.3, 0.5, 0.7)
SEEDS = (0, 1, 2)
SCORE_EXAMPLES = 512  # training examples for parts 2 and 3
DRAWS = 2000  # Monte Carlo draws per estimator in part 3
SAMPLE_FRACTION = 0.5  # k = SAMPLE_FRACTION · SCORE_EXAMPLES in part 3
EPSILON = 0.1  # probability floor, as SADP's default
GRAD_CHUNK = 32  # examples per vmap call for the exact per-example gradients
WARMUP_EXAMPLES = 256  # one untimed epoch on this many examples before each (seed, dataset) block

# --quick: the same code paths, tiny (mnist5k only, 1,000 training examples, 3 epochs so one is pruned).
QUICK = dict(
    datasets=("mnist5k",),
    epochs=3,
    seeds=(0,),
    ratios=(0.5,),
    methods=("full", "fewer_epochs", "random", "sadp", "infobatch"),
    train_examples=1000,
    score_examples=128,
    draws=50,
)


# --------------------------------------------------------------------------------------------- part 1
def fewer_epochs(epochs: int, ratio: float) -> int:
    """Full-data epochs with the compute of pruning ``ratio``: ``round((1 − r)·epochs)``, at least 1."""
    return max(1, round((1.0 - ratio) * epochs))


def datasets_for(name: str, seed: int, train_examples: int | None) -> tuple[IndexedDataset, IndexedDataset]:
    train, test = build_dataset(name, seed=seed)
    if train_examples is not None and train_examples < len(train):
        train = IndexedDataset(
            train.data[:train_examples],
            train.targets[:train_examples],
            train.info,
            augment=train.augment,
            seed=train.seed,
        )
    return train, test


def train_run(
    dataset: str, settings: dict[str, Any], method: str, ratio: float, seed: int, train_examples: int | None
) -> tuple[dict[str, Any], Trainer]:
    """One training run in this process (no files); returns its record and the trainer."""
    epochs = settings["epochs"]
    values = {**settings, "dataset": dataset, "seed": seed, "progress": False}
    if method == "fewer_epochs":
        values["epochs"] = fewer_epochs(epochs, ratio)
    elif method != "full":
        values.update(data_pruning=method, prune_ratio=ratio)
    config = make_config(values, f"{NAME} settings")
    train_set, test_set = datasets_for(dataset, seed, train_examples)
    started = time.perf_counter()
    trainer = Trainer(config, None, train_set=train_set, test_set=test_set)
    summary = trainer.fit()
    wall = time.perf_counter() - started
    record = {
        "dataset": dataset,
        "method": method,
        "prune_ratio": ratio,
        "seed": seed,
        "epochs": config.epochs,
        "test_accuracy": summary["test_accuracy"],
        "train_seconds": summary["train_seconds"],
        "examples_visited": summary["examples_visited"],
        "epoch_train_seconds": [r["train_seconds"] for r in trainer.history],
        "epoch_examples_visited": [r["examples_visited"] for r in trainer.history],
        "eval_seconds": sum(r["eval_seconds"] for r in trainer.history),
        "wall_seconds": wall,
    }
    if method == "sadp":
        record["scoring_seconds"] = sum(r.get("scoring_seconds", 0.0) for r in trainer.history)
    return record, trainer


def warm_up(dataset: str, settings: dict[str, Any], seed: int, examples: int = WARMUP_EXAMPLES) -> None:
    """One untimed short epoch, so that one-time costs (data cache, allocator, thread pools, the switch
    from the other dataset's model) do not land on the block's first timed run, always ``full``."""
    values = {**settings, "dataset": dataset, "epochs": 1, "seed": seed, "progress": False}
    train_set, test_set = datasets_for(dataset, seed, examples)
    Trainer(make_config(values, f"{NAME} warm-up"), None, train_set=train_set, test_set=test_set).fit()


def run_grid(
    datasets: dict[str, dict[str, Any]],
    methods: tuple[str, ...],
    ratios: tuple[float, ...],
    seeds: tuple[int, ...],
    train_examples: int | None,
) -> tuple[list[dict[str, Any]], dict[str, nn.Module]]:
    """All runs, interleaved: seed → dataset → (untimed warm-up, full, then per ratio the contenders in
    rotating order).

    Returns the run records and, per dataset, the trained model of the first seed's full-data run.
    """
    contenders = [m for m in methods if m != "full"]
    runs: list[dict[str, Any]] = []
    kept: dict[str, nn.Module] = {}
    blocks = dict.fromkeys(datasets, 0)  # per dataset, so the rotation also varies across seeds
    total = len(seeds) * len(datasets) * (1 + len(ratios) * len(contenders))
    started = time.perf_counter()

    def log(record: dict[str, Any]) -> None:
        print(
            f"[{len(runs)}/{total} {time.perf_counter() - started:7.0f}s] {record['dataset']} {record['method']} "
            f"r={record['prune_ratio']} seed={record['seed']}: acc {record['test_accuracy']:.4f}, "
            f"train {record['train_seconds']:.1f}s, visited {record['examples_visited']}",
            flush=True,
        )

    for seed in seeds:
        for dataset, settings in datasets.items():
            warm_up(dataset, settings, seed)
            record, trainer = train_run(dataset, settings, "full", 0.0, seed, train_examples)
            runs.append(record)
            log(record)
            if dataset not in kept:
                kept[dataset] = trainer.model
            del trainer
            for ratio in ratios:
                shift = blocks[dataset] % len(contenders)
                for method in contenders[shift:] + contenders[:shift]:
                    record, _ = train_run(dataset, settings, method, ratio, seed, train_examples)
                    runs.append(record)
                    log(record)
                blocks[dataset] += 1
    return runs, kept


def ideal_speedup(method: str, ratio: float, epochs: int, visited_ratio: float) -> float:
    """Best speedup the method's data budget allows (visited-based for InfoBatch, whose size is random)."""
    if method == "full":
        return 1.0
    if method == "fewer_epochs":
        return epochs / fewer_epochs(epochs, ratio)
    if method == "infobatch":
        return visited_ratio
    return PruningSchedule(epochs).theoretical_speedup(ratio)


def aggregate(runs: list[dict[str, Any]], datasets: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per (dataset, method, r): accuracy mean ± std over seeds, visited, seconds, speedup vs full, ideal."""
    grid: dict[str, list[dict[str, Any]]] = {}
    for dataset, settings in datasets.items():
        mine = [r for r in runs if r["dataset"] == dataset]
        full = {r["seed"]: r for r in mine if r["method"] == "full"}
        full_mean = statistics.fmean(r["test_accuracy"] for r in full.values())
        keys = sorted({(r["method"], r["prune_ratio"]) for r in mine}, key=lambda k: (METHODS.index(k[0]), k[1]))
        rows = []
        for method, ratio in keys:
            group = [r for r in mine if r["method"] == method and r["prune_ratio"] == ratio]
            accuracies = [r["test_accuracy"] for r in group]
            speedups = [full[r["seed"]]["train_seconds"] / r["train_seconds"] for r in group]
            visited_ratios = [full[r["seed"]]["examples_visited"] / r["examples_visited"] for r in group]
            mean = statistics.fmean(accuracies)
            speedup = statistics.median(speedups)
            ideal = ideal_speedup(method, ratio, settings["epochs"], statistics.median(visited_ratios))
            row = {
                "method": method,
                "prune_ratio": ratio,
                "seeds": [r["seed"] for r in group],
                "epochs": group[0]["epochs"],
                "accuracy_mean": mean,
                "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "accuracies": accuracies,
                "delta_vs_full_points": 100.0 * (mean - full_mean),
                "examples_visited": statistics.fmean(r["examples_visited"] for r in group),
                "visited_ratio": statistics.median(visited_ratios),
                "train_seconds": statistics.fmean(r["train_seconds"] for r in group),
                "speedups": speedups,
                "speedup": speedup,
                "ideal_speedup": ideal,
                "speedup_fraction_of_ideal": speedup / ideal,
            }
            if method == "sadp":
                row["scoring_overhead_percent"] = statistics.fmean(
                    100.0 * r["scoring_seconds"] / r["train_seconds"] for r in group
                )
            rows.append(row)
        grid[dataset] = rows
    return grid


# --------------------------------------------------------------------------------------------- parts 2 and 3
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
    and the per-example gradient norm over the parameters named in ``bounded`` ``[N]``."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(chosen: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, (chosen, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    flat, bounded_norms = [], []
    for start in range(0, len(x), chunk):
        grads = per_example(params, x[start : start + chunk], y[start : start + chunk])
        flat.append(torch.cat([g.flatten(1) for g in grads.values()], dim=1).cpu())
        bounded_norms.append(torch.sqrt(sum(grads[k].flatten(1).double().square().sum(1) for k in bounded)).cpu())
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
    # closed form for uniform sampling without replacement, as a check on the Monte Carlo
    spread = float(kernel.trace() - kernel.sum() / n)  # Σ‖g_i − ḡ‖²
    analytic = (1.0 - k / n) / k * spread / (n - 1)
    return {
        "examples": n,
        "k": k,
        "draws": draws,
        "epsilon": EPSILON,
        "estimators": estimators,
        "uniform_closed_form": analytic,
    }


def score_study(
    model: nn.Module, dataset: str, seed: int, examples: int, draws: int, train_examples: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parts 2 and 3 on a trained model and ``examples`` training examples (fixed random subset)."""
    started = time.perf_counter()
    model = model.eval()
    device = next(model.parameters()).device
    train, _ = datasets_for(dataset, seed, train_examples)
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:examples]
    x, y = train.data[chosen].to(device), train.targets[chosen].to(device)  # un-augmented examples
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
        "bounded_parameters": bounded,
        "parameters": sum(p.numel() for p in model.parameters()),
        "spearman": {
            "sadp_vs_exact_all": spearman(sadp, exact),
            "ann_vs_exact_all": spearman(ann, exact),
            "sadp_vs_exact_bounded": spearman(sadp, exact_bounded),
            "ann_vs_exact_bounded": spearman(ann, exact_bounded),
        },
        # sanity: SADP's score is an upper bound on the bounded layers' exact norm
        "sadp_bound_holds_fraction": float((sadp >= exact_bounded * (1 - 1e-5)).double().mean()),
        "median_exact_norm_all": float(exact.median()),
        "median_exact_norm_bounded": float(exact_bounded.median()),
        "median_sadp_score": float(sadp.median()),
    }
    variance = variance_study(kernel, {"ann_bound": ann, "sadp": sadp, "oracle": exact}, draws, seed)
    quality["seconds"] = time.perf_counter() - started
    return quality, variance


# --------------------------------------------------------------------------------------------- targets
def targets(grid: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The four targets, measured per dataset (``holds`` is None where the grid lacks the runs)."""
    out = []
    for dataset, rows in grid.items():
        at = {(r["method"], r["prune_ratio"]): r for r in rows}
        full = at[("full", 0.0)]
        sadp_ratios = sorted(r for m, r in at if m == "sadp")
        for ratio in sadp_ratios:
            row = at[("sadp", ratio)]
            out.append(
                {
                    "dataset": dataset,
                    "target": "(i) SADP speedup >= 0.95 x ideal",
                    "prune_ratio": ratio,
                    "holds": row["speedup_fraction_of_ideal"] >= 0.95,
                    "measured": f"{row['speedup']:.2f}x of ideal {row['ideal_speedup']:.2f}x "
                    f"= {100 * row['speedup_fraction_of_ideal']:.1f} %",
                }
            )
        for ratio in sadp_ratios:
            row = at[("sadp", ratio)]
            out.append(
                {
                    "dataset": dataset,
                    "target": "(ii) SADP scoring overhead <= 2 %",
                    "prune_ratio": ratio,
                    "holds": row["scoring_overhead_percent"] <= 2.0,
                    "measured": f"{row['scoring_overhead_percent']:.2f} % of train time",
                }
            )
        row = at.get(("sadp", 0.3))
        out.append(
            {
                "dataset": dataset,
                "target": "(iii) SADP within 0.5 points of full data at r = 0.3",
                "prune_ratio": 0.3,
                "holds": None if row is None else row["delta_vs_full_points"] >= -0.5,
                "measured": "not run"
                if row is None
                else f"SADP {100 * row['accuracy_mean']:.2f} % vs full {100 * full['accuracy_mean']:.2f} % "
                f"({row['delta_vs_full_points']:+.2f} points)",
            }
        )
        for ratio in (0.5, 0.7):
            row = at.get(("sadp", ratio))
            rivals = {m: at.get((m, ratio)) for m in ("random", "infobatch")}
            missing = row is None or any(v is None for v in rivals.values())
            out.append(
                {
                    "dataset": dataset,
                    "target": "(iv) SADP ahead of random and infobatch (mean accuracy)",
                    "prune_ratio": ratio,
                    "holds": None
                    if missing
                    else all(row["accuracy_mean"] > v["accuracy_mean"] for v in rivals.values()),
                    "measured": "not run"
                    if missing
                    else f"SADP {100 * row['accuracy_mean']:.2f} %, "
                    + ", ".join(f"{m} {100 * v['accuracy_mean']:.2f} %" for m, v in rivals.items()),
                }
            )
    return out


# --------------------------------------------------------------------------------------------- report
def plot(grid: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(grid)
    fig, axes = plt.subplots(2, len(names), figsize=(6.0 * len(names), 8.0), squeeze=False)
    colors = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for col, dataset in enumerate(names):
        rows = grid[dataset]
        full = next(r for r in rows if r["method"] == "full")
        top, bottom = axes[0][col], axes[1][col]
        top.axhline(100 * full["accuracy_mean"], color="black", lw=1.2, label="full data")
        top.axhspan(
            100 * (full["accuracy_mean"] - full["accuracy_std"]),
            100 * (full["accuracy_mean"] + full["accuracy_std"]),
            color="black",
            alpha=0.08,
        )
        for method in METHODS[1:]:
            mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["prune_ratio"])
            if not mine:
                continue
            ratios = [r["prune_ratio"] for r in mine]
            top.errorbar(
                ratios,
                [100 * r["accuracy_mean"] for r in mine],
                yerr=[100 * r["accuracy_std"] for r in mine],
                marker="o",
                capsize=3,
                color=colors[method],
                label=method,
            )
            bottom.plot(
                ratios,
                [r["speedup_fraction_of_ideal"] for r in mine],
                marker="o",
                color=colors[method],
                label=method,
            )
        for axis in (top, bottom):
            axis.set_xticks(sorted({r["prune_ratio"] for r in rows if r["method"] != "full"}))
        top.set_title(f"{dataset}: test accuracy (mean ± std over seeds)")
        top.set_xlabel("prune ratio r")
        top.set_ylabel("test accuracy (%)")
        top.legend(fontsize=8)
        bottom.axhline(1.0, color="black", lw=1.0)
        bottom.axhline(0.95, color="grey", ls="--", lw=1.0, label="0.95 of ideal")
        bottom.set_title(f"{dataset}: measured speedup / ideal speedup")
        bottom.set_xlabel("prune ratio r")
        bottom.set_ylabel("fraction of ideal")
        bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(payload: dict[str, Any]) -> str:
    env, settings = payload["environment"], payload["settings"]
    lines = [
        f"## {NAME}" + (" (quick)" if payload["quick"] else ""),
        "",
        f"torch {env['torch']}, {env['threads']} threads, {env['processor']}, CUDA: {env['cuda']}. "
        f"Seeds {', '.join(map(str, settings['seeds']))}; prune ratios {', '.join(map(str, settings['ratios']))}; "
        f"all runs in one process, interleaved (seed → dataset → full, then per ratio the contenders in rotating "
        "order). Pruners use their default schedule: 1 warm-up epoch (InfoBatch: none) and the last 12.5 % of "
        "epochs on full data. Speedup = full-data train seconds / method train seconds per seed, median over "
        "seeds; ideal = the method's best possible speedup (pruners: `PruningSchedule.theoretical_speedup`; "
        "fewer_epochs: epochs / its epochs; infobatch: full examples visited / its examples visited). Times "
        "exclude evaluation.",
        "",
        "| dataset | model | epochs | batch | optimizer | lr | weight decay | T | training examples |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for dataset, s in settings["datasets"].items():
        lines.append(
            f"| {dataset} | {s['model']} | {s['epochs']} | {s['batch_size']} | {s['optimizer']} | {s['lr']:g} | "
            f"{s['weight_decay']:g} | {s['timesteps']} | {settings['train_examples'].get(dataset)} |"
        )
    lines.append("")
    for dataset, rows in payload["grid"].items():
        lines += [
            f"### {dataset}",
            "",
            "| method | r | accuracy % (mean ± std) | Δ vs full (points) | examples visited | train s | speedup "
            "| ideal | speedup/ideal | scoring overhead |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            overhead = f"{r['scoring_overhead_percent']:.2f} %" if "scoring_overhead_percent" in r else ""
            lines.append(
                f"| {r['method']} | {r['prune_ratio']:g} | {100 * r['accuracy_mean']:.2f} ± "
                f"{100 * r['accuracy_std']:.2f} | {r['delta_vs_full_points']:+.2f} | {r['examples_visited']:,.0f} | "
                f"{r['train_seconds']:.1f} | {r['speedup']:.2f}× | {r['ideal_speedup']:.2f}× | "
                f"{100 * r['speedup_fraction_of_ideal']:.1f} % | {overhead} |"
            )
        lines.append("")
    lines += [
        f"### Score quality (seed-{settings['seeds'][0]} full-data model, eval mode)",
        "",
        "Spearman rank correlation with the exact per-example gradient norm (torch.func on a loop-backend copy), "
        "over all parameters and over the layers SADP bounds (readout + probed synapse).",
        "",
        "| dataset | examples | SADP vs exact (all) | ANN bound vs exact (all) | SADP vs exact (bounded) "
        "| ANN bound vs exact (bounded) | SADP ≥ exact bounded norm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, q in payload["score_quality"].items():
        s = q["spearman"]
        lines.append(
            f"| {dataset} | {q['examples']} | {s['sadp_vs_exact_all']:.3f} | {s['ann_vs_exact_all']:.3f} | "
            f"{s['sadp_vs_exact_bounded']:.3f} | {s['ann_vs_exact_bounded']:.3f} | "
            f"{100 * q['sadp_bound_holds_fraction']:.1f} % |"
        )
    lines += [
        "",
        "### Gradient-estimator variance at the same budget",
        "",
        "E‖ĝ − ḡ‖² of ĝ = (1/k) Σ_{i∈S} w_i g_i over the exact full-model per-example gradients, Monte Carlo; "
        f"importance sampling uses ε = {EPSILON} floored probabilities, water-filled inclusion probabilities, "
        "systematic sampling and weights k/(Nπ_i). ± is the Monte Carlo standard error.",
        "",
        "| dataset | N | k | draws | estimator | E‖ĝ − ḡ‖² | relative to uniform |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    labels = {
        "uniform": "uniform, without replacement",
        "ann_bound": "importance: ANN bound",
        "sadp": "importance: SADP score",
        "oracle": "importance: exact norm (oracle)",
    }
    for dataset, v in payload["variance"].items():
        for name, e in v["estimators"].items():
            lines.append(
                f"| {dataset} | {v['examples']} | {v['k']} | {v['draws']} | {labels[name]} | "
                f"{e['mse']:.3e} ± {e['standard_error']:.1e} | {e['relative_to_uniform']:.3f} |"
            )
        lines.append(
            f"| {dataset} | {v['examples']} | {v['k']} | | uniform, closed form | {v['uniform_closed_form']:.3e} | |"
        )
    lines += ["", "### Targets", "", "| dataset | target | r | holds | measured |", "|---|---|---:|---|---|"]
    for t in payload["targets"]:
        holds = "n/a" if t["holds"] is None else ("yes" if t["holds"] else "**no**")
        lines.append(f"| {t['dataset']} | {t['target']} | {t['prune_ratio']:g} | {holds} | {t['measured']} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (mnist5k, 3 epochs, one seed, r=0.5)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default {list(SEEDS)}")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=None, help="default: both")
    parser.add_argument("--out-dir", type=Path, default=None, help="default bench/results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    q = QUICK if args.quick else {}
    names = args.datasets or list(q.get("datasets", DATASETS))
    datasets = {name: dict(DATASETS[name]) for name in names}
    if args.quick:
        for settings in datasets.values():
            settings["epochs"] = QUICK["epochs"]
    seeds = tuple(args.seeds) if args.seeds else q.get("seeds", SEEDS)
    ratios = q.get("ratios", RATIOS)
    methods = q.get("methods", METHODS)
    train_examples = q.get("train_examples")
    examples, draws = q.get("score_examples", SCORE_EXAMPLES), q.get("draws", DRAWS)

    runs, models = run_grid(datasets, methods, ratios, seeds, train_examples)
    grid = aggregate(runs, datasets)
    quality, variance = {}, {}
    for dataset, model in models.items():
        quality[dataset], variance[dataset] = score_study(model, dataset, seeds[0], examples, draws, train_examples)
        print(f"{dataset}: score quality {quality[dataset]['spearman']}", flush=True)
    payload = {
        "question": "How do SADP and the baselines trade accuracy for training time?",
        "quick": args.quick,
        "environment": environment(),
        "settings": {
            "datasets": datasets,
            "methods": list(methods),
            "ratios": list(ratios),
            "seeds": list(seeds),
            "train_examples": {d: train_examples or len(datasets_for(d, seeds[0], None)[0]) for d in datasets},
            "score_examples": examples,
            "draws": draws,
            "sample_fraction": SAMPLE_FRACTION,
            "epsilon": EPSILON,
            "schedule": "pruner defaults: warmup_epochs=1 (infobatch 0), anneal_fraction=0.125",
        },
        "runs": runs,
        "grid": grid,
        "score_quality": quality,
        "variance": variance,
    }
    payload["targets"] = targets(grid)
    payload["total_seconds"] = time.perf_counter() - started
    text = markdown(payload)
    write_results(NAME, payload, text, args.out_dir)
    out_dir = Path(args.out_dir) if args.out_dir is not None else Path(__file__).resolve().parent / "results"
    plot(grid, out_dir / f"{NAME}.png")
    print(text)
    return payload


if __name__ == "__main__":
    main()

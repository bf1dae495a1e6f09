"""Why is SADP not better than random data pruning at equal cost? One experiment per hypothesis.

On ``mnist5k-scnn`` (3 epochs; ``bench/workloads.py``) at 30% and 50% of the full-data cost, with the
equal-cost grid's schedule (no warm-up, no annealing), seeds 100–104 (``bench/data_pruning.py``
reports seeds 0–4). Every variant is paired per seed with uniform random sampling under the same
optimizer, and the SADP variants also with SADP itself:

* **H1, stale and missing scores.** Without a warm-up, SADP's first epoch is uniform (nothing is scored
  yet), and each later epoch scores only the examples it visits: at 30%, 70% of the examples enter the
  second epoch at the mean score. ``fresh``: an oracle that rescores every example with the current
  model before each pruned epoch (a forward pass in training mode, BatchNorm statistics restored,
  not charged to the budget). It also records the rank correlation of the stored scores with the
  fresh ones.
* **H2, importance-weight variance.** ``unweighted`` trains on SADP's sample with weight 1 (biased,
  no weight noise). Every SADP run records the effective sample size of its weights per epoch,
  ``(Σw)²/(k·Σw²)``.
* **H3, the ε floor.** ``ε=0.5``: flatter sampling and smaller weights than the default ε = 0.1.
* **H4, the optimizer.** AdamW divides each parameter's step by its running gradient magnitude,
  which may cancel what a lower-variance gradient buys. Random and SADP again with SGD (Nesterov
  momentum 0.9, lr 0.05).

* **H5, is gradient noise what limits these runs?** Along a random-sampling run (seed 100, 50%
  budget), at the start of each epoch and at the end: the gradient noise scale
  ``B = tr(Σ)/‖ḡ‖²`` (McCandlish et al. 2018) from exact per-example gradients of ``NOISE_EXAMPLES``
  training examples (eval mode), for uniform draws and for draws with SADP's probabilities (and with
  the exact norms, an oracle). A step of batch b has noise-to-signal ``B/b``: where it is small, the
  step is already accurate and importance sampling has little to reduce. The test of that reading:
  random and SADP again at batch 8 (``SMALL_BATCH``; AdamW's learning rate scaled by the square
  root of the batch ratio), where ``B/b`` is near 1 and the noise SADP removes should matter.

Annealing is not tested: at 3 epochs one full annealing epoch costs 33% of the full-data budget, more
than the 30% budget. Every run records the test accuracy and the loss over the whole training set at
the end (does SADP optimize faster?).

Run: ``python bench/sadp_diagnostics.py [--quick] [--runs FILE]``. Writes
``bench/results/sadp_diagnostics.{json,md}``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from spikeprune.data import IndexedDataset
from spikeprune.datapruning import SADP, EpochPlan, spike_aware_score
from spikeprune.datapruning.sampling import floor_probabilities
from spikeprune.train import Trainer

try:
    from data_pruning import (
        EPSILON,
        GRAD_CHUNK,
        SCHEDULE,
        gram,
        loop_copy,
        per_example_gradients,
        sadp_scores,
        spearman,
    )
    from harness import RunStore, arguments, environment, threads_text, write_results
    from stats import compare, mean_interval
    from workloads import WORKLOADS, Workload, datasets
except ImportError:  # imported as bench.sadp_diagnostics
    from bench.data_pruning import (
        EPSILON,
        GRAD_CHUNK,
        SCHEDULE,
        gram,
        loop_copy,
        per_example_gradients,
        sadp_scores,
        spearman,
    )
    from bench.harness import RunStore, arguments, environment, threads_text, write_results
    from bench.stats import compare, mean_interval
    from bench.workloads import WORKLOADS, Workload, datasets

NAME = "sadp_diagnostics"
WORKLOAD = "mnist5k-scnn"
BUDGETS = (0.3, 0.5)
SEEDS = (100, 101, 102, 103, 104)
SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
# H5's test: a batch below the gradient noise scale, AdamW's learning rate scaled by sqrt(8/64) (set before any run)
SMALL_BATCH = {"batch_size": 8, "lr": 2e-3 * (8 / 64) ** 0.5}


class Variant(NamedTuple):
    pruner: str
    options: dict[str, Any]  # DiagnosedSADP's: fresh, unweighted, epsilon
    optimizer: dict[str, Any]  # TrainConfig overrides (optimizer and batch)
    paired_with: str  # SADP variants: random under the same overrides; other random variants: the default random


VARIANTS: dict[str, Variant] = {
    "random": Variant("random", {}, {}, "random"),
    "sadp": Variant("sadp", {}, {}, "random"),
    "sadp fresh": Variant("sadp", {"fresh": True}, {}, "random"),
    "sadp unweighted": Variant("sadp", {"unweighted": True}, {}, "random"),
    "sadp ε=0.5": Variant("sadp", {"epsilon": 0.5}, {}, "random"),
    "random sgd": Variant("random", {}, SGD, "random"),
    "sadp sgd": Variant("sadp", {}, SGD, "random sgd"),
    "random b8": Variant("random", {}, SMALL_BATCH, "random"),
    "sadp b8": Variant("sadp", {}, SMALL_BATCH, "random b8"),
}
HYPOTHESES = {
    "sadp fresh": "H1 stale and missing scores",
    "sadp unweighted": "H2 importance-weight variance",
    "sadp ε=0.5": "H3 the ε floor",
    "sadp sgd": "H4 the optimizer (vs random with SGD)",
    "sadp b8": "H5 a batch below the noise scale (vs random at batch 8)",
}
NOISE_SEED, NOISE_BUDGET, NOISE_EXAMPLES = 100, 0.5, 512
QUICK = dict(seeds=(100, 101), budgets=(0.5,), epochs=2, train_examples=128, test_examples=64, noise_examples=32)


class DiagnosedSADP(SADP):
    """SADP that records its weights' effective sample size, and optionally rescores every example
    before each pruned epoch (``fresh``, an uncharged oracle) or drops the weights (``unweighted``)."""

    def __init__(
        self, *args: Any, train_set: IndexedDataset, batch_size: int, fresh: bool, unweighted: bool, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.train_set, self.batch_size = train_set, batch_size
        self.fresh, self.unweighted = fresh, unweighted
        self.model: nn.Module | None = None
        self.ess: list[float] = []
        self.stale_rank_correlation: list[float] = []

    def attach(self, model: nn.Module) -> None:
        super().attach(model)
        self.model = model

    def rescore(self) -> None:
        """Score every example with the current model, as the training forward would (training mode),
        leaving the weights, BatchNorm statistics and the training RNG as they were."""
        model, n = self.model, len(self.train_set)
        self._ensure(n)
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        fresh = torch.empty(n, dtype=torch.float64)
        loader = torch.utils.data.DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False)
        with torch.random.fork_rng(), torch.enable_grad():
            for x, y, idx in loader:
                logits = model(x).detach().float()
                fresh[idx] = spike_aware_score(logits, y, self.probe.collect()).double()
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        if bool(self.seen.any()):
            self.stale_rank_correlation.append(spearman(self.scores[self.seen], fresh[self.seen]))
        self.scores, self.seen = fresh, torch.ones(n, dtype=torch.bool)

    def plan(self, epoch: int, num_examples: int) -> EpochPlan:
        if self.fresh and not self.schedule.is_full(epoch):
            scoring = self.probe.seconds
            self.rescore()
            self.probe.seconds = scoring  # the oracle's pass is not charged
        plan = super().plan(epoch, num_examples)
        if plan.weights is not None:
            w = plan.weights.double()
            self.ess.append(float(w.sum().square() / (len(w) * w.square().sum())))
            if self.unweighted:
                plan = EpochPlan(plan.indices)
        return plan


def run_variant(
    workload: Workload, seed: int, variant: str, fraction: float, train: IndexedDataset, test: IndexedDataset
) -> dict[str, Any]:
    """One run of ``variant`` at ``fraction`` of the full-data cost; returns its record."""
    method, options, optimizer, _ = VARIANTS[variant]
    config = workload.config(
        seed, data_pruning=method, prune_ratio=1.0 - fraction, data_pruning_options=dict(SCHEDULE), **optimizer
    )
    pruner = None
    if method == "sadp":
        pruner = DiagnosedSADP(
            1.0 - fraction,
            workload.epochs,
            train_set=train,
            batch_size=workload.batch_size,
            fresh=options.get("fresh", False),
            unweighted=options.get("unweighted", False),
            epsilon=options.get("epsilon", 0.1),
            seed=seed,
            **SCHEDULE,
        )
    trainer = Trainer(config, None, train_set=train, test_set=test, data_pruner=pruner)
    summary = trainer.fit()
    record: dict[str, Any] = {
        "test_accuracy": summary["test_accuracy"],
        "train_loss": trainer.evaluate(train)["test_loss"],
        "cost": summary["examples_visited"] / (workload.epochs * len(train)),
    }
    if pruner is not None:
        record["ess"] = pruner.ess
        record["stale_rank_correlation"] = pruner.stale_rank_correlation
    return record


def run_all(store: RunStore, workload: Workload, seeds, budgets, train_examples=None, test_examples=None) -> None:
    """Every run, interleaved (seed → budget → variants in a rotating order); runs in ``store`` are skipped."""
    names = list(VARIANTS)
    started = time.perf_counter()
    for seed in seeds:
        train, test = datasets(workload, seed, train_examples, test_examples)
        for b_index, fraction in enumerate(budgets):
            shift = (seed + b_index) % len(names)
            for variant in names[shift:] + names[:shift]:
                if store.get(variant=variant, budget=fraction, seed=seed) is not None:
                    continue
                row = store.add(
                    {"variant": variant, "budget": fraction, "seed": seed}
                    | run_variant(workload, seed, variant, fraction, train, test)
                )
                print(
                    f"[{time.perf_counter() - started:6.0f}s] seed {seed} b={fraction} {variant}: "
                    f"acc {row['test_accuracy']:.4f}, train loss {row['train_loss']:.4f}",
                    flush=True,
                )


def noise_scales(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """Gradient noise scale ``tr(Σ)/‖ḡ‖²`` of one draw, uniform and importance-sampled (eval mode)."""
    flat, _ = per_example_gradients(loop_copy(model), x, y, [], GRAD_CHUNK)
    kernel = gram(flat)
    del flat
    n = kernel.shape[0]
    squared = kernel.diagonal().clamp(min=0)  # ‖g_i‖²
    mean_squared = float(kernel.sum()) / n**2  # ‖ḡ‖²
    sadp, _, _ = sadp_scores(model.eval(), x, y, chunk=128)
    out = {"mean_gradient_norm": mean_squared**0.5}
    for name, score in (("uniform", torch.ones(n)), ("sadp", sadp), ("oracle", squared.sqrt())):
        q = floor_probabilities(score, EPSILON)  # one draw's probabilities, as SADP samples
        second_moment = float((squared / (n**2 * q)).sum())
        out[name] = (second_moment - mean_squared) / max(mean_squared, 1e-30)
    return out


def noise_study(workload: Workload, examples: int, train_examples=None, test_examples=None) -> list[dict[str, Any]]:
    """Noise scales at the start of each epoch of a random-sampling run, and at its end."""
    train, test = datasets(workload, NOISE_SEED, train_examples, test_examples)
    config = workload.config(
        NOISE_SEED, data_pruning="random", prune_ratio=1.0 - NOISE_BUDGET, data_pruning_options=dict(SCHEDULE)
    )
    trainer = Trainer(config, None, train_set=train, test_set=test)
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(NOISE_SEED))[:examples]
    x, y = train.data[chosen], train.targets[chosen]
    out = []
    for epoch in range(workload.epochs + 1):
        if epoch:
            trainer.train_epoch()
            trainer.epoch += 1
        out.append({"epoch": epoch, **noise_scales(trainer.model, x, y)})
        print(f"noise scale at epoch {epoch}: {out[-1]}", flush=True)
    return out


def _paired_random(row: dict[str, Any]) -> tuple[str]:
    return (VARIANTS[row["variant"]].paired_with,)


def _sadp(row: dict[str, Any]) -> tuple[str] | None:
    """SADP itself, for the hypotheses' variants that keep its optimizer and batch."""
    variant = row["variant"]
    return ("sadp",) if variant in HYPOTHESES and not VARIANTS[variant].optimizer else None


REFERENCES = {"paired random": _paired_random, "sadp": _sadp}


def aggregate(rows: list[dict[str, Any]], budgets) -> list[dict[str, Any]]:
    """Per budget and variant: means, and paired verdicts against its random reference and against SADP."""
    table = []
    for fraction in budgets:
        mine = [r for r in rows if r["budget"] == fraction]
        verdicts: dict[tuple[str, str], dict[str, Any]] = {}
        for value, higher in (("test_accuracy", True), ("train_loss", False)):
            for reference, ref in REFERENCES.items():
                for v in compare(mine, lambda r: (r["variant"],), ref, value=value, higher_is_better=higher):
                    verdicts[(v["cell"][0], f"{value} vs {reference}")] = {
                        "difference": v["difference"],
                        "verdict": v["verdict"],
                    }
        for variant in VARIANTS:
            group = [r for r in mine if r["variant"] == variant]
            if len(group) < 2:
                continue
            entry: dict[str, Any] = {
                "budget": fraction,
                "variant": variant,
                "seeds": sorted(r["seed"] for r in group),
                "test_accuracy": mean_interval([r["test_accuracy"] for r in group]).as_dict(),
                "train_loss": mean_interval([r["train_loss"] for r in group]).as_dict(),
                "versus": {k[1]: v for k, v in verdicts.items() if k[0] == variant},
            }
            ess = [e for r in group for e in r.get("ess", [])]
            stale = [c for r in group for c in r.get("stale_rank_correlation", [])]
            if ess:
                entry["ess_mean"] = statistics.fmean(ess)
            if stale:
                entry["stale_rank_correlation_mean"] = statistics.fmean(stale)
            table.append(entry)
    return table


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Why is SADP not better than random at equal cost? (bench/sadp_diagnostics.py)",
        "",
        f"`{payload['workload']}`, {payload['epochs']} epochs, the equal-cost grid's schedule (no warm-up, no "
        f"annealing), seeds {', '.join(map(str, payload['seeds']))} (not those the benchmark reports). "
        "Mean ± 95% interval; differences are paired per seed with a verdict (bench/stats.py). "
        "`train loss` is the loss over the whole training set after training. ESS: the weights' effective "
        "sample size over k. Stale ρ: rank correlation of the stored scores with fresh ones before each "
        "pruned epoch (the fresh oracle only).",
        "",
        f"Run time of the last invocation: {payload['seconds'] / 60:.1f} min (runs already in the runs file are "
        f"not repeated; {threads_text(payload['environment']['threads'])}, other benchmarks sharing the machine; "
        "accuracy only, no timing).",
        "",
        "| budget | variant | hypothesis | accuracy (%) | vs its random (points) | vs SADP (points) | train loss "
        "| train loss vs its random | ESS | stale ρ |",
        "|---:|---|---|---:|---|---|---:|---|---:|---:|",
    ]

    def versus(entry: dict[str, Any], key: str, scale: float, digits: int) -> str:
        v = entry["versus"].get(key)
        if v is None:
            return ""
        d = v["difference"]
        return f"{d['mean'] * scale:+.{digits}f} ± {d['half_width'] * scale:.{digits}f} {v['verdict']}"

    for e in payload["table"]:
        acc, loss = e["test_accuracy"], e["train_loss"]
        lines.append(
            f"| {e['budget']:.0%} | {e['variant']} | {HYPOTHESES.get(e['variant'], '')} | "
            f"{acc['mean'] * 100:.2f} ± {acc['half_width'] * 100:.2f} | "
            f"{versus(e, 'test_accuracy vs paired random', 100, 2)} | {versus(e, 'test_accuracy vs sadp', 100, 2)} | "
            f"{loss['mean']:.4f} | {versus(e, 'train_loss vs paired random', 1, 4)} | "
            f"{e.get('ess_mean', float('nan')):.2f} | {e.get('stale_rank_correlation_mean', float('nan')):.2f} |"
        )
    lines += [
        "",
        f"## Gradient noise scale (H5): random sampling, seed {NOISE_SEED}, {NOISE_BUDGET:.0%} budget",
        "",
        f"`B = tr(Σ)/‖ḡ‖²` over {payload['noise_examples']} training examples (exact per-example gradients, "
        f"eval mode); a step of batch {payload['batch_size']} has noise-to-signal `B/{payload['batch_size']}`. "
        "Uniform draws, draws with SADP's probabilities (ε = 0.1), and with the exact norms (oracle).",
        "",
        "| at the start of epoch | ‖ḡ‖ | B uniform | B SADP | B oracle | SADP/uniform |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in payload["noise_scale"]:
        lines.append(
            f"| {r['epoch']} | {r['mean_gradient_norm']:.4f} | {r['uniform']:.1f} | {r['sadp']:.1f} | "
            f"{r['oracle']:.1f} | {r['sadp'] / r['uniform']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = arguments(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--runs", type=Path, default=None, help="JSON-lines file of finished runs (resume, append)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    q = QUICK if args.quick else {}
    workload = WORKLOADS[WORKLOAD]
    if args.quick:
        workload = replace(workload, epochs=QUICK["epochs"])
    seeds, budgets = q.get("seeds", tuple(args.seeds)), q.get("budgets", BUDGETS)
    store = RunStore(args.runs, ("variant", "budget", "seed"))  # also keeps the noise study
    run_all(store, workload, seeds, budgets, q.get("train_examples"), q.get("test_examples"))
    rows = [r for r in store.rows if r["variant"] in VARIANTS]
    key = {"variant": "noise scale", "budget": NOISE_BUDGET, "seed": NOISE_SEED}
    if store.get(**key) is None:
        examples, train_examples = q.get("noise_examples", NOISE_EXAMPLES), q.get("train_examples")
        store.add(key | {"noise_scale": noise_study(workload, examples, train_examples, q.get("test_examples"))})
    noise = store.get(**key)["noise_scale"]
    payload = {
        "question": "Why is SADP not better than random data pruning at equal cost?",
        "quick": args.quick,
        "workload": workload.name,
        "epochs": workload.epochs,
        "seeds": list(seeds),
        "budgets": list(budgets),
        "variants": {k: v._asdict() for k, v in VARIANTS.items()},
        "table": aggregate(rows, budgets),
        "batch_size": workload.batch_size,
        "noise_examples": q.get("noise_examples", NOISE_EXAMPLES),
        "noise_scale": noise,
        "runs": rows,
        "environment": environment(),
        "seconds": time.perf_counter() - started,
    }
    write_results(NAME, payload, markdown(payload), args.out_dir)
    return payload


if __name__ == "__main__":
    main()

"""The workloads every method benchmark runs on, and whether each can tell methods apart (its headroom).

On ``mnist5k``/``scnn`` and the standard ``mnist1d`` every method ties with its baselines, partly
because nothing is hard there. The workloads below are CPU proxies of the papers' setups:

* ``mnist5k-convnet6``: the 6Conv2FC CIFAR network of the SNN-pruning literature at width 1/16, on
  real MNIST digits (the CIFAR proxy; SLAMP and N:M);
* ``nmnist5k-vggsnn``: TET's CIFAR10-DVS VGGSNN at width 1/8 on emulated N-MNIST events at T=8 (the
  CIFAR10-DVS proxy; all three methods);
* ``mnist1d40k-scnn1d``: 40,000 generated MNIST-1D signals, the data-pruning workload with redundancy;
* ``mnist5k-scnn``: the small default, kept as the data-pruning benchmark's continuity point.

**Headroom.** A workload can separate methods only if the plainest baseline at the hardest setting
loses at least ``HEADROOM_POINTS`` against dense: random data pruning at r = 0.7 (a fresh uniform 30%
per epoch, no warm-up or annealing: exactly 30% of the full-data cost), global magnitude pruning at
98% sparsity, and 1:8 N:M by magnitude, each pruned model retrained with the workload's retraining
budget (``retrain_fraction`` of an epoch, random examples, masks fixed, BatchNorm recalibrated on the
first 8 training batches). Every figure is over the reported seeds 0–4 with the dense run's paired
difference (``bench/stats.py``). Epochs and retraining budgets were chosen on seeds 100 and 101,
which no benchmark reports.

Dense models are kept in ``bench/.cache/dense`` (ignored by git) keyed by workload, seed and
everything that determines them, so the method benchmarks start from the same dense runs without
training them again; ``--no-cache`` trains afresh.

Run: ``python bench/workloads.py [--quick] [--workloads ...] [--seeds ...] [--runs FILE]``. Writes
``bench/results/workloads.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spikeprune.data import IndexedDataset, build_dataset
from spikeprune.data.registry import clear_cache
from spikeprune.sparsity import prune_model
from spikeprune.sparsity.masks import FixedMasks, finalize
from spikeprune.train import Trainer, make_config
from spikeprune.train.checkpoint import load_tensor_groups, save_tensor_groups
from spikeprune.train.config import TrainConfig
from spikeprune.train.trainer import data_options

try:
    from harness import RunStore, environment, threads_text, write_results
    from stats import mean_interval, paired_difference
except ImportError:  # imported as bench.workloads
    from bench.harness import RunStore, environment, threads_text, write_results
    from bench.stats import mean_interval, paired_difference

NAME = "workloads"
CACHE = Path(__file__).resolve().parent / ".cache" / "dense"

# Reduced widths at which one epoch of nmnist5k (4,000 examples, T=8, batch 64) takes at most about
# 60 s on 2 CPU cores (bench/models.py measures them). Width 1 is the papers' size, for a GPU.
CPU_WIDTHS = {
    "convnet6": 1 / 16,
    "vggsnn": 1 / 8,
    "vgg11": 1 / 4,
    "vgg16": 3 / 16,
    "resnet18": 1 / 8,
    "resnet19": 1 / 16,
}
HEADROOM_POINTS = 2.0
SEEDS = (0, 1, 2, 3, 4)
CALIBRATION_BATCHES = 8


@dataclass(frozen=True)
class Workload:
    """One dataset + model + training recipe, and the benchmarks that use it."""

    name: str
    dataset: str
    model: str
    timesteps: int
    epochs: int
    benchmarks: tuple[str, ...]
    why: str
    width: float | None = None
    data_options: Mapping[str, Any] = field(default_factory=dict)
    retrain_fraction: float = 0.25  # retraining after pruning visits this many epochs' worth of examples
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 64

    def values(self, seed: int, **overrides: Any) -> dict[str, Any]:
        """TrainConfig values of the dense run for ``seed`` (``overrides`` replace or add keys)."""
        values: dict[str, Any] = dict(
            dataset=self.dataset,
            model=self.model,
            timesteps=self.timesteps,
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            optimizer="adamw",
            seed=seed,
            progress=False,
            data_options=dict(self.data_options),
            model_options={"width": self.width} if self.width is not None else {},
        )
        values.update(overrides)
        values.setdefault("eval_every", max(1, values["epochs"]))  # test once, after the last epoch
        return values

    def config(self, seed: int, **overrides: Any) -> TrainConfig:
        return make_config(self.values(seed, **overrides), f"workload {self.name}")


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "mnist5k-convnet6",
            "mnist5k",
            "convnet6",
            timesteps=4,
            epochs=4,
            width=CPU_WIDTHS["convnet6"],
            benchmarks=("unstructured", "nm"),
            why="the CIFAR proxy: the pruning literature's 6Conv2FC network (8 prunable layers) on real digits",
        ),
        Workload(
            "nmnist5k-vggsnn",
            "nmnist5k",
            "vggsnn",
            timesteps=8,
            epochs=4,
            width=CPU_WIDTHS["vggsnn"],
            data_options={"timesteps": 8},
            benchmarks=("data_pruning", "unstructured", "nm"),
            why="the CIFAR10-DVS proxy: VGGSNN (9 prunable layers) on event frames at T=8",
        ),
        Workload(
            "mnist1d40k-scnn1d",
            "mnist1d",
            "scnn1d",
            timesteps=4,
            epochs=2,
            data_options={"train_size": 40000, "test_size": 10000},
            benchmarks=("data_pruning",),
            why="data pruning at scale: 40,000 generated signals, a budget of 2 passes",
        ),
        Workload(
            "mnist5k-scnn",
            "mnist5k",
            "scnn",
            timesteps=4,
            epochs=3,
            benchmarks=("data_pruning",),
            why="the small default, for continuity with the earlier data-pruning results",
        ),
    )
}

# The plainest baseline at the hardest setting, per benchmark.
HEADROOM = {
    "data_pruning": "random data pruning r=0.7 (30% of the full-data cost)",
    "unstructured": "global magnitude, 98% sparse",
    "nm": "1:8 N:M by magnitude",
}

# --quick: the same code paths, tiny.
QUICK = dict(
    workloads=("mnist5k-convnet6",),
    seeds=(0, 1),
    epochs=2,
    train_examples=512,
    test_examples=256,
    benchmarks=("data_pruning", "unstructured", "nm"),
)


# --------------------------------------------------------------------------------------------- data
def subset(dataset: IndexedDataset, count: int | None) -> IndexedDataset:
    """The first ``count`` examples (all when None), with the same augmentation and seed."""
    if count is None or count >= len(dataset):
        return dataset
    return IndexedDataset(
        dataset.data[:count], dataset.targets[:count], dataset.info, augment=dataset.augment, seed=dataset.seed
    )


def datasets(
    workload: Workload, seed: int, train_examples: int | None = None, test_examples: int | None = None
) -> tuple[IndexedDataset, IndexedDataset]:
    config = workload.config(seed)
    train, test = build_dataset(config.dataset, seed=seed, augment=config.augment, options=data_options(config))
    return subset(train, train_examples), subset(test, test_examples)


def calibration_batches(train: IndexedDataset, batch_size: int, count: int = CALIBRATION_BATCHES) -> list[torch.Tensor]:
    """The first ``count`` training batches in file order (what BN recalibration and SLAMP see)."""
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=False)
    return [x for x, _, _ in itertools.islice(loader, count)]


# --------------------------------------------------------------------------------------------- runs
def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) + torch.__version__
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_dense(
    workload: Workload,
    seed: int,
    train: IndexedDataset,
    test: IndexedDataset,
    *,
    epochs: int | None = None,
    cache: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """The dense model of ``workload`` for ``seed`` and its record, trained or read from the cache."""
    config = workload.config(seed, **({"epochs": epochs} if epochs is not None else {}))
    settings = {k: v for k, v in config.model_dump().items() if k != "eval_every"}  # testing changes no weight
    key = _digest({"config": settings, "train": len(train), "test": len(test)})
    path = CACHE / f"{workload.name}-s{seed}-{key}.safetensors"
    record_path = path.with_suffix(".json")
    trainer = Trainer(config, None, train_set=train, test_set=test)
    if cache and path.is_file() and record_path.is_file():
        trainer.model.load_state_dict(load_tensor_groups(path)["model"])
        return trainer.model, json.loads(record_path.read_text())
    summary = trainer.fit()
    record = {
        "test_accuracy": summary["test_accuracy"],
        "train_seconds": summary["train_seconds"],
        "epoch_seconds": summary["seconds_per_epoch"],
        "examples_visited": summary["examples_visited"],
    }
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensor_groups(path, {"model": trainer.model.state_dict()})
        record_path.write_text(json.dumps(record))
    return trainer.model, record


def seed0_dense_models(
    names: tuple[str, ...], quick: Mapping[str, Any] | None = None
) -> Iterator[tuple[str, Workload, IndexedDataset, IndexedDataset, nn.Module]]:
    """The seed-0 dense model of each workload (cached), with its data: what the deployment benchmarks
    prune. ``quick`` (keys ``workloads``, ``epochs``, ``train_examples``, ``test_examples``) shrinks it
    to a smoke run, trained afresh."""
    quick = quick or {}
    for name in quick.get("workloads", names):
        workload = WORKLOADS[name]
        if quick:
            workload = replace(workload, epochs=quick["epochs"])
        train, test = datasets(workload, 0, quick.get("train_examples"), quick.get("test_examples"))
        dense, _ = train_dense(workload, 0, train, test, cache=not quick)
        yield name, workload, train, test, dense


def retrain(
    workload: Workload,
    seed: int,
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    train: IndexedDataset,
    fraction: float | None = None,
) -> dict[str, Any]:
    """Retrain a pruned model with its masks fixed for ``fraction`` of an epoch (random examples); no test.

    One epoch of the random data pruner at ratio ``1 − fraction`` without warm-up or annealing: a
    fresh uniform subset, the dense run's optimizer and learning rate, cosine-decayed over the steps.
    The masks stay attached (call ``finalize`` to fold them).
    """
    fraction = workload.retrain_fraction if fraction is None else fraction
    extra: dict[str, Any] = {"epochs": 1}
    if fraction < 1:
        extra.update(
            data_pruning="random",
            prune_ratio=1 - fraction,
            data_pruning_options={"warmup_epochs": 0, "anneal_fraction": 0.0},
        )
    config = workload.config(seed, **extra)
    trainer = Trainer(config, None, model=model, sparsifier=FixedMasks(masks), train_set=train, test_set=train)
    record = trainer.train_epoch()
    return {"train_seconds": record["train_seconds"], "examples_visited": record["examples_visited"]}


def retrain_pruned(
    workload: Workload,
    seed: int,
    model: nn.Module,
    masks: dict[str, torch.Tensor],
    train: IndexedDataset,
    test: IndexedDataset,
) -> dict[str, Any]:
    """:func:`retrain`, fold the masks, and test."""
    record = retrain(workload, seed, model, masks, train)
    finalize(model)
    return {**record, "test_accuracy": evaluate(workload, seed, model, test)}


def evaluate(workload: Workload, seed: int, model: nn.Module, test: IndexedDataset) -> float:
    trainer = Trainer(workload.config(seed, epochs=1), None, model=model, train_set=test, test_set=test)
    return trainer.evaluate()["test_accuracy"]


def headroom_run(
    workload: Workload,
    benchmark: str,
    seed: int,
    dense: nn.Module,
    train: IndexedDataset,
    test: IndexedDataset,
    epochs: int | None = None,
) -> dict[str, Any]:
    """The plainest baseline of ``benchmark`` at its hardest setting, for one seed."""
    if benchmark == "data_pruning":
        config = workload.config(
            seed,
            **({"epochs": epochs} if epochs is not None else {}),
            data_pruning="random",
            prune_ratio=0.7,
            data_pruning_options={"warmup_epochs": 0, "anneal_fraction": 0.0},
        )
        summary = Trainer(config, None, train_set=train, test_set=test).fit()
        return {
            "test_accuracy": summary["test_accuracy"],
            "train_seconds": summary["train_seconds"],
            "examples_visited": summary["examples_visited"],
        }
    model = copy.deepcopy(dense)
    batches = calibration_batches(train, workload.batch_size)
    if benchmark == "unstructured":
        masks, _ = prune_model(model, "global", 0.98, batches=batches)
    else:
        masks, _ = prune_model(model, "nm-magnitude", nm="1:8", batches=batches)
    density = float(sum(m.sum() for m in masks.values()) / sum(m.numel() for m in masks.values()))
    after_prune = evaluate(workload, seed, model, test)
    record = retrain_pruned(workload, seed, model, masks, train, test)
    return {**record, "accuracy_after_prune": after_prune, "density": density}


def run_all(
    workloads: list[Workload],
    seeds: tuple[int, ...],
    runs: Path | None,
    *,
    benchmarks: tuple[str, ...] | None = None,
    epochs: int | None = None,
    train_examples: int | None = None,
    test_examples: int | None = None,
    cache: bool = True,
) -> list[dict[str, Any]]:
    """Dense and headroom runs, seed → workload → (dense, then each benchmark's baseline); resumable."""
    store = RunStore(runs, ("workload", "kind", "seed"))
    started = time.perf_counter()
    for seed in seeds:
        for workload in workloads:
            train, test = datasets(workload, seed, train_examples, test_examples)
            kinds = [b for b in workload.benchmarks if benchmarks is None or b in benchmarks]
            if all(store.get(workload=workload.name, kind=k, seed=seed) for k in ["dense", *kinds]):
                continue
            dense, record = train_dense(workload, seed, train, test, epochs=epochs, cache=cache)
            if store.get(workload=workload.name, kind="dense", seed=seed) is None:
                store.add({"workload": workload.name, "kind": "dense", "seed": seed, **record})
            for kind in kinds:
                if store.get(workload=workload.name, kind=kind, seed=seed) is not None:
                    continue
                row = store.add(
                    {
                        "workload": workload.name,
                        "kind": kind,
                        "seed": seed,
                        **headroom_run(workload, kind, seed, dense, train, test, epochs),
                    }
                )
                print(
                    f"[{time.perf_counter() - started:6.0f}s] {workload.name} seed {seed}: dense "
                    f"{record['test_accuracy']:.4f}, {kind} {row['test_accuracy']:.4f}",
                    flush=True,
                )
    return store.rows


def data_at_scale(train_size: int, test_size: int, event_steps: tuple[int, ...]) -> dict[str, Any]:
    """Seconds to generate MNIST-1D at this size (cache empty), the cache file's size, the cached reload,
    and seconds to emulate nmnist5k at each T in ``event_steps`` (no disk cache)."""
    options = {"train_size": train_size, "test_size": test_size}
    out: dict[str, Any] = {"mnist1d": {**options}}
    with tempfile.TemporaryDirectory() as folder:
        options["cache_dir"] = folder
        clear_cache()
        started = time.perf_counter()
        build_dataset("mnist1d", options=options)
        out["mnist1d"]["generate_seconds"] = time.perf_counter() - started
        out["mnist1d"]["cache_bytes"] = sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))
        clear_cache()
        started = time.perf_counter()
        build_dataset("mnist1d", options=options)
        out["mnist1d"]["cached_seconds"] = time.perf_counter() - started
    out["nmnist5k_seconds"] = {}
    for steps in event_steps:
        clear_cache()
        started = time.perf_counter()
        build_dataset("nmnist5k", options={"timesteps": steps})
        out["nmnist5k_seconds"][str(steps)] = time.perf_counter() - started
    clear_cache()
    return out


# --------------------------------------------------------------------------------------------- report
def summarize(rows: list[dict[str, Any]], workloads: list[Workload]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workload in workloads:
        dense = {r["seed"]: r for r in rows if r["workload"] == workload.name and r["kind"] == "dense"}
        if len(dense) < 2:
            continue
        entry: dict[str, Any] = {
            "seeds": sorted(dense),
            "dense_accuracy": mean_interval([r["test_accuracy"] for r in dense.values()]).as_dict(),
            "epoch_seconds_median": statistics.median(s for r in dense.values() for s in r["epoch_seconds"]),
            "headroom": {},
        }
        for kind in workload.benchmarks:
            base = {r["seed"]: r for r in rows if r["workload"] == workload.name and r["kind"] == kind}
            seeds = sorted(set(base) & set(dense))
            if len(seeds) < 2:
                continue
            diff = paired_difference(
                {s: base[s]["test_accuracy"] for s in seeds}, {s: dense[s]["test_accuracy"] for s in seeds}
            )
            entry["headroom"][kind] = {
                "baseline": HEADROOM[kind],
                "seeds": seeds,
                "accuracy": mean_interval([base[s]["test_accuracy"] for s in seeds]).as_dict(),
                "difference": diff.as_dict(),
                "verdict": diff.verdict(),
                "separates": -diff.mean * 100 >= HEADROOM_POINTS,
                **(
                    {"accuracy_after_prune": mean_interval([base[s]["accuracy_after_prune"] for s in seeds]).as_dict()}
                    if "accuracy_after_prune" in base[seeds[0]]
                    else {}
                ),
            }
        out[workload.name] = entry
    return out


def markdown(summary: dict[str, Any], workloads: list[Workload], payload: dict[str, Any]) -> str:
    lines = [
        "# Workloads: dense accuracy and headroom",
        "",
        "Generated by `bench/workloads.py`. Accuracy is test accuracy in percent, mean ± 95% interval (Student t)",
        f"over seeds {', '.join(map(str, payload['seeds']))}; differences are paired per seed against the dense run.",
        f"A workload separates methods when the plainest baseline loses at least {HEADROOM_POINTS:.0f} points.",
        f"Measured run time: {payload['seconds'] / 60:.1f} min on {threads_text(payload['environment']['threads'])} "
        f"({payload['environment']['processor']}, torch {payload['environment']['torch']}).",
        "",
        "| workload | dataset | model | T | epochs | retraining | dense accuracy | epoch (s)¹ | why |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for w in workloads:
        s = summary.get(w.name)
        if s is None:
            continue
        dense = s["dense_accuracy"]
        model = w.model + (f" (width {w.width:g})" if w.width else "")
        options = ", ".join(f"{k}={v}" for k, v in w.data_options.items() if k != "timesteps")
        lines.append(
            f"| {w.name} | {w.dataset}{f' ({options})' if options else ''} | {model} | {w.timesteps} | {w.epochs} | "
            f"{w.retrain_fraction:g} epoch | {dense['mean'] * 100:.2f} ± {dense['half_width'] * 100:.2f} | "
            f"{s['epoch_seconds_median']:.1f} | {w.why} |"
        )
    lines += [
        "",
        "¹ The median training epoch of the dense runs above, on a machine shared with other work: not a "
        "timing (bench/models.md times the models on an idle machine).",
        "",
        "## Headroom: the plainest baseline at the hardest setting",
        "",
        "| workload | baseline | after pruning | baseline accuracy | Δ vs dense (points) | verdict | separates? |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for w in workloads:
        for h in summary.get(w.name, {}).get("headroom", {}).values():
            after = h.get("accuracy_after_prune")
            after_text = f"{after['mean'] * 100:.2f}" if after else "–"
            lines.append(
                f"| {w.name} | {h['baseline']} | {after_text} | "
                f"{h['accuracy']['mean'] * 100:.2f} ± {h['accuracy']['half_width'] * 100:.2f} | "
                f"{h['difference']['mean'] * 100:+.2f} ± {h['difference']['half_width'] * 100:.2f} | {h['verdict']} | "
                f"{'yes' if h['separates'] else '**no**'} |"
            )
    data = payload["data_at_scale"]
    m1d = data["mnist1d"]
    lines += [
        "",
        "## Data at scale",
        "",
        f"- mnist1d with train_size={m1d['train_size']:,}, test_size={m1d['test_size']:,}: generated in "
        f"{m1d['generate_seconds']:.1f} s, a {m1d['cache_bytes'] / 2**20:.1f} MiB cache file, read back in "
        f"{m1d['cached_seconds'] * 1000:.0f} ms.",
        *(
            f"- nmnist5k at T={steps}: emulated and binned in {seconds:.1f} s (all 5,000 digits, no disk cache)."
            for steps, seconds in data["nmnist5k_seconds"].items()
        ),
        "",
        payload.get("notes", ""),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--runs", type=Path, default=None, help="JSON-lines file of finished runs (resume, append)")
    parser.add_argument("--no-cache", action="store_true", help="train dense models afresh, keep none")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    data = data_at_scale(*((2000, 10) if args.quick else (40000, 10000)), () if args.quick else (8, 10))
    if args.quick:
        workloads = [
            Workload(**{**asdict(WORKLOADS[name]), "benchmarks": QUICK["benchmarks"], "epochs": QUICK["epochs"]})
            for name in QUICK["workloads"]
        ]
        rows = run_all(
            workloads,
            QUICK["seeds"],
            args.runs,
            benchmarks=QUICK["benchmarks"],
            epochs=QUICK["epochs"],
            train_examples=QUICK["train_examples"],
            test_examples=QUICK["test_examples"],
            cache=False,
        )
    else:
        workloads = [WORKLOADS[name] for name in args.workloads]
        rows = run_all(workloads, tuple(args.seeds), args.runs, cache=not args.no_cache)
    summary = summarize(rows, workloads)
    payload = {
        "question": "Which workloads can separate data-pruning, unstructured and N:M methods?",
        "quick": args.quick,
        "seeds": sorted({r["seed"] for r in rows}),
        "workloads": {w.name: {**asdict(w), "data_options": dict(w.data_options)} for w in workloads},
        "cpu_widths": CPU_WIDTHS,
        "headroom_points": HEADROOM_POINTS,
        "summary": summary,
        "data_at_scale": data,
        "runs": rows,
        "seconds": time.perf_counter() - started,
        "environment": environment(),
        "notes": NOTES,
    }
    path = write_results(NAME, payload, markdown(summary, workloads, payload), args.out_dir)
    print(f"wrote {path}")


NOTES = """## What was chosen, and why

- **Pairings.** convnet6 is the CIFAR network of the pruning literature, so it runs on the static-image
  proxy (mnist5k); VGGSNN is the CIFAR10-DVS network, so it runs on the event proxy (nmnist5k, T=8).
- **Widths** are the largest that keep one nmnist5k epoch at T=8 near 60 s on 2 cores (bench/models.py).
- **Epochs and retraining** were shortened until the plainest baseline lost at least 2 points (on seeds
  100 and 101): a workload that trains to saturation hides every difference between methods.
- The retraining budget after pruning is a quarter epoch of random examples with the masks fixed,
  the same for every criterion and pattern of the pruning benchmarks."""


if __name__ == "__main__":
    main()

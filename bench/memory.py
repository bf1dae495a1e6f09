"""Does training memory grow with T, and what does activation checkpointing buy back?

ResNet-19 on 32×32 inputs (width 1/8 on CPU, batch 8), one AdamW step, for T = 4, 8, 16, 32:

* ``spikeprune``: the default model;
* ``spikeprune + checkpointing``: ``model_options: {checkpoint_activations: true}``, which keeps only
  each block's input (spikes) for backward and recomputes the block;
* ``SpikingJelly neurons``: the same network with every LIF replaced by SpikingJelly's multi-step
  ``LIFNode`` (same equations; the script checks that the logits match). Convolutions and norms are
  the same PyTorch modules, so this isolates what each framework's neurons keep for backward.

Per cell: bytes kept for backward (unique storages autograd saves), the peak resident memory of a
fresh process that runs one step, above its resident memory before the step, and the step time
(median of interleaved repeats, in one process, with nothing else running).
Run: ``python bench/memory.py [--quick]`` → ``bench/results/memory.{json,md}``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spikeprune.models import build_model
from spikeprune.snn import SpikingNeuron

try:
    from harness import arguments, environment, interleaved_times, saved_tensor_bytes, summarize, write_results
except ImportError:  # imported as bench.memory
    from bench.harness import arguments, environment, interleaved_times, saved_tensor_bytes, summarize, write_results

warnings.filterwarnings("ignore", message=".*Triton not available.*")

NAME = "memory"
CONTENDERS = ("spikeprune", "spikeprune + checkpointing", "SpikingJelly neurons")
FULL = dict(timesteps=(4, 8, 16, 32), width=1 / 8, batch=8, repeats=5)
QUICK = dict(timesteps=(2,), width=1 / 32, batch=2, repeats=1)
TARGET = {"timesteps": 16, "peak_ratio": 0.5, "time_ratio": 1.3}


def spikingjelly_neurons(model: nn.Module) -> nn.Module | None:
    """``model`` with each LIF swapped for SpikingJelly's multi-step LIFNode (None without SpikingJelly)."""
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except ImportError:
        return None
    for name, module in list(model.named_modules()):
        if isinstance(module, SpikingNeuron):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            replacement = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")
            setattr(parent, name.rsplit(".", 1)[-1], replacement)
    return model


def build(contender: str, timesteps: int, width: float) -> nn.Module | None:
    torch.manual_seed(0)
    options = {"checkpoint_activations": True} if contender == "spikeprune + checkpointing" else {}
    model = build_model("resnet19", input_shape=(3, 32, 32), timesteps=timesteps, width=width, **options)
    return spikingjelly_neurons(model) if contender == "SpikingJelly neurons" else model


def reset(model: nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "reset") and type(module).__module__.startswith("spikingjelly"):
            module.reset()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def run() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        reset(model)

    return run


def data(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, 32, 32, generator=generator), torch.randint(0, 10, (batch,), generator=generator)


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def sampled_peak(step) -> int:
    """Peak resident memory during ``step()`` above the level before it, sampled every 0.5 ms by a
    thread (the process-wide ``ru_maxrss`` would also hold every earlier peak)."""
    before, peak, done = resident_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.0005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    step()
    done.set()
    watcher.join()
    return max(peak[0], resident_bytes()) - before


def peak_in_fresh_process(contender: str, timesteps: int, width: float, batch: int) -> int:
    """:func:`sampled_peak` of the first full-size step in a new process, so no other contender's
    memory is around. Two one-example steps first load the compiled kernels (and SpikingJelly's
    scripted ones) and make the optimizer state; freed memory they leave for reuse is small."""
    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import memory as m; import torch;"
        f"model = m.build({contender!r}, {timesteps}, {width!r}); x, y = m.data({batch});"
        "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3);"
        "small = m.train_step(model, optimizer, x[:1], y[:1]); small(); small();"
        " print(json.dumps(m.sampled_peak(m.train_step(model, optimizer, x, y))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1])
    return int(json.loads(result.stdout.strip().splitlines()[-1]))


def measure(timesteps: int, width: float, batch: int, repeats: int, fresh: bool = True) -> dict[str, Any]:
    """One T's cells. ``fresh=False`` (the smoke test) samples the peak in this process instead."""
    x, y = data(batch)
    models = {name: build(name, timesteps, width) for name in CONTENDERS}
    models = {name: model for name, model in models.items() if model is not None}
    reference = models["spikeprune"]  # all built from the same seed: the same weights
    with torch.no_grad():
        reference.eval()
        expected = reference(x)
        differences = {}
        for name, model in models.items():
            model.eval()
            differences[name] = float((model(x) - expected).abs().max())
            reset(model)
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}
    runs = {name: train_step(model, optimizers[name], x, y) for name, model in models.items()}
    times = interleaved_times(runs, repeats, warmup=1)
    cells = {}
    for name, model in models.items():
        model.train()
        kept = saved_tensor_bytes(lambda model=model: model(x))
        reset(model)
        cells[name] = {
            "step_seconds": summarize(times[name]),
            "saved_bytes": kept,
            "peak_rss_bytes": peak_in_fresh_process(name, timesteps, width, batch)
            if fresh
            else sampled_peak(runs[name]),
            "max_logit_difference": differences[name],
        }
    return cells


def markdown(payload: dict[str, Any]) -> str:
    env, q = payload["environment"], payload["settings"]
    lines = [
        "# Training memory against T: ResNet-19, 32×32, with and without activation checkpointing",
        "",
        f"Generated by `bench/memory.py`: width {q['width']:g}, batch {q['batch']}, one AdamW step; "
        f"{env['threads']} threads ({env['processor']}, torch {env['torch']}), nothing else running. "
        f"Step time: median of {q['repeats']} interleaved repeats in one process. Peak: resident memory of a "
        "fresh process during its first full-size step (after two one-example steps), above its level before the step. "
        "Kept: bytes autograd saves for backward.",
        "",
        "| T | contender | kept for backward (MiB) | peak during the step (MiB) | step (s) | vs spikeprune: kept | "
        "peak | time |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in payload["rows"]:
        base = payload["rows_by_t"][str(row["timesteps"])]["spikeprune"]
        lines.append(
            f"| {row['timesteps']} | {row['contender']} | {row['saved_bytes'] / 2**20:.1f} | "
            f"{row['peak_rss_bytes'] / 2**20:.1f} | {row['step_seconds']['median']:.3f} | "
            f"{row['saved_bytes'] / base['saved_bytes']:.2f}× | "
            f"{row['peak_rss_bytes'] / base['peak_rss_bytes']:.2f}× | "
            f"{row['step_seconds']['median'] / base['step_seconds']['median']:.2f}× |"
        )
    verdict = payload.get("target")
    if verdict:
        lines += [
            "",
            f"Target at T={TARGET['timesteps']}: checkpointing's peak ≤ {TARGET['peak_ratio']:g}× and its step "
            f"time ≤ {TARGET['time_ratio']:g}× the default's. Measured: peak {verdict['peak_ratio']:.2f}×, time "
            f"{verdict['time_ratio']:.2f}× ({'met' if verdict['met'] else 'missed'}).",
        ]
    lines += [
        "",
        "Max |logit difference| against spikeprune (same weights, eval mode): "
        + ", ".join(
            f"{r['contender']} at T={r['timesteps']}: {r['max_logit_difference']:.1e}" for r in payload["rows"]
        ),
        "",
        f"Measured run time: {payload['seconds'] / 60:.1f} min.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = arguments(__doc__)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    settings = QUICK if args.quick else FULL
    rows, by_t = [], {}
    for timesteps in settings["timesteps"]:
        cells = measure(timesteps, settings["width"], settings["batch"], settings["repeats"], fresh=not args.quick)
        by_t[str(timesteps)] = cells
        for name, cell in cells.items():
            rows.append({"timesteps": timesteps, "contender": name, **cell})
            kept, peak = cell["saved_bytes"] / 2**20, cell["peak_rss_bytes"] / 2**20
            print(f"T={timesteps} {name}: kept {kept:.1f} MiB, peak {peak:.1f} MiB", flush=True)
    payload: dict[str, Any] = {
        "question": "Does training memory grow with T, and what does activation checkpointing buy back?",
        "quick": args.quick,
        "settings": {k: v for k, v in settings.items() if k != "timesteps"},
        "rows": rows,
        "rows_by_t": by_t,
        "environment": environment(),
    }
    cells = by_t.get(str(TARGET["timesteps"]))
    if cells:
        plain, saved = cells["spikeprune"], cells["spikeprune + checkpointing"]
        peak = saved["peak_rss_bytes"] / plain["peak_rss_bytes"]
        slower = saved["step_seconds"]["median"] / plain["step_seconds"]["median"]
        payload["target"] = {"peak_ratio": peak, "time_ratio": slower,
                             "met": peak <= TARGET["peak_ratio"] and slower <= TARGET["time_ratio"]}  # fmt: skip
    payload["seconds"] = time.perf_counter() - started
    write_results(NAME, payload, markdown(payload), args.out_dir)
    return payload


if __name__ == "__main__":
    main()

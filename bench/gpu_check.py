"""One run that checks spikeprune on a GPU: every model trains, the neurons are timed, 2:4 runs sparse.

On a lent GPU, ``python bench/gpu_check.py`` does, in one process:

1. **Training.** Every built-in model at width 1 (the papers' size) runs a few AdamW steps on random
   data of its input shape (resnet34 at 112×112 to keep the check short), in fp32 and under bf16
   autocast. It reports the median step time, whether the losses stay finite, and the peak GPU memory.
2. **Neurons.** Our LIF forward+backward on ``[8, 32, 128, 16, 16]`` against SpikingJelly's
   multi-step ``LIFNode`` with its ``torch`` backend, and its ``cupy`` and ``triton`` backends where
   they load. Interleaved, CUDA-synchronised medians.
3. **2:4.** A 2:4 ``scnn`` end to end through ``torch.sparse.to_sparse_semi_structured`` (compute
   capability ≥ 8.0): the logits against dense, and the sparse matmul time against dense. Shapes as
   in ``bench/nm_gpu.py``.

``--dry`` runs the same code on CPU with tiny widths and shapes. The test suite uses it, so the
script is known to run before a GPU is lent. Writes ``bench/results/gpu_check.{json,md}``.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from spikeprune.models import build_model, list_models
from spikeprune.snn import LIF
from spikeprune.sparsity.masks import attach_masks, finalize, prunable_layers
from spikeprune.sparsity.nm import magnitude_nm_mask

try:
    from harness import arguments, environment, write_results
except ImportError:  # imported as bench.gpu_check
    from bench.harness import arguments, environment, write_results

warnings.filterwarnings("ignore", message=".*Triton not available.*")

NAME = "gpu_check"
INPUTS = {"scnn": (1, 28, 28), "mlp": (1, 28, 28), "scnn1d": (1, 40), "vggsnn": (10, 2, 48, 48),
          "resnet34": (3, 112, 112)}  # fmt: skip
FULL = dict(width=1.0, batch=32, steps=5, timesteps=4, neuron_shape=(8, 32, 128, 16, 16), repeats=20)
DRY = dict(width=1 / 32, batch=2, steps=2, timesteps=2, neuron_shape=(2, 2, 8, 4, 4), repeats=2)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - started


def peak_bytes(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def check_training(name: str, precision: str, device: torch.device, settings: dict[str, Any]) -> dict[str, Any]:
    shape = INPUTS.get(name, (3, 32, 32))
    options: dict[str, Any] = {"timesteps": settings["timesteps"]}
    if name == "vggsnn":
        shape = (settings["timesteps"], *shape[1:])
        options["encoder"] = "frames"
    if name not in ("scnn", "scnn1d", "mlp"):
        options["width"] = settings["width"]
    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, **options).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(settings["batch"], *shape, device=device)
    y = torch.randint(0, 10, (settings["batch"],), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, seconds = [], []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    for _ in range(settings["steps"]):
        seconds.append(timed(step, device))
    return {
        "model": name,
        "precision": precision,
        "input": list(shape),
        "step_seconds": statistics.median(seconds[1:] or seconds),  # the first step warms up
        "finite": all(torch.isfinite(torch.tensor(losses)).tolist()),
        "peak_bytes": peak_bytes(device),
    }


def neuron_contenders(device: torch.device) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """The layers to time, and why each SpikingJelly backend that did not load here was skipped."""
    runnable: dict[str, torch.nn.Module] = {"spikeprune LIF": LIF(tau=2.0).to(device)}
    skipped: dict[str, str] = {}
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except ImportError:
        return runnable, skipped
    for backend in ("torch", "cupy", "triton"):
        name = f"SpikingJelly LIFNode ({backend})"
        try:
            layer = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m", backend=backend)
            layer.to(device)(torch.zeros(2, 2, 4, device=device, requires_grad=True)).sum().backward()
            layer.reset()
        except Exception as error:  # a backend that does not load here is reported, not fatal
            skipped[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
            continue
        runnable[name] = layer
    return runnable, skipped


def check_neurons(device: torch.device, settings: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(0)
    x = (torch.randn(settings["neuron_shape"], device=device) * 1.5).requires_grad_()
    runnable, skipped = neuron_contenders(device)
    results: dict[str, Any] = {name: {"skipped": reason} for name, reason in skipped.items()}
    samples: dict[str, list[float]] = {name: [] for name in runnable}

    def run(layer) -> None:
        layer(x).sum().backward()
        x.grad = None
        if hasattr(layer, "reset"):
            layer.reset()

    for repeat in range(settings["repeats"] + 1):  # interleaved; the first round warms up
        for name, layer in runnable.items():
            seconds = timed(lambda layer=layer: run(layer), device)
            if repeat:
                samples[name].append(seconds)
    for name, values in samples.items():
        results[name] = {"median_ms": 1e3 * statistics.median(values)}
    return results


def check_two_four(device: torch.device, settings: dict[str, Any]) -> dict[str, Any]:
    if device.type != "cuda":
        return {"skipped": "needs CUDA"}
    if torch.cuda.get_device_capability(device) < (8, 0):
        return {"skipped": f"needs compute capability >= 8.0, got {torch.cuda.get_device_capability(device)}"}
    from torch.sparse import to_sparse_semi_structured

    torch.manual_seed(0)
    model = build_model("scnn", timesteps=settings["timesteps"]).to(device).eval().half()
    masks = {name: magnitude_nm_mask(module.weight, 2, 4) for name, module in prunable_layers(model)
             if isinstance(module, torch.nn.Linear) and module.weight.shape[1] % 4 == 0}  # fmt: skip
    attach_masks(model, masks)
    model = finalize(model)
    x = torch.rand(64, 1, 28, 28, device=device, dtype=torch.half)
    with torch.no_grad():
        dense = model(x)
        for name in masks:
            linear = model.get_submodule(name)
            linear.weight = torch.nn.Parameter(to_sparse_semi_structured(linear.weight.detach()), requires_grad=False)
        sparse = model(x)
    out, features, tokens = 4096, 4096, 4096
    weight = torch.randn(out, features, device=device, dtype=torch.half)
    weight = weight * magnitude_nm_mask(weight, 2, 4)
    packed = to_sparse_semi_structured(weight)
    inputs = torch.randn(tokens, features, device=device, dtype=torch.half)
    times = {"dense": [], "2:4": []}
    for repeat in range(settings["repeats"] + 1):
        for name, w in (("dense", weight), ("2:4", packed)):
            seconds = timed(lambda w=w: F.linear(inputs, w), device)
            if repeat:
                times[name].append(seconds)
    return {
        "scnn_max_logit_difference": float((sparse.float() - dense.float()).abs().max()),
        "scnn_same_predictions": bool(torch.equal(sparse.argmax(1), dense.argmax(1))),
        "matmul_4096_speedup": statistics.median(times["dense"]) / statistics.median(times["2:4"]),
    }


def markdown(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    lines = [
        "# GPU check" + (" (dry run on CPU)" if payload["dry"] else ""),
        "",
        f"Generated by `bench/gpu_check.py` on {payload['device_name']} (torch {env['torch']}).",
        "",
        "## Training steps",
        "",
        "| model | precision | input | step (ms) | losses finite | peak memory (MiB) |",
        "|---|---|---|---:|---|---:|",
    ]
    for row in payload["training"]:
        peak = "–" if row["peak_bytes"] is None else f"{row['peak_bytes'] / 2**20:.0f}"
        lines.append(
            f"| {row['model']} | {row['precision']} | {'×'.join(map(str, row['input']))} | "
            f"{1e3 * row['step_seconds']:.1f} | {'yes' if row['finite'] else 'NO'} | {peak} |"
        )
    lines += ["", f"## LIF forward+backward, {tuple(payload['settings']['neuron_shape'])}", ""]
    lines += ["| contender | median (ms) |", "|---|---:|"]
    for name, row in payload["neurons"].items():
        lines.append(f"| {name} | {row['median_ms']:.2f} |" if "median_ms" in row else f"| {name} | {row['skipped']} |")
    lines += ["", "## 2:4 through to_sparse_semi_structured", ""]
    lines += [f"- {key}: {value}" for key, value in payload["two_four"].items()]
    lines += ["", f"Measured run time: {payload['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = arguments(__doc__, "--dry", "tiny run on CPU (what the tests use)")
    args = parser.parse_args(argv)
    if not args.dry and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device; run on a GPU machine, or pass --dry for the CPU smoke run")
    device = torch.device("cpu" if args.dry else "cuda")
    settings = DRY if args.dry else FULL
    started = time.perf_counter()
    training = []
    for name in (info.name for info in list_models()):
        for precision in ("fp32", "bf16"):
            row = check_training(name, precision, device, settings)
            training.append(row)
            print(f"{name} {precision}: {1e3 * row['step_seconds']:.1f} ms, finite={row['finite']}", flush=True)
    payload = {
        "dry": args.dry,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "settings": settings,
        "training": training,
        "neurons": check_neurons(device, settings),
        "two_four": check_two_four(device, settings),
        "environment": environment(),
        "seconds": time.perf_counter() - started,
    }
    write_results(NAME, payload, markdown(payload), args.out_dir)
    return payload


if __name__ == "__main__":
    main()

"""How fast is the spikeprune substrate? LIF layer and a full training step vs SpikingJelly and snnTorch.

1. LIF forward+backward on ``[T=8, B=32, 128, 16, 16]``: spikeprune fused, spikeprune step-by-step
   autograd (``loop``), SpikingJelly ``LIFNode`` (multi-step, its default CPU implementation),
   snnTorch ``Leaky`` (its per-step Python loop). Also bytes kept for backward (peak-memory proxy
   that does not depend on the allocator).
2. One AdamW training step (forward, loss, backward, step) of the default model ``scnn`` (T=4,
   batch 64, 28×28) against the same network built from SpikingJelly layers and neurons (weights
   copied; the script checks the two give the same logits), and against snnTorch.

Run: ``python bench/neuron_speed.py`` (``--quick`` for a small smoke run). Writes
``bench/results/neuron_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spikeprune.models import build_model
from spikeprune.snn import LIF, SpikingNeuron

try:
    from harness import environment, interleaved_times, saved_tensor_bytes, summarize, threads_text, write_results
except ImportError:  # imported as bench.neuron_speed
    from bench.harness import environment, interleaved_times, saved_tensor_bytes, summarize, threads_text, write_results

warnings.filterwarnings("ignore", message=".*Triton not available.*")

FLOOR = "floor: x·2, forward + backward"
RELU_TWIN = "ReLU twin of scnn (LIF → ReLU)"
TARGETS = {"lif_vs_floor": 2.0, "step_vs_relu_twin": 1.15}


def optional_frameworks() -> tuple[object | None, object | None]:
    try:
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        sj = (functional, layer, neuron, surrogate)
    except ImportError:
        sj = None
    try:
        import snntorch
        from snntorch import surrogate as snn_surrogate

        snn = (snntorch, snn_surrogate)
    except ImportError:
        snn = None
    return sj, snn


# --------------------------------------------------------------------------------------------- part 1
def neuron_contenders(shape: tuple[int, ...], sj, snn) -> dict[str, tuple]:
    """name -> (forward function returning spikes, cleanup)."""
    torch.manual_seed(0)
    x = torch.randn(shape) * 1.5
    grad = torch.ones(shape)
    contenders = {}
    backends = [
        ("spikeprune (fused)", "fused"),
        ("spikeprune (fused-torch)", "fused-torch"),
        ("spikeprune (loop)", "loop"),
    ]
    for name, backend in backends:
        layer = LIF(tau=2.0, backend=backend)
        contenders[name] = (lambda layer=layer: layer(x.requires_grad_()), None)
    # the floor: one elementwise pass forward and one backward over the same tensors, allocating their
    # outputs as any operator does; no neuron can move less memory
    contenders[FLOOR] = (lambda: x.requires_grad_() * 2.0, None)
    if sj is not None:
        functional, _, neuron, surrogate = sj
        sj_lif = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")
        contenders["SpikingJelly LIFNode"] = (lambda: sj_lif(x.requires_grad_()), lambda: functional.reset_net(sj_lif))
    if snn is not None:
        snntorch, snn_surrogate = snn
        leaky = snntorch.Leaky(beta=0.5, spike_grad=snn_surrogate.atan(), reset_mechanism="zero")

        def snn_forward():
            xs = x.requires_grad_()
            mem = leaky.init_leaky()
            spikes = []
            for t in range(xs.shape[0]):
                spike, mem = leaky(xs[t], mem)
                spikes.append(spike)
            return torch.stack(spikes)

        contenders["snnTorch Leaky"] = (snn_forward, None)
    return {name: (fn, cleanup, grad, x) for name, (fn, cleanup) in contenders.items()}


def bench_neuron(shape: tuple[int, ...], repeats: int, sj, snn) -> dict:
    contenders = neuron_contenders(shape, sj, snn)

    def step(fn, cleanup, grad, x):
        def run():
            out = fn()
            out.backward(grad)
            x.grad = None
            if cleanup:
                cleanup()

        return run

    runs = {name: step(*spec) for name, spec in contenders.items()}
    times = interleaved_times(runs, repeats)
    memory = {}
    for name, (fn, cleanup, _, x) in contenders.items():
        memory[name] = saved_tensor_bytes(fn)
        x.grad = None
        if cleanup:
            cleanup()
    return {"shape": list(shape), "times": {n: summarize(t) for n, t in times.items()}, "saved_bytes": memory}


# --------------------------------------------------------------------------------------------- part 2
class SJNet(nn.Module):
    """scnn rebuilt from SpikingJelly layers; ``stem_once`` applies our static-stem shortcut."""

    def __init__(self, sj, timesteps: int, stem_once: bool) -> None:
        super().__init__()
        functional, layer, neuron, surrogate = sj
        self.functional, self.timesteps, self.stem_once = functional, timesteps, stem_once

        def lif():
            return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")

        if stem_once:
            self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        else:
            self.stem = nn.Sequential(
                layer.Conv2d(1, 32, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(32, step_mode="m")
            )
        self.body = nn.Sequential(
            lif(),
            layer.MaxPool2d(2, step_mode="m"),
            layer.Conv2d(32, 64, 3, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(64, step_mode="m"),
            lif(),
            layer.MaxPool2d(2, step_mode="m"),
            layer.Flatten(step_mode="m"),
            layer.Linear(64 * 7 * 7, 128, bias=False, step_mode="m"),
            layer.BatchNorm1d(128, step_mode="m"),
            lif(),
            layer.Linear(128, 10, step_mode="m"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem_once:
            y = self.stem(x).unsqueeze(0).repeat(self.timesteps, 1, 1, 1, 1)
        else:
            y = self.stem(x.unsqueeze(0).repeat(self.timesteps, 1, 1, 1, 1))
        out = self.body(y).mean(0)
        self.functional.reset_net(self)
        return out


class SnnTorchNet(nn.Module):
    """scnn's layers driven by snnTorch's per-step loop (its own Leaky dynamics, BN per step)."""

    def __init__(self, snn, timesteps: int) -> None:
        super().__init__()
        snntorch, snn_surrogate = snn
        self.timesteps = timesteps
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        self.block2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64))
        self.block3 = nn.Sequential(
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3136, 128, bias=False), nn.BatchNorm1d(128)
        )
        self.head = nn.Linear(128, 10)
        self.lifs = nn.ModuleList(
            [snntorch.Leaky(beta=0.5, spike_grad=snn_surrogate.atan(), reset_mechanism="zero") for _ in range(3)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = self.stem(x)
        mems = [lif.init_leaky() for lif in self.lifs]
        out = 0
        for _ in range(self.timesteps):
            s1, mems[0] = self.lifs[0](current, mems[0])
            s2, mems[1] = self.lifs[1](self.block2(s1), mems[1])
            s3, mems[2] = self.lifs[2](self.block3(s2), mems[2])
            out = out + self.head(s3)
        return out / self.timesteps


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy synapse and norm tensors by position (the networks hold the same layers in the same order)."""
    kinds = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
    src = [m for m in source.modules() if isinstance(m, kinds)]
    dst = [m for m in target.modules() if isinstance(m, kinds)]
    assert len(src) == len(dst), (len(src), len(dst))
    for a, b in zip(src, dst, strict=True):
        b.load_state_dict(a.state_dict())


def relu_twin(model: nn.Module) -> nn.Module:
    """The same network with every spiking neuron replaced by a ReLU: the cost of everything else."""
    for name, module in list(model.named_modules()):
        if isinstance(module, SpikingNeuron):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], nn.ReLU())
    return model


def bench_train_step(batch: int, timesteps: int, repeats: int, sj, snn) -> dict:
    torch.manual_seed(0)
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    nets: dict[str, nn.Module] = {"spikeprune scnn (fused)": build_model("scnn", timesteps=timesteps)}
    nets["spikeprune scnn (fused-torch)"] = build_model("scnn", timesteps=timesteps, backend="fused-torch")
    nets["spikeprune scnn (loop)"] = build_model("scnn", timesteps=timesteps, backend="loop")
    nets[RELU_TWIN] = relu_twin(build_model("scnn", timesteps=timesteps))
    for name in ("spikeprune scnn (fused-torch)", "spikeprune scnn (loop)", RELU_TWIN):
        copy_weights(nets["spikeprune scnn (fused)"], nets[name])
    checks = {}
    if sj is not None:
        for label, once in [("SpikingJelly, same static stem", True), ("SpikingJelly, input repeated over T", False)]:
            net = SJNet(sj, timesteps, stem_once=once)
            copy_weights(nets["spikeprune scnn (fused)"], net)
            nets[label] = net
    if snn is not None:
        net = SnnTorchNet(snn, timesteps)
        copy_weights(nets["spikeprune scnn (fused)"], net)
        nets["snnTorch"] = net
    reference = nets["spikeprune scnn (fused)"]
    with torch.no_grad():
        reference.eval()
        expected = reference(x)
        for name, net in nets.items():
            if name.startswith("SpikingJelly") or name.endswith(("(loop)", "(fused-torch)")):
                net.eval()
                checks[name] = float((net(x) - expected).abs().max())
    optimizers = {name: torch.optim.AdamW(net.parameters(), lr=1e-3) for name, net in nets.items()}

    def step(name: str):
        net, optimizer = nets[name], optimizers[name]

        def run():
            net.train()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            optimizer.step()

        return run

    times = interleaved_times({name: step(name) for name in nets}, repeats)
    memory = {}
    for name, net in nets.items():
        net.train()
        memory[name] = saved_tensor_bytes(lambda net=net: net(x))
    return {
        "batch": batch,
        "timesteps": timesteps,
        "max_abs_logit_difference_vs_spikeprune": checks,
        "times": {n: summarize(t) for n, t in times.items()},
        "saved_bytes": memory,
    }


# --------------------------------------------------------------------------------------------- report
def ratio_table(result: dict, ours: str, title: str) -> str:
    base = result["times"][ours]["median"]
    lines = [
        f"### {title}",
        "",
        "| contender | median ms | IQR ms | speed-up of spikeprune (×) | saved for backward (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, stats in result["times"].items():
        ratio = stats["median"] / base
        lines.append(
            f"| {name} | {stats['median'] * 1e3:.1f} | {stats['q1'] * 1e3:.1f}–{stats['q3'] * 1e3:.1f} | "
            f"{ratio:.2f} | {result['saved_bytes'][name] / 2**20:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    sj, snn = optional_frameworks()
    repeats = args.repeats or (3 if args.quick else 30)
    shape = (8, 4, 16, 8, 8) if args.quick else (8, 32, 128, 16, 16)
    neuron_result = bench_neuron(shape, repeats, sj, snn)
    step_result = bench_train_step(8 if args.quick else 64, 4, max(repeats // 2, 3), sj, snn)
    payload = {
        "question": "speed and memory of the spikeprune substrate vs SpikingJelly and snnTorch",
        "quick": args.quick,
        "environment": environment(),
        "lif_forward_backward": neuron_result,
        "train_step": step_result,
    }
    ours_neuron = "spikeprune (fused)"
    ours_step = "spikeprune scnn (fused)"
    targets = {}
    if sj is not None:
        targets["lif_speedup_vs_spikingjelly"] = (
            neuron_result["times"]["SpikingJelly LIFNode"]["median"] / neuron_result["times"][ours_neuron]["median"]
        )
        targets["lif_saved_bytes_ratio_vs_spikingjelly"] = (
            neuron_result["saved_bytes"][ours_neuron] / neuron_result["saved_bytes"]["SpikingJelly LIFNode"]
        )
        targets["train_step_speedup_vs_spikingjelly_same_stem"] = (
            step_result["times"]["SpikingJelly, same static stem"]["median"] / step_result["times"][ours_step]["median"]
        )
        targets["train_step_speedup_vs_spikingjelly_repeated_input"] = (
            step_result["times"]["SpikingJelly, input repeated over T"]["median"]
            / step_result["times"][ours_step]["median"]
        )
    targets["lif_vs_floor"] = neuron_result["times"][ours_neuron]["median"] / neuron_result["times"][FLOOR]["median"]
    targets["step_vs_relu_twin"] = step_result["times"][ours_step]["median"] / step_result["times"][RELU_TWIN]["median"]
    payload["headline"] = targets
    payload["targets"] = TARGETS
    env = payload["environment"]
    markdown = "\n".join(
        [
            "## neuron_speed" + (" (quick)" if args.quick else ""),
            "",
            f"torch {env['torch']}, {threads_text(env['threads'])}, {env['processor']}, CUDA: {env['cuda']}. "
            f"Medians of {repeats} interleaved repeats; ratio = contender time / spikeprune time.",
            "",
            ratio_table(neuron_result, ours_neuron, f"LIF forward+backward, input {tuple(shape)}"),
            ratio_table(step_result, ours_step, f"AdamW training step of scnn, batch {step_result['batch']}, T=4"),
            "Max |logit difference| against spikeprune (same weights, eval mode): "
            + ", ".join(f"{k}: {v:.1e}" for k, v in step_result["max_abs_logit_difference_vs_spikeprune"].items()),
            "",
            "Headline: " + ", ".join(f"{k} = {v:.2f}" for k, v in targets.items()),
            "",
            "Targets: "
            + ", ".join(f"{k} ≤ {v:g} ({'met' if targets[k] <= v else 'missed'})" for k, v in TARGETS.items())
            + ". The ratios are times of spikeprune over the floor and over the ReLU twin.",
            "",
        ]
    )
    write_results("neuron_speed", payload, markdown, args.out_dir)
    print(markdown)
    return payload


if __name__ == "__main__":
    main()

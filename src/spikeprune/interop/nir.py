"""Export spikeprune models to NIR (the Neuromorphic Intermediate Representation) and read them back.

``export_nir(model)`` turns a sequential spikeprune model (``mlp``, ``scnn1d`` and any model built
from Conv1d/Conv2d/Linear, BatchNorm, Flatten and LIF/IF/PLIF neurons) into a ``nir.NIRGraph``:

* masks are folded first (:func:`spikeprune.sparsity.finalize` on a copy), so pruned weights are
  exact zeros in the weight arrays, and each synapse node's metadata says how sparse it is
  (``density``, ``nonzeros``, ``weights``, ``sparsity_pattern``: ``"unstructured"`` or ``"N:M"``
  with ``nm_n``, ``nm_m`` and the block axis);
* eval-mode BatchNorm is folded into the preceding synapse (``W·γ/σ``, a bias). Scaling a row
  keeps its zeros, so density and N:M patterns survive the fold;
* neurons become NIR ``LIF``/``IF`` nodes whose forward-Euler step with ``dt`` reproduces our
  discrete update (``docs/export.md`` derives it): ``τ_NIR = τ·dt``, ``v_leak`` = resting
  potential, ``r = 1`` (``decay_input``) or ``τ`` (otherwise), ``r = 1/dt`` for IF, hard reset to
  ``v_reset``. NIR 1.0 has no subtractive reset and no max pooling: such models raise an error.

``read_nir`` loads a graph with nirtorch into a torch module stepped once per time step, and
``run_nir`` drives it over T steps with the mean-over-time readout of spikeprune's models.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import spikeprune
from spikeprune.errors import SpikepruneError
from spikeprune.snn.neurons import IF, LIF, PLIF, SpikingNeuron
from spikeprune.sparsity.masks import finalize
from spikeprune.sparsity.nm import nm_blocks

DT = 1e-4
"""Seconds per time step in the exported continuous-time parameters (snnTorch's NIR convention)."""

_SYNAPSES = (nn.Conv1d, nn.Conv2d, nn.Linear)
_SKIPPED = (nn.Identity, nn.Dropout)


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - a declared dependency
        raise SpikepruneError("NIR export needs the 'nir' package: pip install nir nirtorch") from None
    return nir


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's modules in execution order (stem, then body), Sequentials expanded."""
    stem, body = getattr(model, "stem", None), getattr(model, "body", None)
    if stem is None or body is None or not hasattr(model, "input_shape"):
        raise SpikepruneError(
            f"NIR export works on spikeprune models (stem + body), got {type(model).__name__}; for a "
            "SpikingJelly or snnTorch model, finalize() it and use that framework's own NIR exporter"
        )
    layers: list[tuple[str, nn.Module]] = []

    def walk(name: str, module: nn.Module) -> None:
        if isinstance(module, nn.Sequential):  # also PerStep: time folding is implicit in NIR
            for child_name, child in module.named_children():
                walk(f"{name}_{child_name}", child)
        else:
            layers.append((name, module))

    walk("stem", stem)
    walk("body", body)
    return layers


def _shapes(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of every layer, from one forward pass on zeros."""
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs, output: Tensor) -> None:
            skip = 2 if isinstance(module, SpikingNeuron) else 1  # neurons see [T, B, ...]
            shapes[name] = tuple(output.shape[skip:])

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _fold_bn(weight: Tensor, bias: Tensor | None, bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """``BN(W x + b)`` in eval mode as ``W' x + b'``."""
    scale = 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    bias = torch.zeros_like(bn.running_mean) if bias is None else bias
    return weight * scale.view(-1, *([1] * (weight.dim() - 1))), bias * scale + shift


def _sparsity(weight: Tensor, nm: tuple[int, int] | None) -> dict[str, object]:
    nonzeros = int(torch.count_nonzero(weight))
    meta: dict[str, object] = {
        "weights": weight.numel(),
        "nonzeros": nonzeros,
        "density": nonzeros / weight.numel(),
        "sparsity_pattern": "unstructured",
    }
    if nm is not None and weight.shape[1] % nm[1] == 0:
        worst = int(torch.count_nonzero(nm_blocks(weight, nm[1]), dim=-1).max())
        if worst <= nm[0]:
            meta.update(
                sparsity_pattern="N:M",
                nm_n=nm[0],
                nm_m=nm[1],
                nm_blocks="M consecutive input features (Linear) or input channels at one kernel tap (Conv)",
            )
    return meta


def _neuron_node(name: str, neuron: SpikingNeuron, shape: tuple[int, ...], dt: float):
    nir = _nir()
    if neuron.norm is not None:
        raise SpikepruneError(f"neuron {name}: a membrane norm (MPBN) has no NIR equivalent; use norm='tdbn'")
    if neuron.v_reset is None:
        raise SpikepruneError(
            f"neuron {name} uses a soft (subtractive) reset; NIR 1.0's LIF/IF reset to v_reset. "
            "Train with v_reset=0.0 (the default) to export"
        )
    full = np.ones(shape, dtype=np.float32)
    threshold, reset = full * neuron.v_threshold, full * neuron.v_reset
    if isinstance(neuron, IF):
        return nir.IF(r=full / dt, v_threshold=threshold, v_reset=reset)
    if not isinstance(neuron, (LIF, PLIF)):
        raise SpikepruneError(f"neuron {name} ({type(neuron).__name__}) has no NIR mapping; use LIF, PLIF or IF")
    tau = 1.0 / float(neuron.leak())
    return nir.LIF(
        tau=full * (tau * dt),
        r=full * (1.0 if neuron.decay_input else tau),
        v_leak=reset.copy(),
        v_threshold=threshold,
        v_reset=reset,
    )


def _array(t: Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


def export_nir(
    model: nn.Module,
    path: str | os.PathLike | None = None,
    *,
    nm: tuple[int, int] | None = None,
    dt: float = DT,
):
    """The model as a ``nir.NIRGraph`` (written to ``path`` when given), masks folded, BN folded.

    ``nm=(N, M)`` declares the N:M pattern the model was trained or pruned for; layers that meet it
    are marked ``"N:M"`` in their metadata, the others ``"unstructured"``. ``model`` is not changed.
    """
    nir = _nir()
    model = finalize(copy.deepcopy(model)).cpu().eval()
    layers = _layers(model)
    shapes = _shapes(model, layers)
    nodes: dict[str, object] = {"input": nir.Input(input_type={"input": np.array(model.input_shape)})}
    order = ["input"]
    shape = tuple(model.input_shape)
    pending: tuple[str, nn.Module, Tensor, Tensor | None] | None = None

    def flush() -> None:
        nonlocal pending
        if pending is None:
            return
        name, layer, weight, bias = pending
        meta = _sparsity(weight, nm)
        if isinstance(layer, nn.Linear):
            node = (
                nir.Linear(weight=_array(weight), metadata=meta)
                if bias is None
                else nir.Affine(weight=_array(weight), bias=_array(bias), metadata=meta)
            )
        else:
            conv = nir.Conv1d if isinstance(layer, nn.Conv1d) else nir.Conv2d
            if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                raise SpikepruneError(f"layer {name}: only numeric zero padding is exported to NIR")
            spatial = layer_input[name][1:]
            node = conv(
                input_shape=spatial[0] if conv is nir.Conv1d else np.array(spatial),
                weight=_array(weight),
                stride=layer.stride[0] if conv is nir.Conv1d else np.array(layer.stride),
                padding=layer.padding[0] if conv is nir.Conv1d else np.array(layer.padding),
                dilation=layer.dilation[0] if conv is nir.Conv1d else np.array(layer.dilation),
                groups=layer.groups,
                bias=_array(bias if bias is not None else torch.zeros(weight.shape[0])),
                metadata=meta,
            )
        nodes[name] = node
        order.append(name)
        pending = None

    layer_input: dict[str, tuple[int, ...]] = {}
    for name, layer in layers:
        if isinstance(layer, _SKIPPED):
            continue
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            if pending is None:
                raise SpikepruneError(f"BatchNorm {name} does not follow a Conv/Linear layer; it cannot be folded")
            pending = (pending[0], pending[1], *_fold_bn(pending[2], pending[3], layer))
        elif isinstance(layer, _SYNAPSES):
            flush()
            layer_input[name] = shape
            bias = layer.bias.detach() if layer.bias is not None else None
            pending = (name, layer, layer.weight.detach(), bias)
        elif isinstance(layer, nn.Flatten):
            flush()
            end = layer.end_dim - 1 if layer.end_dim >= 0 else layer.end_dim
            nodes[name] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=layer.start_dim - 1, end_dim=end)
            order.append(name)
        elif isinstance(layer, SpikingNeuron):
            flush()
            nodes[name] = _neuron_node(name, layer, shapes[name], dt)
            order.append(name)
        else:
            raise SpikepruneError(
                f"layer {name} ({type(layer).__name__}) has no NIR equivalent; NIR export supports "
                "Conv1d/Conv2d/Linear, BatchNorm (folded), Flatten, Dropout and LIF/PLIF/IF neurons (no max pooling)"
            )
        shape = shapes.get(name, shape)
    flush()
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    order.append("output")
    metadata = {
        "producer": f"spikeprune {spikeprune.__version__}",
        "dt": dt,
        "timesteps": int(getattr(model, "timesteps", 1)),
        "encoding": getattr(getattr(model, "options", None), "encoder", "direct"),
        "readout": "mean over the time steps of the output node",
        "reset": "hard: after a spike the membrane is set to v_reset before the next step",
        "threshold": "spike when the charged membrane is >= v_threshold",
        "initial_state": "v = v_leak (rest) at the start of every sample",
        "flatten": "start_dim/end_dim count per-sample dimensions (no batch dimension)",
    }
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:], strict=False)), metadata=metadata)
    if path is not None:
        path = Path(path)
        if not path.parent.is_dir():
            raise SpikepruneError(f"cannot write {path}: folder {path.parent} does not exist; create it")
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            nir.write(tmp, graph)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return graph


# ----------------------------------------------------------------------------------------- reading
class NIRNeuron(nn.Module):
    """One forward-Euler step of a NIR ``LIF`` or ``IF`` node with hard reset (nirtorch's state protocol)."""

    def __init__(self, node, dt: float) -> None:
        super().__init__()
        r = np.asarray(node.r, dtype=np.float64)
        if hasattr(node, "tau"):  # LIF: v + dt/τ·(v_leak − v + r·x)
            gain = dt / np.asarray(node.tau, dtype=np.float64)
            leak = np.asarray(node.v_leak, dtype=np.float64)
        else:  # IF: v + dt·r·x
            gain, leak = np.zeros_like(r), np.zeros_like(r)
            r = r * dt
        as_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        self.register_buffer("gain", as_tensor(gain))
        self.register_buffer("input_gain", as_tensor(gain * r if hasattr(node, "tau") else r))
        self.register_buffer("v_leak", as_tensor(leak))
        self.register_buffer("v_threshold", as_tensor(node.v_threshold))
        self.register_buffer("v_reset", as_tensor(node.v_reset))

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = self.v_leak.expand_as(x) if state is None else state
        h = v + self.gain * (self.v_leak - v) + self.input_gain * x
        spikes = (h >= self.v_threshold).to(x.dtype)
        return spikes, torch.where(spikes > 0, self.v_reset.expand_as(h), h)


def _node_map(dt: float) -> dict:
    nir = _nir()

    def linear(node, bias: bool) -> nn.Linear:
        weight = torch.as_tensor(np.asarray(node.weight, dtype=np.float32))
        module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
        module.weight.data = weight
        if bias:
            module.bias.data = torch.as_tensor(np.asarray(node.bias, dtype=np.float32))
        return module

    def conv(node) -> nn.Module:
        weight = torch.as_tensor(np.asarray(node.weight, dtype=np.float32))
        cls = nn.Conv1d if weight.dim() == 3 else nn.Conv2d
        ints = lambda v: tuple(int(i) for i in np.atleast_1d(v))  # noqa: E731
        module = cls(
            weight.shape[1] * int(node.groups),
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=ints(node.stride),
            padding=ints(node.padding),
            dilation=ints(node.dilation),
            groups=int(node.groups),
        )
        module.weight.data = weight
        module.bias.data = torch.as_tensor(np.asarray(node.bias, dtype=np.float32))
        return module

    def flatten(node) -> nn.Flatten:
        end = int(node.end_dim)
        return nn.Flatten(int(node.start_dim) + 1, end + 1 if end >= 0 else end)

    return {
        nir.Affine: lambda node: linear(node, True),
        nir.Linear: lambda node: linear(node, False),
        nir.Conv1d: conv,
        nir.Conv2d: conv,
        nir.Flatten: flatten,
        nir.LIF: lambda node: NIRNeuron(node, dt),
        nir.IF: lambda node: NIRNeuron(node, dt),
    }


def read_nir(graph_or_path, dt: float | None = None) -> nn.Module:
    """A NIR graph (or file) as a torch module with nirtorch: ``out, state = module(x_t, state)`` per step.

    ``dt`` defaults to the graph's ``metadata["dt"]`` (what :func:`export_nir` wrote), else :data:`DT`.
    """
    nir = _nir()
    import nirtorch

    graph = nir.read(graph_or_path) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    if dt is None:
        dt = float((graph.metadata or {}).get("dt", DT)) if isinstance(graph.metadata, dict) else DT
    return nirtorch.nir_to_torch(graph, _node_map(dt))


@torch.no_grad()
def run_nir(module: nn.Module, x: Tensor, timesteps: int | None = None) -> Tensor:
    """Logits of a module from :func:`read_nir`: mean over T steps of its output.

    ``x`` is a static batch ``[B, ...]`` fed at every step (direct encoding; give ``timesteps``) or
    a sequence ``[T, B, ...]``.
    """
    steps = [x] * int(timesteps) if timesteps is not None else list(x)
    if not steps:
        raise SpikepruneError("run_nir needs timesteps >= 1 for a static batch, or a non-empty sequence")
    state, outputs = None, []
    for x_t in steps:
        out, state = module(x_t, state)
        outputs.append(out)
    return torch.stack(outputs).mean(0)

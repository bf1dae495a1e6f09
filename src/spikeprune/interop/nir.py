"""Export spikeprune models to NIR (the Neuromorphic Intermediate Representation) and read them back.

``export_nir(model)`` turns any built-in spikeprune model (Conv1d/Conv2d/Linear, BatchNorm, Flatten,
max and average pooling, residual blocks, LIF/IF/PLIF neurons) into a ``nir.NIRGraph``:

* masks are folded first (:func:`spikeprune.sparsity.finalize` on a copy), so pruned weights are
  exact zeros in the weight arrays, and each synapse node's metadata says how sparse it is
  (``density``, ``nonzeros``, ``weights``, ``sparsity_pattern``: ``"unstructured"`` or ``"N:M"``
  with ``nm_n``, ``nm_m`` and the block axis);
* eval-mode BatchNorm is folded into the preceding synapse (``W·γ/σ``, a bias). Scaling a row
  keeps its zeros, so density and N:M patterns survive the fold;
* neurons become NIR ``LIF``/``IF`` nodes whose forward-Euler step with ``dt`` reproduces our
  discrete update (``docs/export.md`` derives it): ``τ_NIR = τ·dt``, ``v_leak`` = resting
  potential, ``r = 1`` (``decay_input``) or ``τ`` (otherwise), ``r = 1/dt`` for IF, hard reset to
  ``v_reset``. NIR 1.0 has no subtractive reset: such models raise an error;
* pooling over spikes becomes a ``SumPool2d``: max pooling adds a threshold at one spike (a LIF node
  with ``τ = dt`` has no memory, so at threshold 0.5 it is exactly ``[sum ≥ 1]``, and every NIR
  importer reads LIF), average pooling folds its ``1/area`` into the next synapse's weights; max
  pooling over values that are not spikes is refused;
* a residual block's last neuron gets two incoming edges (NIR sums a node's inputs).

``read_nir`` loads a graph with nirtorch into a torch module stepped once per time step, and
``run_nir`` drives it over T steps with the mean-over-time readout of spikeprune's models.
``batch_flatten`` fixes what snnTorch's and Norse's importers build, so it runs on batches.
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
from spikeprune.models.cifar import SpikingBasicBlock
from spikeprune.snn.layers import PerStep
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


def _check_model(model: nn.Module) -> None:
    if any(getattr(model, key, None) is None for key in ("stem", "body", "input_shape")):
        raise SpikepruneError(
            f"NIR export works on spikeprune models (stem + body), got {type(model).__name__}; for a "
            "SpikingJelly or snnTorch model, finalize() it and use that framework's own NIR exporter"
        )


def _shapes(model: nn.Module) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per-sample input and output shapes (by module id) of every leaf layer, neuron and of the body,
    from one forward pass on zeros. Leaf layers see ``[B, ...]`` or ``[T·B, ...]``; neurons and the
    body see ``[T, B, ...]``."""
    shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(module: nn.Module, inputs, output) -> None:
        skip = 2 if isinstance(module, SpikingNeuron) or module is model.body else 1
        shapes[id(module)] = (tuple(inputs[0].shape[skip:]), tuple(output.shape[skip:]))

    watched = [m for m in model.modules() if isinstance(m, SpikingNeuron) or not list(m.children())]
    handles = [m.register_forward_hook(record) for m in [*watched, model.body]]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


class _GraphBuilder:
    """Walks a spikeprune model and writes NIR nodes and edges.

    Each ``emit`` takes the names of the nodes feeding a module (their outputs are summed, as NIR sums
    a node's inputs) and returns the names whose sum is the module's output. A synapse waits in
    ``pending`` until the next module: a BatchNorm folds into it, and a scale left by an average pool
    before it is folded into its weights.
    """

    def __init__(self, model: nn.Module, nm: tuple[int, int] | None, dt: float) -> None:
        self.nir = _nir()
        self.nm, self.dt = nm, dt
        self.shapes = _shapes(model)
        self.nodes: dict[str, object] = {}
        self.edges: list[tuple[str, str]] = []
        self.spiking: set[str] = set()  # nodes whose output is spikes (0/1)
        self.scale = 1.0  # an average pool's 1/area, waiting for the next synapse

    def add(self, name: str, node, inputs: list[str]) -> list[str]:
        self.nodes[name] = node
        self.edges += [(source, name) for source in inputs]
        return [name]

    def emit(self, name: str, module: nn.Module, inputs: list[str]) -> list[str]:
        nir = self.nir
        if isinstance(module, (nn.Sequential, PerStep)):
            children = list(module.named_children())
            index = 0
            while index < len(children):
                child_name, child = children[index]
                following = children[index + 1][1] if index + 1 < len(children) else None
                if isinstance(child, _SYNAPSES) and isinstance(following, nn.modules.batchnorm._BatchNorm):
                    inputs = self.synapse(f"{name}_{child_name}", child, inputs, following)
                    index += 2
                    continue
                inputs = self.emit(f"{name}_{child_name}", child, inputs)
                index += 1
            return inputs
        if isinstance(module, SpikingBasicBlock):
            residual = self.emit(f"{name}_residual", module.residual, inputs)
            shortcut = self.emit(f"{name}_shortcut", module.shortcut, inputs)
            return self.emit(f"{name}_neuron", module.neuron, residual + shortcut)
        if isinstance(module, _SKIPPED):
            return inputs
        if isinstance(module, _SYNAPSES):
            return self.synapse(name, module, inputs, None)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise SpikepruneError(f"BatchNorm {name} does not follow a Conv/Linear layer; it cannot be folded")
        in_shape, out_shape = self.shapes[id(module)]
        if isinstance(module, SpikingNeuron):
            outputs = self.add(name, _neuron_node(name, module, out_shape, self.dt), inputs)
            self.spiking.add(name)
            return outputs
        if isinstance(module, nn.Flatten):
            end = module.end_dim - 1 if module.end_dim >= 0 else module.end_dim
            node = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=module.start_dim - 1, end_dim=end)
            outputs = self.add(name, node, inputs)
            if all(source in self.spiking for source in inputs):
                self.spiking.add(name)
            return outputs
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return self.pool(name, module, inputs, in_shape, out_shape)
        raise SpikepruneError(
            f"layer {name} ({type(module).__name__}) has no NIR equivalent; NIR export supports Conv1d/Conv2d/"
            "Linear, BatchNorm (folded), Flatten, Dropout, max and average pooling, residual blocks and "
            "LIF/PLIF/IF neurons"
        )

    def pool(self, name: str, module: nn.Module, inputs: list[str], in_shape, out_shape) -> list[str]:
        """Pooling over spikes: a sum pool, then (max) a threshold at one spike or (average) a 1/area
        scale folded into the next synapse."""
        nir = self.nir
        if isinstance(module, nn.AdaptiveAvgPool2d):
            if any(i % o for i, o in zip(in_shape[1:], out_shape[1:], strict=True)):
                raise SpikepruneError(f"layer {name}: adaptive pooling to a size that does not divide the input")
            kernel = stride = tuple(i // o for i, o in zip(in_shape[1:], out_shape[1:], strict=True))
            padding = (0, 0)
        else:
            pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
            kernel, stride, padding = (
                pair(module.kernel_size),
                pair(module.stride or module.kernel_size),
                pair(module.padding),
            )
        if any(padding) or getattr(module, "ceil_mode", False) or getattr(module, "dilation", 1) not in (1, (1, 1)):
            raise SpikepruneError(f"layer {name}: only pooling without padding, dilation or ceil_mode is exported")
        spikes = all(source in self.spiking for source in inputs)
        if isinstance(module, nn.MaxPool2d) and not spikes:
            raise SpikepruneError(
                f"layer {name}: max pooling has no NIR equivalent here, because its input is not spikes (over "
                "spikes it is a sum pool and a threshold at one spike); pool after a spiking layer"
            )
        node = nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
        outputs = self.add(f"{name}_sum", node, inputs)
        if isinstance(module, nn.MaxPool2d):
            # max over 0/1 spikes = [sum ≥ 1]: a LIF node with τ = dt has no memory (v ← r·I each step), so
            # with threshold 0.5 and reset 0 it is exactly that threshold, and every NIR importer reads LIF
            full = np.ones(out_shape, dtype=np.float32)
            threshold = nir.LIF(tau=full * self.dt, r=full, v_leak=full * 0, v_threshold=full * 0.5, v_reset=full * 0)
            outputs = self.add(name, threshold, outputs)
            self.spiking.add(name)
        else:
            self.scale /= float(np.prod(kernel))
        return outputs

    def synapse(self, name: str, layer: nn.Module, inputs: list[str], bn) -> list[str]:
        nir = self.nir
        weight = layer.weight.detach()
        bias = layer.bias.detach() if layer.bias is not None else None
        if bn is not None:
            weight, bias = _fold_bn(weight, bias, bn)
        meta = _sparsity(weight, self.nm)  # before any pooling scale: a scale keeps zeros and patterns anyway
        weight = weight * self.scale
        self.scale = 1.0
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
            spatial = self.shapes[id(layer)][0][1:]
            one = conv is nir.Conv1d
            node = conv(
                input_shape=spatial[0] if one else np.array(spatial),
                weight=_array(weight),
                stride=layer.stride[0] if one else np.array(layer.stride),
                padding=layer.padding[0] if one else np.array(layer.padding),
                dilation=layer.dilation[0] if one else np.array(layer.dilation),
                groups=layer.groups,
                bias=_array(bias if bias is not None else torch.zeros(weight.shape[0])),
                metadata=meta,
            )
        return self.add(name, node, inputs)


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
    _check_model(model)
    model = finalize(copy.deepcopy(model)).cpu().eval()
    builder = _GraphBuilder(model, nm, dt)
    step_shape = tuple(getattr(model, "step_shape", model.input_shape))  # event frames: one frame per step
    builder.nodes["input"] = nir.Input(input_type={"input": np.array(step_shape)})
    outputs = builder.emit("stem", model.stem, ["input"])
    outputs = builder.emit("body", model.body, outputs)
    shape = builder.shapes[id(model.body)][1]  # the body's per-sample output
    builder.add("output", nir.Output(output_type={"output": np.array(shape)}), outputs)
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
        "pooling": "max over spikes = SumPool2d then a memoryless LIF (tau = dt) at threshold 0.5; average = "
        "SumPool2d with 1/area folded into the next synapse",
    }
    graph = nir.NIRGraph(nodes=builder.nodes, edges=builder.edges, metadata=metadata)
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


def batch_flatten(module: nn.Module) -> nn.Module:
    """Make a module built by snnTorch's or Norse's NIR importer run on batches; returns it.

    NIR's ``Flatten`` counts dimensions per sample (its type inference requires it, so our graphs
    write ``start_dim=0``). snnTorch's ``import_from_nir`` and Norse's ``from_nir`` turn it into
    ``torch.nn.Flatten(0)``, which also flattens the batch. This shifts every such layer past the
    batch dimension. (:func:`read_nir` needs no fix.)
    """
    for layer in module.modules():
        if isinstance(layer, nn.Flatten):
            layer.start_dim += 1 if layer.start_dim >= 0 else 0
            layer.end_dim += 1 if layer.end_dim >= 0 else 0
    return module


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

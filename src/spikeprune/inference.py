"""Event-driven inference of a pruned model: work only where a weight is non-zero and an input spiked.

A pruned model run by PyTorch costs as much as the dense one: zeros are multiplied like any weight,
and silent inputs like active ones. ``SparseRunner(model)`` runs the same network another way. Every
synapse keeps only its non-zero weights, grouped by input (CSC for a Linear layer, per input channel
for a convolution). At each step every non-zero input adds its weights into the outputs it reaches:
the work is the number of (active input, non-zero weight) pairs, the effective SynOps.

The network comes from the NIR exporter (:func:`spikeprune.interop.nir.export_nir`): masks and
BatchNorm folded, pooling over spikes as sum pools (with a memoryless threshold for max pooling),
residual blocks as summed inputs, neurons as the forward-Euler step that reproduces ours exactly
(tested there). Layers whose inputs do not change over time (the stem under direct encoding) run
once. The kernels are numba functions that release the GIL, so a batch is spread over threads.

Why numba: ``torch.sparse`` multiplies a sparse weight by a dense input, so it skips zero weights
but not silent inputs, and has no sparse convolution on CPU; a scatter over the active inputs needs
loops that Python cannot run fast, and numba compiles them (cached on disk) without a build step.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError


def _numba():
    try:
        import numba
    except ImportError:
        raise SpikepruneError("sparse inference needs numba: pip install 'spikeprune[deploy]' (or numba)") from None
    return numba


_KERNELS: dict[str, Any] = {}


def _kernels() -> dict[str, Any]:
    """Compile (once per process; cached on disk by numba) the scatter kernels."""
    if _KERNELS:
        return _KERNELS
    njit = _numba().njit

    @njit(nogil=True, cache=True)
    def conv2d(x, out, ptr, targets, ky, kx, weights, sy, sx, py, px):  # pragma: no cover - compiled
        channels, height, width = x.shape
        rows, cols = out.shape[1], out.shape[2]
        for c in range(channels):
            start, end = ptr[c], ptr[c + 1]
            if start == end:
                continue
            for y in range(height):
                for z in range(width):
                    value = x[c, y, z]
                    if value == 0.0:
                        continue
                    for k in range(start, end):
                        ny = y + py - ky[k]
                        nz = z + px - kx[k]
                        if ny < 0 or nz < 0 or ny % sy != 0 or nz % sx != 0:
                            continue
                        i, j = ny // sy, nz // sx
                        if i < rows and j < cols:
                            out[targets[k], i, j] += weights[k] * value

    @njit(nogil=True, cache=True)
    def conv1d(x, out, ptr, targets, kx, weights, sx, px):  # pragma: no cover - compiled
        channels, width = x.shape
        cols = out.shape[1]
        for c in range(channels):
            start, end = ptr[c], ptr[c + 1]
            for z in range(width):
                value = x[c, z]
                if value == 0.0:
                    continue
                for k in range(start, end):
                    nz = z + px - kx[k]
                    if nz < 0 or nz % sx != 0:
                        continue
                    j = nz // sx
                    if j < cols:
                        out[targets[k], j] += weights[k] * value

    @njit(nogil=True, cache=True)
    def linear(x, out, ptr, targets, weights):  # pragma: no cover - compiled
        for j in range(x.shape[0]):
            value = x[j]
            if value == 0.0:
                continue
            for k in range(ptr[j], ptr[j + 1]):
                out[targets[k]] += weights[k] * value

    @njit(nogil=True, cache=True)
    def sum_pool(x, out, ky, kx, sy, sx):  # pragma: no cover - compiled
        channels, rows, cols = out.shape
        for c in range(channels):
            for i in range(rows):
                for j in range(cols):
                    total = 0.0
                    for a in range(ky):
                        for b in range(kx):
                            total += x[c, i * sy + a, j * sx + b]
                    out[c, i, j] = total

    _KERNELS.update(conv2d=conv2d, conv1d=conv1d, linear=linear, sum_pool=sum_pool)
    return _KERNELS


def _by_input(weight: np.ndarray) -> tuple[np.ndarray, ...]:
    """Non-zero weights grouped by input (channel): pointers, output index, kernel taps, values."""
    out_dim, in_dim = weight.shape[:2]
    moved = np.moveaxis(weight, 1, 0).reshape(in_dim, out_dim, -1)  # (in, out, taps)
    flat = moved.reshape(in_dim, -1)
    inputs, positions = np.nonzero(flat)
    counts = np.bincount(inputs, minlength=in_dim)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    taps = weight.shape[2:]
    target, tap = np.divmod(positions, max(math.prod(taps), 1))
    values = flat[inputs, positions].astype(np.float32)
    if len(taps) == 2:
        ky, kx = np.divmod(tap, taps[1])
        return ptr, target.astype(np.int64), ky.astype(np.int64), kx.astype(np.int64), values
    if len(taps) == 1:
        return ptr, target.astype(np.int64), tap.astype(np.int64), values
    return ptr, target.astype(np.int64), values


class _Synapse:
    """A Linear or convolution: its non-zero weights by input, and the kernel that scatters them."""

    def __init__(self, node, kind: str) -> None:
        weight = np.asarray(node.weight, dtype=np.float32)
        self.kind, self.out_dim = kind, weight.shape[0]
        bias = getattr(node, "bias", None)  # NIR's Linear has none
        self.bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, dtype=np.float32)
        self.tables = _by_input(weight)
        self.nonzeros = int(np.count_nonzero(weight))
        if kind != "linear":
            self.stride = [int(v) for v in np.atleast_1d(node.stride)]
            self.padding = [int(v) for v in np.atleast_1d(node.padding)]
            if any(int(v) != 1 for v in np.atleast_1d(node.dilation)) or int(node.groups) != 1:
                raise SpikepruneError("sparse inference supports convolutions without dilation or groups")
            self.kernel = weight.shape[2:]

    def shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.kind == "linear":
            return (self.out_dim,)
        spatial = [
            (size + 2 * pad - k) // stride + 1
            for size, pad, k, stride in zip(in_shape[1:], self.padding, self.kernel, self.stride, strict=True)
        ]
        return (self.out_dim, *spatial)

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        out[...] = self.bias.reshape(-1, *([1] * (out.ndim - 1)))
        kernels = _kernels()
        if self.kind == "linear":
            kernels["linear"](x, out, *self.tables)
        elif self.kind == "conv1d":
            kernels["conv1d"](x, out, *self.tables, self.stride[0], self.padding[0])
        else:
            kernels["conv2d"](x, out, *self.tables, *self.stride, *self.padding)


class _Neuron:
    """The constants of a NIR LIF/IF node's forward-Euler step (what ``read_nir`` runs), hard reset;
    the membranes live with each sample."""

    def __init__(self, node, dt: float) -> None:
        r = np.asarray(node.r, dtype=np.float64)
        if hasattr(node, "tau"):
            gain = dt / np.asarray(node.tau, dtype=np.float64)
            self.gain, self.input_gain = gain.astype(np.float32), (gain * r).astype(np.float32)
            self.v_leak = np.asarray(node.v_leak, dtype=np.float32)
        else:
            self.gain = np.zeros_like(r, dtype=np.float32)
            self.input_gain = (r * dt).astype(np.float32)
            self.v_leak = np.zeros_like(r, dtype=np.float32)
        self.threshold = np.asarray(node.v_threshold, dtype=np.float32)
        self.v_reset = np.asarray(node.v_reset, dtype=np.float32)

    def step(self, v: np.ndarray | None, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Spikes into ``out``; returns the membrane after the step."""
        v = self.v_leak if v is None else v
        h = v + self.gain * (self.v_leak - v) + self.input_gain * x
        spikes = h >= self.threshold
        out[...] = spikes
        return np.where(spikes, self.v_reset, h)


class _SumPool:
    def __init__(self, node) -> None:
        self.kernel = [int(v) for v in np.atleast_1d(node.kernel_size)]
        self.stride = [int(v) for v in np.atleast_1d(node.stride)]

    def shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        spatial = [(s - k) // st + 1 for s, k, st in zip(in_shape[1:], self.kernel, self.stride, strict=True)]
        return (in_shape[0], *spatial)

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        _kernels()["sum_pool"](x, out, *self.kernel, *self.stride)


class SparseRunner:
    """Event-driven inference of a spikeprune model (see the module docstring); ``runner(x)`` gives logits.

    ``x`` is what the model takes: a static batch ``[B, ...]`` (encoded directly: the same input at
    every step) or event frames ``[B, T, ...]``. ``threads`` spreads a batch over threads (default:
    torch's thread count).
    """

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        from spikeprune.interop.nir import export_nir

        encoder = getattr(getattr(model, "options", None), "encoder", "direct")
        if encoder not in ("direct", "frames"):
            raise SpikepruneError(f"sparse inference supports direct and frames encoding, not {encoder!r}")
        self.frames = encoder == "frames"
        self.timesteps = int(model.timesteps)
        self.input_shape = tuple(model.step_shape)
        self.threads = threads or torch.get_num_threads()
        graph = export_nir(model)
        dt = float(graph.metadata["dt"])
        self.sources: dict[str, list[str]] = {}
        for source, target in graph.edges:
            self.sources.setdefault(target, []).append(source)
        self.order = self._topological(graph)
        self.nodes: dict[str, _Synapse | _Neuron | _SumPool | None] = {}
        self.shapes: dict[str, tuple[int, ...]] = {"input": self.input_shape}
        self.static: set[str] = set() if self.frames else {"input"}
        import nir

        for name in self.order[1:]:
            node = graph.nodes[name]
            in_shape = self.shapes[self.sources[name][0]]
            if isinstance(node, (nir.Affine, nir.Linear)):
                op: _Synapse | _Neuron | _SumPool | None = _Synapse(node, "linear")
            elif isinstance(node, nir.Conv2d):
                op = _Synapse(node, "conv2d")
            elif isinstance(node, nir.Conv1d):
                op = _Synapse(node, "conv1d")
            elif isinstance(node, (nir.LIF, nir.IF)):
                op = _Neuron(node, dt)
            elif isinstance(node, nir.SumPool2d):
                op = _SumPool(node)
            elif isinstance(node, (nir.Flatten, nir.Output)):
                op = None  # a reshape, or the readout
            else:
                raise SpikepruneError(f"sparse inference has no kernel for NIR node {name} ({type(node).__name__})")
            self.nodes[name] = op
            if op is None:
                self.shapes[name] = (math.prod(in_shape),) if isinstance(node, nir.Flatten) else in_shape
            else:
                self.shapes[name] = op.shape(in_shape) if hasattr(op, "shape") else in_shape
            if not isinstance(op, _Neuron) and all(s in self.static for s in self.sources[name]):
                self.static.add(name)
        self.synapses = {name: op for name, op in self.nodes.items() if isinstance(op, _Synapse)}

    @staticmethod
    def _topological(graph) -> list[str]:
        incoming = {name: 0 for name in graph.nodes}
        for _, target in graph.edges:
            incoming[target] += 1
        ready, order = ["input"], []
        while ready:
            name = ready.pop()
            order.append(name)
            for source, target in graph.edges:
                if source == name:
                    incoming[target] -= 1
                    if incoming[target] == 0:
                        ready.append(target)
        return order

    def _sample(self, x: np.ndarray) -> np.ndarray:
        """Logits of one sample: T steps, mean of the output node."""
        values: dict[str, np.ndarray] = {}
        membranes: dict[str, np.ndarray | None] = dict.fromkeys(self.nodes)  # this sample's neuron states
        total = None
        for step in range(self.timesteps):
            values["input"] = x[step] if self.frames else x
            for name in self.order[1:]:
                if step > 0 and name in self.static:
                    continue
                inputs = self.sources[name]
                source = values[inputs[0]] if len(inputs) == 1 else sum(values[s] for s in inputs)
                op = self.nodes[name]
                if op is None:
                    values[name] = source.reshape(self.shapes[name])
                    continue
                out = np.empty(self.shapes[name], dtype=np.float32)
                if isinstance(op, _Neuron):
                    membranes[name] = op.step(membranes[name], source, out)
                else:
                    op.run(np.ascontiguousarray(source, dtype=np.float32), out)
                values[name] = out
            step_out = values["output"]
            total = step_out.astype(np.float64) if total is None else total + step_out
        return (total / self.timesteps).astype(np.float32)

    def __call__(self, x: Tensor) -> Tensor:
        """Logits ``[B, classes]`` of a batch (no gradient)."""
        batch = x.detach().cpu().float().numpy()
        expected = len(self.input_shape) + (2 if self.frames else 1)
        if batch.ndim != expected:
            raise SpikepruneError(f"sparse inference expects input with {expected} dimensions, got {tuple(x.shape)}")
        if self.threads > 1 and len(batch) > 1:
            with ThreadPoolExecutor(max_workers=self.threads) as pool:
                rows = list(pool.map(self._sample, batch))
        else:
            rows = [self._sample(sample) for sample in batch]
        return torch.from_numpy(np.stack(rows))

    def work(self) -> dict[str, int]:
        """Non-zero weights kept per synapse (what the kernels iterate over, per active input)."""
        return {name: op.nonzeros for name, op in self.synapses.items()}

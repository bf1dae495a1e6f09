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
        raise SpikepruneError("sparse inference needs numba: pip install 'spikeprune[fast]'") from None
    return numba


_KERNELS: dict[str, Any] = {}


def _kernels() -> dict[str, Any]:
    """Compile (once per process; cached on disk by numba) the kernels. Each runs all time steps of one
    layer in one call (``x[t]`` for ``t < len(x)``), so Python dispatches once per layer, not per step."""
    if _KERNELS:
        return _KERNELS
    njit = _numba().njit

    @njit(nogil=True, cache=True, error_model="numpy")
    def conv2d(x, out, ptr, targets, ky, kx, weights, sy, sx, py, px):  # pragma: no cover - compiled
        steps, channels, height, width = x.shape
        outputs, rows, cols = out.shape[1], out.shape[2], out.shape[3]
        kh, kw = ky.max() + 1 if len(ky) else 1, kx.max() + 1 if len(kx) else 1
        # Stride 1 scatters into a zero-bordered buffer, so the inner loop has no bounds checks: input
        # (y, z) under tap (dy, dz) lands on buffer row y + py + kh - 1 - dy, column z + px + kw - 1 - dz.
        brows, bcols = height + py + kh - 1, width + px + kw - 1
        unit = sy == 1 and sx == 1
        buffer = np.zeros(outputs * brows * bcols if unit else 0, np.float32)
        flat = np.empty(height * width, np.int64)
        vs = np.empty(height * width, np.float32)
        for t in range(steps):
            if unit:
                buffer[:] = 0.0
            for c in range(channels):
                start, end = ptr[c], ptr[c + 1]
                if start == end:
                    continue
                active = 0  # gather this channel's active inputs once, then scatter each weight over them
                plane = x[t, c]
                for y in range(height):
                    for z in range(width):
                        if plane[y, z] != 0.0:
                            flat[active], vs[active] = y * bcols + z, plane[y, z]
                            active += 1
                if active == 0:
                    continue
                if unit:
                    for k in range(start, end):
                        base = (targets[k] * brows + py + kh - 1 - ky[k]) * bcols + px + kw - 1 - kx[k]
                        w = weights[k]
                        for a in range(active):
                            buffer[base + flat[a]] += w * vs[a]
                    continue
                for k in range(start, end):
                    o, dy, dz, w = targets[k], ky[k], kx[k], weights[k]
                    for a in range(active):
                        ny, nz = flat[a] // bcols + py - dy, flat[a] % bcols + px - dz
                        if ny >= 0 and nz >= 0 and ny % sy == 0 and nz % sx == 0:
                            ny, nz = ny // sy, nz // sx
                            if ny < rows and nz < cols:
                                out[t, o, ny, nz] += w * vs[a]
            if unit:
                for o in range(outputs):
                    for i in range(rows):
                        row = (o * brows + i + kh - 1) * bcols + kw - 1
                        for j in range(cols):
                            out[t, o, i, j] += buffer[row + j]

    @njit(nogil=True, cache=True, error_model="numpy")
    def conv1d(x, out, ptr, targets, kx, weights, sx, px):  # pragma: no cover - compiled
        steps, channels, width = x.shape
        cols = out.shape[2]
        for t in range(steps):
            for c in range(channels):
                start, end = ptr[c], ptr[c + 1]
                for z in range(width):
                    value = x[t, c, z]
                    if value == 0.0:
                        continue
                    for k in range(start, end):
                        nz = z + px - kx[k]
                        if nz < 0 or nz % sx != 0:
                            continue
                        j = nz // sx
                        if j < cols:
                            out[t, targets[k], j] += weights[k] * value

    @njit(nogil=True, cache=True, error_model="numpy")
    def linear(x, out, ptr, targets, weights):  # pragma: no cover - compiled
        for t in range(x.shape[0]):
            for j in range(x.shape[1]):
                value = x[t, j]
                if value == 0.0:
                    continue
                for k in range(ptr[j], ptr[j + 1]):
                    out[t, targets[k]] += weights[k] * value

    @njit(nogil=True, cache=True, error_model="numpy")
    def sum_pool(x, out, ky, kx, sy, sx):  # pragma: no cover - compiled
        steps, channels, rows, cols = out.shape
        for t in range(steps):
            for c in range(channels):
                source, target = x[t, c], out[t, c]
                if ky == 2 and kx == 2 and sy == 2 and sx == 2:  # the common case, unrolled
                    for i in range(rows):
                        for j in range(cols):
                            target[i, j] = (
                                source[2 * i, 2 * j] + source[2 * i, 2 * j + 1]
                                + source[2 * i + 1, 2 * j] + source[2 * i + 1, 2 * j + 1]
                            )  # fmt: skip
                    continue
                for i in range(rows):
                    for j in range(cols):
                        total = 0.0
                        for a in range(ky):
                            for b in range(kx):
                                total += source[i * sy + a, j * sx + b]
                        target[i, j] = total

    @njit(nogil=True, cache=True, error_model="numpy")
    def neuron(x, out, gain, input_gain, v_leak, threshold, v_reset):  # pragma: no cover - compiled
        steps, size = out.shape
        v = v_leak.copy()
        for t in range(steps):
            row = x[t if x.shape[0] > 1 else 0]  # a static input drives every step
            for n in range(size):
                h = v[n] + gain[n] * (v_leak[n] - v[n]) + input_gain[n] * row[n]
                if h >= threshold[n]:
                    out[t, n], v[n] = 1.0, v_reset[n]
                else:
                    out[t, n], v[n] = 0.0, h

    _KERNELS.update(conv2d=conv2d, conv1d=conv1d, linear=linear, sum_pool=sum_pool, neuron=neuron)
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
        """``x[t]`` → ``out[t]`` for every step ``t`` in ``x``."""
        out[...] = self.bias.reshape(-1, *([1] * (out.ndim - 2)))
        kernels = _kernels()
        if self.kind == "linear":
            kernels["linear"](x, out, *self.tables)
        elif self.kind == "conv1d":
            kernels["conv1d"](x, out, *self.tables, self.stride[0], self.padding[0])
        else:
            kernels["conv2d"](x, out, *self.tables, *self.stride, *self.padding)


class _Neuron:
    """A NIR LIF/IF node's forward-Euler step (what ``read_nir`` runs), hard reset, its constants
    spread over the layer's neurons; the membranes live inside one call, for one sample."""

    def __init__(self, node, dt: float, shape: tuple[int, ...]) -> None:
        r = np.asarray(node.r, dtype=np.float64)
        if hasattr(node, "tau"):
            gain = dt / np.asarray(node.tau, dtype=np.float64)
            gain, input_gain, v_leak = gain, gain * r, np.asarray(node.v_leak, dtype=np.float64)
        else:
            gain, input_gain, v_leak = np.zeros_like(r), r * dt, np.zeros_like(r)
        constants = (gain, input_gain, v_leak, np.asarray(node.v_threshold), np.asarray(node.v_reset))
        self.constants = tuple(
            np.ascontiguousarray(np.broadcast_to(np.asarray(c, dtype=np.float32), shape).ravel()) for c in constants
        )

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        """Spikes of every step into ``out``; a static ``x`` (one step) drives them all."""
        steps = len(out)
        _kernels()["neuron"](x.reshape(len(x), -1), out.reshape(steps, -1), *self.constants)


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
        self._executor: ThreadPoolExecutor | None = None  # started on first use, kept for the runner's life
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
                op = _Neuron(node, dt, in_shape)
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
        """Logits of one sample: the mean over T steps of the output node. The graph is feed-forward, so
        each node runs all its steps at once (``[T, ...]``; ``[1, ...]`` for a static node)."""
        values: dict[str, np.ndarray] = {"input": x if self.frames else x[None]}
        for name in self.order[1:]:
            inputs = self.sources[name]
            source = values[inputs[0]] if len(inputs) == 1 else sum(values[s] for s in inputs)
            op = self.nodes[name]
            if op is None:
                values[name] = source.reshape(len(source), *self.shapes[name])
                continue
            steps = 1 if name in self.static else self.timesteps
            out = np.empty((steps, *self.shapes[name]), dtype=np.float32)
            op.run(np.ascontiguousarray(source, dtype=np.float32), out)
            values[name] = out
        output = values["output"].astype(np.float64)
        total = output[0] * self.timesteps if len(output) == 1 else output.sum(0)
        return (total / self.timesteps).astype(np.float32)

    def __call__(self, x: Tensor) -> Tensor:
        """Logits ``[B, classes]`` of a batch (no gradient)."""
        batch = x.detach().cpu().float().numpy()
        expected = len(self.input_shape) + (2 if self.frames else 1)
        if batch.ndim != expected:
            raise SpikepruneError(f"sparse inference expects input with {expected} dimensions, got {tuple(x.shape)}")
        if self.threads > 1 and len(batch) > 1:  # samples spread over threads; one sample runs on one
            rows = list(self._pool().map(self._sample, batch))  # (splitting its steps was slower: hand-offs)
        else:
            rows = [self._sample(sample) for sample in batch]
        return torch.from_numpy(np.stack(rows))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.threads)
        return self._executor

    def work(self) -> dict[str, int]:
        """Non-zero weights kept per synapse (what the kernels iterate over, per active input)."""
        return {name: op.nonzeros for name, op in self.synapses.items()}

"""Compiled CPU kernels for the fused neuron: one pass over time per element, forward and backward.

The tensor path of ``_FusedNeuron`` launches about 3 PyTorch kernels per step forward and 10 backward,
each a full pass over ``[B, ...]``. Here forward reads ``x`` once and writes the spikes and the
charged membrane ``h`` once, and backward reads ``h`` and the spike gradient once and writes the input
gradient once. The membrane and the reverse-recurrence state stay in a small per-chunk buffer, and
within a chunk the inner loop runs over neighbouring neurons at one step, so it vectorises. Calls of
a million elements or more spread their chunks over torch's threads; smaller ones stay on one thread,
because waking threads costs milliseconds on a machine busy with other work.

numba compiles them on first use (once per machine: the result is cached on disk). Without numba
(the ``fast`` extra), or for what these kernels do not cover, the neuron keeps the tensor path: GPUs,
other dtypes, a learned leak (PLIF) or sharpness, a membrane readout. Both paths compute the same
formulas; the tests compare them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

SURROGATE_CODES = {"ATan": 0, "Sigmoid": 1, "Triangle": 2}
CHUNK = 2048  # neurons per task: the state of a chunk stays in L1
PARALLEL = 1 << 20  # elements from which a call is spread over threads (below, waking them costs more)

_KERNELS: dict[str, Any] = {}


def compile_kernels() -> dict[str, Any] | None:
    """The compiled kernels by name (compiled or loaded from the disk cache on first call), or ``None``
    without numba. ``surrogate_slopes`` is shared with other kernels (SADP's probe)."""
    if _KERNELS:
        return _KERNELS
    try:
        import numba
    except ImportError:
        return None
    njit, prange = numba.njit, numba.prange
    options = dict(nogil=True, cache=True, error_model="numpy")

    @njit(inline="always", **options)
    def surrogate_slopes(h, threshold, code, a, c1, c2, sg):  # pragma: no cover - compiled
        # sg[i] = σ'(h[i] − θ) over one row; each branch sits outside its loop, so the loops vectorise
        if code == 0:  # ATan: α/2 / (1 + (π/2·α·z)²)
            for i in range(h.shape[0]):
                z = h[i] - threshold
                sg[i] = c2 / (np.float32(1.0) + c1 * z * z)
        elif code == 1:  # Sigmoid: α·s·(1 − s), s = sig(α·z)
            for i in range(h.shape[0]):
                e = np.float32(1.0) / (np.float32(1.0) + np.exp(-a * (h[i] - threshold)))
                sg[i] = a * (e - e * e)
        else:  # Triangle: max(0, α − α²·|z|)
            for i in range(h.shape[0]):
                sg[i] = max(np.float32(0.0), a - c1 * abs(h[i] - threshold))

    def forward(x, spikes, h_out, k, threshold, v_rest, v_reset, mode, soft):  # pragma: no cover - compiled
        # mode 0: h = v + k·(x − (v − v_r)); 1: h = v − k·(v − v_r) + x; 2 (IF): h = v + x
        steps, size = x.shape
        for chunk in prange((size + CHUNK - 1) // CHUNK):
            start = chunk * CHUNK
            end = min(size, start + CHUNK)
            v = np.full(end - start, v_rest, np.float32)
            for t in range(steps):
                for i in range(end - start):
                    n = start + i
                    if mode == 0:
                        h = v[i] + k * (x[t, n] - (v[i] - v_rest))
                    elif mode == 1:
                        h = v[i] - k * (v[i] - v_rest) + x[t, n]
                    else:
                        h = v[i] + x[t, n]
                    fired = h >= threshold
                    spikes[t, n] = np.float32(1.0) if fired else np.float32(0.0)
                    h_out[t, n] = h
                    if soft:
                        v[i] = h - threshold if fired else h
                    else:
                        v[i] = v_reset if fired else h

    def backward(  # pragma: no cover - compiled
        h_seq, grad_s, grad_x, k, decay, threshold, v_reset, soft, detach, scale_x, code, a, c1, c2
    ):
        steps, size = h_seq.shape
        for chunk in prange((size + CHUNK - 1) // CHUNK):
            start = chunk * CHUNK
            count = min(size, start + CHUNK) - start
            nxt = np.zeros(count, np.float32)  # dL/dh_{t+1}
            sg = np.empty(count, np.float32)
            # every branch sits outside the inner loops, so each of them vectorises
            for t in range(steps - 1, -1, -1):
                h, gs, gx = (
                    h_seq[t, start : start + count],
                    grad_s[t, start : start + count],
                    grad_x[t, start : start + count],
                )
                surrogate_slopes(h, threshold, code, a, c1, c2, sg)
                if t == steps - 1:
                    for i in range(count):
                        nxt[i] = gs[i] * sg[i]
                elif soft and detach:
                    for i in range(count):
                        nxt[i] = nxt[i] * decay + gs[i] * sg[i]
                elif soft:
                    for i in range(count):
                        gv = nxt[i] * decay
                        nxt[i] = (gs[i] - threshold * gv) * sg[i] + gv
                elif detach:
                    for i in range(count):
                        gv = nxt[i] * decay
                        nxt[i] = gs[i] * sg[i] + (gv if h[i] < threshold else np.float32(0.0))
                else:
                    for i in range(count):
                        gv = nxt[i] * decay
                        nxt[i] = (gs[i] + gv * (v_reset - h[i])) * sg[i] + (gv if h[i] < threshold else np.float32(0.0))
                if scale_x:
                    for i in range(count):
                        gx[i] = nxt[i] * k
                else:
                    for i in range(count):
                        gx[i] = nxt[i]

    for name, function in (("forward", forward), ("backward", backward)):
        _KERNELS[name] = njit(**options)(function)
        _KERNELS[name + "_parallel"] = njit(parallel=True, **options)(function)
    _KERNELS["surrogate_slopes"] = surrogate_slopes
    return _KERNELS


def usable(x: Tensor, k: Tensor | float, needs_k: bool, needs_alpha: bool, surrogate: object) -> bool:
    """Whether the compiled path covers this call (else the tensor path runs)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not isinstance(k, Tensor)
        and not needs_k
        and not needs_alpha
        and type(surrogate).__name__ in SURROGATE_CODES
        and x.numel() >= CHUNK  # tiny layers: the tensor path's overhead is lower
        and compile_kernels() is not None
    )


def _kernel(name: str, elements: int):
    """The serial kernel, or the threaded one (as many threads as torch uses) for large calls."""
    import numba

    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if threads < 2 or elements < PARALLEL:
        return _KERNELS[name]
    numba.set_num_threads(threads)
    return _KERNELS[name + "_parallel"]


def warm() -> None:
    """Load (or compile) every kernel now, so that the first timed training step does not pay for it.
    The Trainer calls it on CPU; without numba it does nothing."""
    if compile_kernels() is None:
        return
    f32 = np.float32
    x = np.zeros((2, CHUNK), np.float32)
    for suffix in ("", "_parallel"):
        _KERNELS["forward" + suffix](x, x.copy(), x.copy(), f32(0.5), f32(1.0), f32(0.0), f32(0.0), 0, False)
        _KERNELS["backward" + suffix](x, x.copy(), x.copy(), f32(0.5), f32(0.5), f32(1.0), f32(0.0), False, False,
                                      True, 0, f32(2.0), f32(1.0), f32(1.0))  # fmt: skip


def forward(x: Tensor, k: float, dyn) -> tuple[Tensor, Tensor]:
    """Spikes and charged membranes ``[T, ...]`` of one call."""
    compile_kernels()
    flat = x.detach().contiguous().reshape(x.shape[0], -1)
    spikes, h_seq = torch.empty_like(flat), torch.empty_like(flat)
    mode = 2 if dyn.integrate_only else (0 if dyn.decay_input else 1)
    v_reset = 0.0 if dyn.v_reset is None else dyn.v_reset
    f32 = np.float32
    kernel = _kernel("forward", flat.numel())
    kernel(flat.numpy(), spikes.numpy(), h_seq.numpy(), f32(k), f32(dyn.threshold), f32(dyn.v_rest), f32(v_reset),
           mode, dyn.v_reset is None)  # fmt: skip
    return spikes.reshape(x.shape), h_seq.reshape(x.shape)


def surrogate_constants(surrogate: object, alpha: float) -> tuple[int, float, float]:
    """``(code, c1, c2)`` for ``surrogate_slopes``: the surrogate's code, ``(π/2·α)²`` (ATan) or ``α²``, and ``α/2``."""
    code = SURROGATE_CODES[type(surrogate).__name__]
    c1 = (math.pi / 2 * alpha) ** 2 if code == 0 else alpha * alpha
    return code, c1, alpha / 2


def backward(h_seq: Tensor, grad_s: Tensor, k: float, dyn, surrogate: object, alpha: float) -> Tensor:
    """The input gradient, from the saved membranes and the spikes' gradient."""
    compile_kernels()
    flat_h = h_seq.reshape(h_seq.shape[0], -1)
    flat_g = grad_s.contiguous().reshape(flat_h.shape)
    grad_x = torch.empty_like(flat_h)
    code, c1, c2 = surrogate_constants(surrogate, alpha)
    f32 = np.float32
    decay = 1.0 if dyn.integrate_only else 1.0 - k
    scale_x = dyn.decay_input and not dyn.integrate_only
    v_reset = 0.0 if dyn.v_reset is None else dyn.v_reset
    kernel = _kernel("backward", flat_h.numel())
    kernel(flat_h.numpy(), flat_g.numpy(), grad_x.numpy(), f32(k), f32(decay), f32(dyn.threshold), f32(v_reset),
           dyn.v_reset is None, dyn.detach_reset, scale_x, code, f32(alpha), f32(c1), f32(c2))  # fmt: skip
    return grad_x.reshape(h_seq.shape)

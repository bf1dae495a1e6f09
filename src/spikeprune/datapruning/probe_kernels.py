"""Compiled CPU kernels for SADP's probe: the neuron hook's and the BatchNorm hook's reductions in one pass.

The tensor path of :class:`~spikeprune.datapruning.probe.SpikeProbe` launches about 30 small PyTorch
kernels per training step for these two hooks (surrogate slope, reset factor, their norms and maxima;
the batch variance). On a small last layer (scnn1d: ``[4, 64, 128]``) each costs more to launch and
to allocate for than to run, and the hooks took 3.8–4.0% of the training time. Here each hook is one
call that reads its input once and writes only the per-example (or per-channel) results.

numba compiles them on first use (cached on disk). Without numba, or off the CPU, or for dtypes and
surrogates these kernels do not cover, the probe keeps its tensor path; the tests compare the two.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from spikeprune.snn.kernels import SURROGATE_CODES, compile_kernels, surrogate_constants
from spikeprune.snn.neurons import SpikingNeuron

_KERNELS: dict[str, Any] = {}


def _compile() -> dict[str, Any] | None:
    if _KERNELS:
        return _KERNELS
    neuron_kernels = compile_kernels()
    if neuron_kernels is None:  # no numba
        return None
    import numba

    surrogate_slopes = neuron_kernels["surrogate_slopes"]

    def neuron_bound(  # pragma: no cover - compiled
        h, spikes, x_norm, code, a, c1, c2, threshold, v_reset, soft, detach, decay, scale, forward_in_time, out
    ):
        # per (t, b): ‖σ'_t‖ over the layer and λρ_t = λ·max |∂v_t/∂h_t + ∂v_t/∂s_t·σ'_t|; then the probe's
        # recursion over time into q_b = scale·Σ_t β_t·X_t (out[0]) or w_t = scale·‖σ'_t‖·A_t (out[t])
        steps, batch, size = h.shape
        sg = np.empty(size, np.float32)
        sg_norm = np.empty((steps, batch), np.float32)
        carry = np.empty((steps, batch), np.float32)
        for t in range(steps):
            for b in range(batch):
                row, fired = h[t, b], spikes[t, b]
                surrogate_slopes(row, threshold, code, a, c1, c2, sg)
                total = np.float32(0.0)
                for i in range(size):
                    total += sg[i] * sg[i]
                peak = np.float32(0.0)
                if soft and detach:
                    peak = np.float32(1.0)
                elif soft:
                    for i in range(size):
                        peak = max(peak, abs(np.float32(1.0) - threshold * sg[i]))
                elif detach:
                    for i in range(size):
                        peak = max(peak, abs(np.float32(1.0) - fired[i]))
                else:
                    for i in range(size):
                        peak = max(peak, abs(np.float32(1.0) - fired[i] + (v_reset - row[i]) * sg[i]))
                sg_norm[t, b] = math.sqrt(total)
                carry[t, b] = decay * peak
        for b in range(batch):
            if forward_in_time:  # A_t = X_t + λρ_{t−1}·A_{t−1}
                accumulated = x_norm[0, b]
                out[0, b] = scale * sg_norm[0, b] * accumulated
                for t in range(1, steps):
                    accumulated = x_norm[t, b] + carry[t - 1, b] * accumulated
                    out[t, b] = scale * sg_norm[t, b] * accumulated
            else:  # β_t = ‖σ'_t‖ + λρ_t·β_{t+1}
                beta = sg_norm[steps - 1, b]
                q = beta * x_norm[steps - 1, b]
                for t in range(steps - 2, -1, -1):
                    beta = sg_norm[t, b] + carry[t, b] * beta
                    q += beta * x_norm[t, b]
                out[0, b] = scale * q

    def synapse_norms(x, area, positions, out):  # pragma: no cover - compiled
        # per row of x [R, D]: sqrt(area·‖x_r‖² + positions) (positions = 0 without a bias)
        rows, size = x.shape
        for r in range(rows):
            total = np.float32(0.0)
            for i in range(size):
                total += x[r, i] * x[r, i]
            out[r] = math.sqrt(area * total + positions)

    def batch_norm_scale(x, weight, affine, eps):  # pragma: no cover - compiled
        # max_c |γ_c| / sqrt(var_c + eps), with the biased batch variance of x [B, C, L] over B and L (float64)
        batch, channels, length = x.shape
        total = np.zeros(channels, np.float64)
        squares = np.zeros(channels, np.float64)
        for b in range(batch):
            if length == 1:  # [B, C] (a BatchNorm1d after a Linear): the inner loop runs over channels
                for c in range(channels):
                    v = np.float64(x[b, c, 0])
                    total[c] += v
                    squares[c] += v * v
            else:
                for c in range(channels):
                    s, q = 0.0, 0.0
                    for i in range(length):
                        v = np.float64(x[b, c, i])
                        s += v
                        q += v * v
                    total[c] += s
                    squares[c] += q
        count = batch * length
        scale = 0.0
        for c in range(channels):
            mean = total[c] / count
            gain = abs(np.float64(weight[c])) if affine else 1.0
            scale = max(scale, gain / math.sqrt(max(squares[c] / count - mean * mean, 0.0) + eps))
        return scale

    def readout_terms(a, weight, bias, rr):  # pragma: no cover - compiled
        # rr_b = ‖mean_t a_{t,b}‖² + bias for a [T, B, H]; returns max_j ‖W[:, j]‖ for W [C, H]
        steps, batch, size = a.shape
        mean = np.empty(size, np.float32)
        for b in range(batch):
            for i in range(size):
                mean[i] = a[0, b, i]
            for t in range(1, steps):
                for i in range(size):
                    mean[i] += a[t, b, i]
            total = np.float32(0.0)
            for i in range(size):
                total += mean[i] * mean[i]
            rr[b] = total / (steps * steps) + bias
        columns = np.zeros(size, np.float32)
        for c in range(weight.shape[0]):
            for i in range(size):
                columns[i] += weight[c, i] * weight[c, i]
        return math.sqrt(columns.max())

    options = dict(nogil=True, cache=True, error_model="numpy")
    # fastmath lets the per-row sums vectorise; the bound's slack is far above their rounding
    for function in (neuron_bound, synapse_norms, readout_terms):
        _KERNELS[function.__name__] = numba.njit(fastmath=True, **options)(function)
    _KERNELS["batch_norm_scale"] = numba.njit(**options)(batch_norm_scale)
    return _KERNELS


def usable(x: Tensor, module: SpikingNeuron | None = None) -> bool:
    """Whether the compiled path covers this hook call (else the tensor path runs)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and (module is None or type(module.surrogate).__name__ in SURROGATE_CODES)
        and _compile() is not None
    )


def warm() -> None:
    """Load (or compile) the kernels now, so that the first scored step does not pay for it (the probe calls
    it when it hooks a model on the CPU); without numba it does nothing."""
    if _compile() is None:
        return
    f32 = np.float32
    a = np.ones((2, 2, 2), np.float32)
    b, out = np.ones((2, 2), np.float32), np.empty((2, 2), np.float32)
    for forward_in_time in (False, True):
        _KERNELS["neuron_bound"](a, a, b, 0, f32(2), f32(1), f32(1), f32(1), f32(0), False, False, f32(0.5), f32(1),
                                 forward_in_time, out)  # fmt: skip
    _KERNELS["synapse_norms"](b, f32(1), f32(0), out[0])
    _KERNELS["batch_norm_scale"](a, out[0], True, 1e-5)
    _KERNELS["readout_terms"](a, b, f32(0), out[0])


def neuron_bound(
    module: SpikingNeuron, spikes: Tensor, h: Tensor, x_norm: Tensor, scale: float, forward_in_time: bool
) -> Tensor:
    """The probe's neuron-hook result from the layer's records: ``q`` ``[B]`` (linear readout), or ``w``
    ``[T, B]`` (spiking readout, ``forward_in_time``); ``x_norm`` is ``[T, B]``."""
    steps, batch = h.shape[:2]
    # contiguous arrays: one compiled signature per kernel (the one warm() loads)
    h3 = np.ascontiguousarray(h.detach().reshape(steps, batch, -1).numpy())
    s3 = np.ascontiguousarray(spikes.detach().reshape(steps, batch, -1).float().numpy())
    alpha = float(module.surrogate.alpha)
    code, c1, c2 = surrogate_constants(module.surrogate, alpha)
    out = np.empty((steps if forward_in_time else 1, batch), np.float32)
    f32 = np.float32
    v_reset = 0.0 if module.v_reset is None else module.v_reset
    x2 = np.ascontiguousarray(x_norm.float().numpy())
    _KERNELS["neuron_bound"](h3, s3, x2, code, f32(alpha), f32(c1), f32(c2), f32(module.v_threshold),
                             f32(v_reset), module.v_reset is None, module.detach_reset, f32(module.decay), f32(scale),
                             forward_in_time, out)  # fmt: skip
    return torch.from_numpy(out if forward_in_time else out[0])


def synapse_norms(x: Tensor, area: int, positions: int) -> Tensor:
    """``sqrt(area·‖x_r‖² + positions)`` per row of the synapse input (``positions`` = 0 without a bias)."""
    flat = np.ascontiguousarray(x.detach().reshape(x.shape[0], -1).numpy())
    out = np.empty(flat.shape[0], np.float32)
    _KERNELS["synapse_norms"](flat, np.float32(area), np.float32(positions), out)
    return torch.from_numpy(out)


def batch_norm_scale(module: nn.modules.batchnorm._BatchNorm, x: Tensor) -> float:
    """``max_c |γ_c| / sqrt(var_c + eps)`` with the batch variance of ``x`` (training-mode BatchNorm)."""
    x3 = np.ascontiguousarray(x.detach().reshape(x.shape[0], x.shape[1], -1).numpy())
    weight = np.ascontiguousarray(module.weight.detach().float().numpy()) if module.affine else x3[0, :, 0].copy()
    return _KERNELS["batch_norm_scale"](x3, weight, module.affine, float(module.eps))


def readout_terms(a: Tensor, weight: Tensor, bias: float) -> tuple[Tensor, float]:
    """``‖r_b‖² + bias`` per example (``r`` = the mean over time of ``a`` ``[T, B, H]``) and ``max_j ‖W[:, j]‖``."""
    rr = np.empty(a.shape[1], np.float32)
    c_w = _KERNELS["readout_terms"](
        np.ascontiguousarray(a.detach().numpy()), np.ascontiguousarray(weight.detach().numpy()), np.float32(bias), rr
    )
    return torch.from_numpy(rr), c_w

"""Multi-step spiking neurons (LIF, IF, PLIF) on time-first tensors ``[T, B, ...]``.

Dynamics (SpikingJelly's conventions, so numbers match theirs), with ``k = 1/τ``:

* charge, ``decay_input=True``:  ``h_t = v_{t−1} + k·(x_t − (v_{t−1} − v_r))``
* charge, ``decay_input=False``: ``h_t = v_{t−1} − k·(v_{t−1} − v_r) + x_t``
* charge, IF:                    ``h_t = v_{t−1} + x_t``
* fire:  ``s_t = Θ(h_t − θ)`` with a surrogate gradient ``σ'(h_t − θ)``
* reset: hard ``v_t = h_t·(1 − s_t) + v_r·s_t``, soft (``v_reset=None``) ``v_t = h_t − θ·s_t``

Neurons are stateless between calls: each forward starts from rest (``v_r``, or 0 for soft reset),
so no ``reset_net`` can be forgotten.

The default ``fused`` backend runs the whole time loop inside one autograd node. Forward keeps only
the charged membrane ``h`` (one tensor the size of the input); backward recomputes spikes and
surrogate derivatives from it. On CPU (float32, fixed leak and sharpness) compiled kernels
(:mod:`spikeprune.snn.kernels`) do each direction in one pass over memory; elsewhere, or with
``fused-torch``, a tensor path does it with a few PyTorch kernels per step. The ``loop`` backend
builds the same computation step by step with autograd; it is the reference the tests compare
against and is used when a membrane norm (MPBN) sits inside the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.snn import kernels
from spikeprune.snn.surrogate import ATan, Surrogate

BACKENDS = ("fused", "fused-torch", "loop")


@dataclass(frozen=True)
class _Dynamics:
    """The constants of one neuron call, passed to the fused autograd function."""

    threshold: float
    v_reset: float | None
    decay_input: bool
    detach_reset: bool
    integrate_only: bool  # IF: no leak

    @property
    def v_rest(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset


def _charge(v: Tensor | float, x: Tensor, k: Tensor | float, dyn: _Dynamics, out: Tensor) -> Tensor:
    """Write ``h_t`` into ``out`` with one or two kernels (``v`` is a float only at t = 0)."""
    if dyn.integrate_only:
        return torch.add(x, v, out=out)
    if dyn.decay_input:
        if not isinstance(v, Tensor):
            return torch.add(x, dyn.v_rest - v, out=out).mul_(k).add_(v)
        end = x if dyn.v_rest == 0.0 else x + dyn.v_rest
        return torch.lerp(v, end, k, out=out)
    # h = (1 − k)·v + k·v_r + x
    if not isinstance(v, Tensor):
        return torch.add(x, (1 - k) * v + k * dyn.v_rest, out=out)
    torch.mul(v, 1 - k, out=out).add_(x)
    return out.add_(k * dyn.v_rest) if dyn.v_rest != 0.0 else out


def _reset(h: Tensor, s: Tensor, dyn: _Dynamics) -> Tensor:
    """``v_t`` from the charged membrane and the (float) spikes, in one or two kernels."""
    if dyn.v_reset is None:
        return torch.sub(h, s, alpha=dyn.threshold)
    if dyn.v_reset == 0.0:
        return torch.addcmul(h, h, s, value=-1.0)
    return torch.addcmul(h, h - dyn.v_reset, s, value=-1.0)


class _FusedNeuron(torch.autograd.Function):
    """The whole time loop of a neuron as one autograd node (see module docstring).

    Both directions work one step at a time so the working set (a few ``[B, ...]`` tensors) stays
    in cache, and each step costs a handful of kernels: forward charge/fire/reset = 3, backward ≈ 10.
    """

    @staticmethod
    def forward(ctx, x: Tensor, k: Tensor | float, alpha: Tensor, dyn: _Dynamics, surrogate: Surrogate, compiled: bool):
        k_value = k.detach() if isinstance(k, Tensor) else k
        ctx.compiled = compiled and kernels.usable(x, k, ctx.needs_input_grad[1], ctx.needs_input_grad[2], surrogate)
        if ctx.compiled:
            s_seq, h_seq = kernels.forward(x, k_value, dyn)
        else:
            h_seq = torch.empty_like(x, memory_format=torch.contiguous_format)
            s_seq = torch.empty_like(h_seq)
            v: Tensor | float = dyn.v_rest
            for t in range(x.shape[0]):
                h = _charge(v, x[t], k_value, dyn, out=h_seq[t])
                s = torch.ge(h, dyn.threshold, out=s_seq[t])
                if t + 1 < x.shape[0]:
                    v = _reset(h, s, dyn)
        ctx.save_for_backward(h_seq, k if isinstance(k, Tensor) else None)
        ctx.k_value, ctx.dyn, ctx.surrogate = k_value, dyn, surrogate
        ctx.mark_non_differentiable(h_seq)
        return s_seq, h_seq

    @staticmethod
    def backward(ctx, grad_s: Tensor | None, _grad_h: Tensor | None):
        h_seq, k_tensor = ctx.saved_tensors
        dyn: _Dynamics = ctx.dyn
        k = ctx.k_value
        surrogate: Surrogate = ctx.surrogate
        if grad_s is None:
            grad_s = torch.zeros_like(h_seq)
        if ctx.compiled:
            grad_x = kernels.backward(h_seq, grad_s, k, dyn, surrogate, float(surrogate.alpha))
            return grad_x, None, None, None, None, None
        decay = 1.0 if dyn.integrate_only else 1.0 - k
        scale_x = dyn.decay_input and not dyn.integrate_only
        need_k = ctx.needs_input_grad[1] and k_tensor is not None
        need_alpha = ctx.needs_input_grad[2]
        keep_gh = need_k or need_alpha
        gh_seq = torch.empty_like(h_seq) if keep_gh else None
        grad_x = torch.empty_like(h_seq)
        # gh_t = dL/dh_t = σ'_t·(gs_t + gv_t·∂v_t/∂s_t) + gv_t·∂v_t/∂h_t,  gv_t = λ·gh_{t+1}
        alpha = float(surrogate.alpha)
        nxt: Tensor | None = None
        for t in range(h_seq.shape[0] - 1, -1, -1):
            h, gs = h_seq[t], grad_s[t]
            z = h - dyn.threshold
            sg = surrogate.derivative(z, alpha)
            if nxt is None:
                gh = gs * sg
            elif dyn.v_reset is None:
                if dyn.detach_reset:
                    gh = torch.addcmul(nxt * decay, gs, sg)
                else:
                    gh = torch.sub(gs, nxt * decay, alpha=dyn.threshold).mul_(sg).add_(nxt * decay)
            else:
                gv = nxt * decay
                if dyn.detach_reset:
                    gh = torch.mul(gs, sg)
                else:
                    gh = torch.addcmul(gs, gv, dyn.v_reset - h).mul_(sg)
                gh.addcmul_(gv, z < 0)
            if keep_gh:
                gh_seq[t] = gh
            if scale_x:
                torch.mul(gh, k, out=grad_x[t])
            else:
                grad_x[t] = gh
            nxt = gh

        grad_k = grad_alpha = None
        if need_k:
            spikes = (h_seq >= dyn.threshold).to(h_seq.dtype)
            v_prev = torch.empty_like(h_seq)
            v_prev[0] = dyn.v_rest
            v_prev[1:] = _reset(h_seq[:-1], spikes[:-1], dyn)
            dh_dk = (h_seq - v_prev) / k if dyn.decay_input else dyn.v_rest - v_prev
            grad_k = (gh_seq * dh_dk).sum().reshape(k_tensor.shape)
        if need_alpha:
            g_spike = grad_s.clone()
            if not dyn.detach_reset:
                g_v = torch.zeros_like(gh_seq)
                g_v[:-1] = gh_seq[1:] * decay
                dv_ds = -dyn.threshold if dyn.v_reset is None else dyn.v_reset - h_seq
                g_spike += g_v * dv_ds
            grad_alpha = (g_spike * surrogate.alpha_derivative(h_seq - dyn.threshold)).sum().reshape(())
        return grad_x, grad_k, grad_alpha, None, None, None


class SpikingNeuron(nn.Module):
    """Common machinery of the multi-step neurons; subclasses set the leak.

    Args:
        v_threshold: firing threshold θ.
        v_reset: value after a spike (hard reset); ``None`` subtracts θ instead (soft reset).
        detach_reset: stop gradients through the reset path (as SpikingJelly's flag).
        surrogate: surrogate-gradient module (default ``ATan()``).
        norm: optional membrane norm applied to ``h_t`` before the threshold (MPBN); forces the
            ``loop`` backend.
        backend: ``fused`` (default: the compiled CPU kernels where they apply, else the tensor
            path), ``fused-torch`` (always the tensor path) or ``loop`` (step-by-step autograd reference).
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = False,
        surrogate: Surrogate | None = None,
        norm: nn.Module | None = None,
        backend: str = "fused",
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise SpikepruneError(f"unknown neuron backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if not math.isfinite(v_threshold) or v_threshold <= (v_reset if v_reset is not None else 0.0):
            raise SpikepruneError(
                f"v_threshold ({v_threshold}) must be finite and above the reset/rest value ({v_reset})"
            )
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.surrogate = surrogate if surrogate is not None else ATan()
        self.norm = norm
        self.backend = backend
        self.decay_input = True
        self.record = False
        self.records: dict[str, Tensor] = {}
        self.output_membrane = False  # return the membrane h instead of the spikes (a membrane readout)

    # --- subclasses -------------------------------------------------------------------------
    def leak(self) -> Tensor | float | None:
        """k = 1/τ (a tensor when learned), or ``None`` for a pure integrator."""
        raise NotImplementedError

    # --- behaviour --------------------------------------------------------------------------
    @property
    def decay(self) -> float:
        """Membrane decay λ per step (1 − 1/τ; 1 for IF), as used in the papers' bounds."""
        k = self.leak()
        return 1.0 if k is None else 1.0 - float(k)

    def _dynamics(self) -> _Dynamics:
        return _Dynamics(
            threshold=self.v_threshold,
            v_reset=self.v_reset,
            decay_input=self.decay_input,
            detach_reset=self.detach_reset,
            integrate_only=self.leak() is None,
        )

    def forward(self, x_seq: Tensor) -> Tensor:
        if x_seq.dim() < 2:
            raise SpikepruneError(
                f"{type(self).__name__} expects a time-first tensor [T, B, ...], got shape {tuple(x_seq.shape)}"
            )
        if self.backend != "loop" and self.norm is None and not self.output_membrane:
            k = self.leak()
            spikes, membrane = _FusedNeuron.apply(
                x_seq,
                0.0 if k is None else k,
                self.surrogate.alpha,
                self._dynamics(),
                self.surrogate,
                self.backend == "fused",
            )
        else:
            spikes, membrane = self._loop(x_seq)
        if self.record:
            self.records = {"spikes": spikes.detach(), "membrane": membrane.detach()}
        return membrane if self.output_membrane else spikes  # the loop's membrane carries its gradient

    def _loop(self, x_seq: Tensor) -> tuple[Tensor, Tensor]:
        dyn = self._dynamics()
        k = self.leak()
        v: Tensor = torch.full_like(x_seq[0], dyn.v_rest)
        spikes, membranes = [], []
        for x in x_seq:
            if k is None:
                h = v + x
            elif dyn.decay_input:
                h = v + k * (x - (v - dyn.v_rest))
            else:
                h = v - k * (v - dyn.v_rest) + x
            u = self.norm(h) if self.norm is not None else h
            s = self.surrogate(u - dyn.threshold)
            s_reset = s.detach() if dyn.detach_reset else s
            if dyn.v_reset is None:
                v = h - dyn.threshold * s_reset
            else:
                v = h * (1 - s_reset) + dyn.v_reset * s_reset
            spikes.append(s)
            membranes.append(u)
        return torch.stack(spikes), torch.stack(membranes)

    def extra_repr(self) -> str:
        reset = "soft" if self.v_reset is None else f"hard(v_reset={self.v_reset:g})"
        return (
            f"v_threshold={self.v_threshold:g}, reset={reset}, detach_reset={self.detach_reset}, backend={self.backend}"
        )


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire with a fixed membrane time constant ``tau`` (> 1)."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if not tau > 1.0:
            raise SpikepruneError(f"LIF tau must be > 1 (leak 1/tau in (0, 1)), got {tau}")
        self.tau = float(tau)
        self.decay_input = bool(decay_input)

    def leak(self) -> float:
        return 1.0 / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()


class IF(SpikingNeuron):
    """Integrate-and-fire: no leak."""

    def leak(self) -> None:
        return None


class PLIF(SpikingNeuron):
    """Parametric LIF: the leak ``1/τ = sigmoid(w)`` is learned (one value per layer)."""

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if not init_tau > 1.0:
            raise SpikepruneError(f"PLIF init_tau must be > 1, got {init_tau}")
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))
        self.decay_input = bool(decay_input)

    def leak(self) -> Tensor:
        return torch.sigmoid(self.w)

    def extra_repr(self) -> str:
        return f"tau={1.0 / float(self.leak()):.3g}, " + super().extra_repr()


NEURONS: dict[str, type[SpikingNeuron]] = {"lif": LIF, "if": IF, "plif": PLIF}


def build_neuron(name: str, **options) -> SpikingNeuron:
    """Make a neuron by name (``lif``, ``if``, ``plif``) with keyword options."""
    try:
        cls = NEURONS[name.lower()]
    except KeyError:
        raise SpikepruneError(f"unknown neuron {name!r}; choose one of {', '.join(NEURONS)}") from None
    return cls(**options)

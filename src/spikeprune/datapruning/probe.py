"""Forward hooks that compute SADP's spike-aware gradient bound during the training forward pass.

The bound covers the readout layer ``(W_L, b_L)`` and the synaptic layer ``W_{L−1}`` that feeds the
last spiking layer (through an optional BatchNorm), for one example with logits
``z = mean_t(W_L a_t + b_L)``, where ``a_t`` is the last layer's spikes after optional
flattening or average pooling. With ``δ = softmax(z) − onehot(y)`` (see ``docs/sadp.md``):

* readout, exactly: ``‖∇_{W_L,b_L} ℓ‖ = ‖δ‖·sqrt(‖r‖² + 1)`` with ``r = mean_t a_t``;
* spikes: ``|∂ℓ/∂s_{t,j}| ≤ c_W‖δ‖/T`` with ``c_W = max_j ‖W_L[:, j]‖ / A`` (A = pooling area);
* membranes, through the surrogate and the leak/reset recursion:
  ``‖∂ℓ/∂h_t‖ ≤ (c_W‖δ‖/T)·β_t``, where ``β_t = ‖σ'_t‖ + λ·ρ_t·β_{t+1}``, ``λ`` is the decay, and
  ``ρ_t = max_j |∂v_t/∂h_t + ∂v_t/∂s_t·σ'_t|``;
* synapse: ``‖∇_{W_{L−1}} ℓ‖ ≤ (c_W‖δ‖/T) · k · g_BN · Σ_t β_t · sqrt(area·‖x_t‖² + P·[bias])``.
  Here ``k`` is the input gain (1/τ with decay_input), ``g_BN`` is the largest BatchNorm scale
  ``|γ|/σ``, ``x_t`` is the synapse input, ``area`` is the kernel area and ``P`` the number of output
  positions.

Everything except ``δ`` comes from forward quantities, so the hooks store per-example
``q = k·g_BN·Σ_t β_t·‖x_t‖'`` and ``‖r‖²``; the score needs only the logits on top of them.
On CPU each hook is one compiled call (:mod:`~spikeprune.datapruning.probe_kernels`); elsewhere, or
without numba, the same formulas run as tensor operations.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn

from spikeprune.datapruning import probe_kernels
from spikeprune.errors import SpikepruneError
from spikeprune.models.base import is_recomputing
from spikeprune.snn.neurons import SpikingNeuron

SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d)
POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AvgPool2d)


class SpikeProbe:
    """Find the readout, the last hidden spiking layer and its synapse in ``model``, and hook them.

    Two model shapes are covered. A *linear readout*: the last spiking layer feeds a final
    ``nn.Linear`` whose mean over time is the logits (spikeprune's models). A *spiking readout*: a
    final ``nn.Linear`` feeds an output layer of spiking neurons, whose spike rate (or, with
    ``output_membrane`` set on that layer, mean membrane potential) is the logits (snnTorch's
    ``Leaky(..., output=True)`` shape).
    """

    def __init__(self, model: nn.Module) -> None:
        named = list(model.named_modules())
        linears = [i for i, (_, m) in enumerate(named) if isinstance(m, nn.Linear)]
        neurons = [i for i, (_, m) in enumerate(named) if isinstance(m, SpikingNeuron)]
        if not linears or not neurons:
            raise SpikepruneError(
                "SADP needs a spiking model with an nn.Linear readout (a final Linear, or a Linear feeding a "
                "final layer of spiking neurons); use a spikeprune model or adapt() yours"
            )
        self.output: SpikingNeuron | None = None
        if neurons[-1] < linears[-1]:  # linear readout
            r = linears[-1]
        else:  # spiking readout: ... → Linear → output neurons
            o = neurons[-1]
            r = max(i for i, (_, m) in enumerate(named) if isinstance(m, SYNAPSES) and i < o)
            if not isinstance(named[r][1], nn.Linear):
                raise SpikepruneError(
                    f"SADP's spiking readout needs an nn.Linear before the output neurons, found "
                    f"{type(named[r][1]).__name__} ({named[r][0]})"
                )
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for _, m in named[r + 1 : o]):
                raise SpikepruneError(
                    "SADP's bound does not cover a BatchNorm between the readout and the output neurons"
                )
            self.output = named[o][1]
            if self.output.norm is not None:
                raise SpikepruneError("SADP's bound does not cover membrane norms (MPBN); use norm='tdbn'")
        hidden = [i for i in neurons if i < r]
        if not hidden:
            raise SpikepruneError("SADP found no spiking layer before the readout; it needs at least one hidden layer")
        n = hidden[-1]
        synapses = [i for i, (_, m) in enumerate(named) if isinstance(m, SYNAPSES) and i < n]
        if not synapses:
            raise SpikepruneError("SADP found no Conv/Linear layer feeding the last hidden spiking layer")
        s = synapses[-1]
        self.readout: nn.Linear = named[r][1]
        self.neuron: SpikingNeuron = named[n][1]
        self.synapse: nn.Module = named[s][1]
        if self.neuron.norm is not None:
            raise SpikepruneError("SADP's bound does not cover membrane norms (MPBN); use norm='tdbn'")
        self.norms = [m for _, m in named[s + 1 : n] if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.pooled = any(isinstance(m, POOLS) for _, m in named[n + 1 : r])
        self.names = {"readout": named[r][0], "neuron": named[n][0], "synapse": named[s][0]}
        if self.output is not None:
            self.names["output"] = named[o][0]
        self.seconds = 0.0  # time spent in the hooks (scoring overhead)
        self._state: dict[str, Tensor | float] = {}
        self._handles = [
            self.synapse.register_forward_hook(self._on_synapse),
            self.neuron.register_forward_hook(self._on_neuron),
            self.readout.register_forward_hook(self._on_readout),
            *[norm.register_forward_hook(self._on_norm) for norm in self.norms],
        ]
        self.neuron.record = True
        if next(model.parameters()).device.type == "cpu":
            probe_kernels.warm()  # compiling or loading the kernels is not part of the first scored step
        if self.output is not None:
            self._handles.append(self.output.register_forward_hook(self._on_output))
            self.output.record = True

    @property
    def spiking_readout(self) -> bool:
        return self.output is not None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.neuron.record = False
        if self.output is not None:
            self.output.record = False

    # ------------------------------------------------------------------------- hooks
    def _timed(hook):
        def wrapper(self, module, inputs, output):
            if not torch.is_grad_enabled() or is_recomputing():
                return  # evaluation passes are not scored; a checkpointed block's second forward was
            started = time.perf_counter()
            # the hooks' tensors are small (per-example norms, one layer's spikes), so the CPU thread pool's
            # fork/join per op buys nothing: one thread costs the same on an idle machine and half the hook
            # time when another process competes for the cores (measured on scnn1d, 2 cores)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.no_grad():
                    hook(self, module, inputs, output)
            finally:
                torch.set_num_threads(threads)
            self.seconds += time.perf_counter() - started

        return wrapper

    @_timed
    def _on_synapse(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        area = math.prod(module.kernel_size) if isinstance(module, (nn.Conv1d, nn.Conv2d)) else 1
        positions = (math.prod(output.shape[2:]) if output.dim() > 2 else 1) if module.bias is not None else 0
        if probe_kernels.usable(inputs[0]):
            x_norm = probe_kernels.synapse_norms(inputs[0], area, positions)
        else:
            norms = torch.linalg.vector_norm(inputs[0].detach().flatten(1), dim=1, dtype=torch.float32)  # per call row
            x_norm = (
                norms.mul_(math.sqrt(area)) if positions == 0 else norms.square_().mul_(area).add_(positions).sqrt_()
            )
        self._state["x_norm"] = x_norm
        self._state["bn_scale"] = 1.0

    @_timed
    def _on_norm(self, module: nn.modules.batchnorm._BatchNorm, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._state["bn_scale"] = self._state.get("bn_scale", 1.0) * self._norm_scale(module, inputs[0])

    @staticmethod
    def _norm_scale(module: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor | float:
        """The largest ``|γ|/σ`` of the norm, with the batch's σ in training mode."""
        if module.training or module.running_var is None:
            if probe_kernels.usable(x):
                return probe_kernels.batch_norm_scale(module, x)
            x = x.detach().float()
            dims = [0, *range(2, x.dim())]
            # E[x²] − E[x]²: on CPU several times faster than Tensor.var's Welford pass over dim 0
            var = x.square().mean(dims).sub_(x.mean(dims).square_()).clamp_(min=0)
        else:
            var = module.running_var.float()
        inverse_std = (var + module.eps).rsqrt_()
        if module.affine:
            inverse_std.mul_(module.weight.detach().float().abs())
        return inverse_std.max()  # stays on the device: no sync per step

    @staticmethod
    def _slopes(module: SpikingNeuron, spikes: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """Per element: the surrogate slope ``σ'(h − θ)`` and ``ρ`` in ``∂h_{t+1}/∂h_t = λ·ρ_t`` (reset and leak)."""
        sg = module.surrogate.derivative(h - module.v_threshold)
        if module.v_reset is None:
            coef = torch.ones_like(sg) if module.detach_reset else 1.0 - module.v_threshold * sg
        else:
            coef = 1.0 - spikes
            if not module.detach_reset:
                coef = coef + (module.v_reset - h) * sg
        return sg, coef

    @staticmethod
    def _gain(module: SpikingNeuron) -> Tensor | float:
        """The input gain ``∂h_t/∂x_t``: the leak ``k`` with ``decay_input``, else 1."""
        leak = module.leak()
        if leak is None or not module.decay_input:
            return 1.0
        return leak.detach() if isinstance(leak, Tensor) else leak

    @_timed
    def _on_neuron(self, module: SpikingNeuron, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        spikes, h = module.records["spikes"], module.records["membrane"]
        steps, batch = spikes.shape[:2]
        x_norm = self._state.pop("x_norm", None)
        if x_norm is None:
            raise SpikepruneError(f"SADP probe: synapse {self.names['synapse']} did not run before the last neuron")
        x_norm = (
            x_norm.view(steps, batch) if x_norm.numel() == steps * batch else x_norm.view(1, batch).expand(steps, -1)
        )
        scale = self._gain(module) * self._state.pop("bn_scale", 1.0)
        self._state["timesteps"] = float(steps)
        self._state["spikes_per_example"] = float(math.prod(spikes.shape[2:]))
        if probe_kernels.usable(h, module):
            result = probe_kernels.neuron_bound(module, spikes, h, x_norm, float(scale), self.output is not None)
            self._state["w" if self.output is not None else "q"] = result
            return
        sg, coef = self._slopes(module, spikes.float(), h.float())
        sg_norm = sg.flatten(2).norm(dim=2)  # [T, B]
        carry = coef.abs_().flatten(2).amax(dim=2).mul_(module.decay)  # λ·ρ_t, [T, B]
        if self.output is None:
            # q = Σ_t β_t·X_t with β_t = ‖σ'_t‖ + λρ_t·β_{t+1} (backward in time)
            beta = sg_norm[-1]
            q = beta * x_norm[-1]
            for t in range(steps - 2, -1, -1):
                beta = torch.addcmul(sg_norm[t], carry[t], beta)
                q.addcmul_(beta, x_norm[t])
            self._state["q"] = q.mul_(scale)
        else:
            # the upstream bound e_s varies with s, so keep w_s = ‖σ'_s‖·A_s with A_s = X_s + λρ_{s−1}·A_{s−1}
            # (forward in time): Σ_t B_t·X_t = Σ_s e_s·w_s for B_t = e_t‖σ'_t‖ + λρ_t·B_{t+1}
            accumulated = torch.empty_like(x_norm)
            accumulated[0] = x_norm[0]
            for t in range(1, steps):
                accumulated[t] = x_norm[t] + carry[t - 1] * accumulated[t - 1]
            self._state["w"] = scale * sg_norm * accumulated

    @_timed
    def _on_readout(self, module: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        steps = int(self._state.get("timesteps", 1))
        a = inputs[0].detach().float()
        a = a.view(steps, -1, a.shape[-1]) if a.dim() == 2 else a
        area = 1.0
        per_example = float(self._state.get("spikes_per_example", a.shape[-1]))
        if self.pooled and per_example % a.shape[-1] == 0:
            area = per_example / a.shape[-1]
        bias = 1.0 if module.bias is not None else 0.0
        compiled = (
            self.output is None and a.dim() == 3 and probe_kernels.usable(a) and module.weight.dtype == torch.float32
        )
        if compiled:
            rr, c_w = probe_kernels.readout_terms(a, module.weight, bias)
        else:
            c_w = module.weight.detach().float().norm(dim=0).max()
        self._state["c_w"] = c_w / area
        if self.output is None:
            self._state["rr"] = rr if compiled else a.mean(0).square().sum(1) + bias
        else:
            self._state["gram"] = torch.einsum("tbh,sbh->bts", a, a)  # a_t·a_s per example
            self._state["bias"] = torch.full((a.shape[1],), bias, device=a.device)

    @_timed
    def _on_output(self, module: SpikingNeuron, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        """γ_t = k·(src_t + λρ_t·γ_{t+1}) per output neuron, so that ``∂ℓ/∂(W a_t + b) = δ ⊙ γ_t / T``.

        ``src`` is ``σ'(h_t − θ)`` for a rate readout (logits = mean_t s_t) and 1 for a membrane readout
        (logits = mean_t h_t); ``k`` is the neuron's input gain.
        """
        spikes = module.records["spikes"].float()
        h = module.records["membrane"].float()
        sg, coef = self._slopes(module, spikes, h)
        source = torch.ones_like(sg) if getattr(module, "output_membrane", False) else sg
        carry = module.decay * coef
        gamma = torch.empty_like(source)
        gamma[-1] = source[-1]
        for t in range(source.shape[0] - 2, -1, -1):
            gamma[t] = source[t] + carry[t] * gamma[t + 1]
        self._state["gamma"] = (self._gain(module) * gamma.flatten(2)).transpose(0, 1)  # [B, T, C]

    del _timed

    # ------------------------------------------------------------------------- results
    def collect(self) -> dict[str, Tensor]:
        """Per-example pieces of the bound for the last training forward (see :func:`spike_aware_score`)."""
        if self.output is None:
            if "q" not in self._state or "rr" not in self._state:
                return {}
            q, rr = self._state.pop("q"), self._state.pop("rr")
            batch = rr.shape[0]
            return {
                "sadp_q": q,
                "sadp_rr": rr,
                "sadp_cw": torch.as_tensor(self._state["c_w"], dtype=torch.float32).detach().expand(batch).clone(),
                "sadp_t": torch.full((batch,), float(self._state["timesteps"])),
            }
        if "gamma" not in self._state or "w" not in self._state:
            return {}
        gamma, gram, bias = self._state.pop("gamma"), self._state.pop("gram"), self._state.pop("bias")
        batch = gamma.shape[0]
        return {
            "sadp_gamma": gamma,
            "sadp_gram": gram,
            "sadp_bias": bias,
            "sadp_w": self._state.pop("w").transpose(0, 1).contiguous(),  # [B, T]
            "sadp_cw": torch.as_tensor(self._state["c_w"], dtype=torch.float32).detach().expand(batch).clone(),
            "sadp_t": torch.full((batch,), float(self._state["timesteps"])),
        }


def output_error(logits: Tensor, targets: Tensor) -> Tensor:
    """``δ = softmax(z) − onehot(y)`` per example: ``∂ℓ/∂z`` of the cross-entropy."""
    delta = torch.softmax(logits.float(), dim=1)
    delta[torch.arange(len(targets)), targets] -= 1.0
    return delta


def delta_norm(logits: Tensor, targets: Tensor) -> Tensor:
    """``‖softmax(z) − onehot(y)‖`` per example: the output error (the ANN gradient-norm bound)."""
    return output_error(logits, targets).norm(dim=1)


def spike_aware_score(logits: Tensor, targets: Tensor, extras: dict[str, Tensor]) -> Tensor:
    """An upper bound on the per-example gradient norm of the readout and the last hidden synapse.

    Linear readout: ``S = ‖δ‖·sqrt(‖r‖² + 1 + (c_W·q/T)²)``. Spiking readout, with ``u_t = δ ⊙ γ_t``:
    the readout part is exact, ``‖∇_{W,b}‖² = (Σ_{t,s} (u_t·u_s)(a_t·a_s) + [bias]·‖Σ_t u_t‖²) / T²``, and the
    hidden synapse's bound is ``c_W·Σ_s ‖u_s‖·w_s / T``.
    """
    if "sadp_gamma" not in extras:
        second = extras["sadp_cw"] * extras["sadp_q"] / extras["sadp_t"]
        return delta_norm(logits, targets) * torch.sqrt(extras["sadp_rr"] + second.square())
    steps = extras["sadp_t"]
    u = output_error(logits, targets)[:, None, :] * extras["sadp_gamma"]  # [B, T, C]
    readout = (u @ u.transpose(1, 2) * extras["sadp_gram"]).sum((1, 2)) + extras["sadp_bias"] * u.sum(1).square().sum(1)
    second = extras["sadp_cw"] * (u.norm(dim=2) * extras["sadp_w"]).sum(1) / steps
    return torch.sqrt(readout.clamp(min=0) / steps.square() + second.square())

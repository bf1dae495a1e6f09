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
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.snn.neurons import SpikingNeuron

SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d)
POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AvgPool2d)


class SpikeProbe:
    """Find the readout, the last spiking layer and its synapse in ``model``, and hook them."""

    def __init__(self, model: nn.Module) -> None:
        named = list(model.named_modules())
        readouts = [i for i, (_, m) in enumerate(named) if isinstance(m, nn.Linear)]
        neurons = [i for i, (_, m) in enumerate(named) if isinstance(m, SpikingNeuron)]
        if not readouts or not neurons or neurons[-1] > readouts[-1]:
            raise SpikepruneError(
                "SADP needs a model whose last spiking layer feeds a final nn.Linear readout; "
                "use a spikeprune model or add a linear readout"
            )
        r, n = readouts[-1], max(i for i in neurons if i < readouts[-1])
        synapses = [i for i, (_, m) in enumerate(named) if isinstance(m, SYNAPSES) and i < n]
        if not synapses:
            raise SpikepruneError("SADP found no Conv/Linear layer feeding the last spiking layer")
        s = synapses[-1]
        self.readout: nn.Linear = named[r][1]
        self.neuron: SpikingNeuron = named[n][1]
        self.synapse: nn.Module = named[s][1]
        if self.neuron.norm is not None:
            raise SpikepruneError("SADP's bound does not cover membrane norms (MPBN); use norm='tdbn'")
        self.norms = [m for _, m in named[s + 1 : n] if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.pooled = any(isinstance(m, POOLS) for _, m in named[n + 1 : r])
        self.names = {"readout": named[r][0], "neuron": named[n][0], "synapse": named[s][0]}
        self.seconds = 0.0  # time spent in the hooks (scoring overhead)
        self._state: dict[str, Tensor | float] = {}
        self._handles = [
            self.synapse.register_forward_hook(self._on_synapse),
            self.neuron.register_forward_hook(self._on_neuron),
            self.readout.register_forward_hook(self._on_readout),
            *[norm.register_forward_hook(self._on_norm) for norm in self.norms],
        ]
        self.neuron.record = True

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.neuron.record = False

    # ------------------------------------------------------------------------- hooks
    def _timed(hook):
        def wrapper(self, module, inputs, output):
            if not torch.is_grad_enabled():
                return  # evaluation passes are not scored
            started = time.perf_counter()
            with torch.no_grad():
                hook(self, module, inputs, output)
            self.seconds += time.perf_counter() - started

        return wrapper

    @_timed
    def _on_synapse(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        x = inputs[0].detach().float()
        squares = x.flatten(1).square().sum(1)  # ‖x‖² per call row ([T·B] or [B])
        area = math.prod(module.kernel_size) if isinstance(module, (nn.Conv1d, nn.Conv2d)) else 1
        positions = math.prod(output.shape[2:]) if output.dim() > 2 else 1
        bias = positions if module.bias is not None else 0
        self._state["x_norm"] = torch.sqrt(area * squares + bias)
        self._state["bn_scale"] = 1.0

    @_timed
    def _on_norm(self, module: nn.modules.batchnorm._BatchNorm, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        x = inputs[0].detach().float()
        if module.training or module.running_var is None:
            dims = [0, *range(2, x.dim())]
            var = x.var(dim=dims, unbiased=False)
        else:
            var = module.running_var.float()
        gamma = module.weight.detach().float().abs() if module.affine else torch.ones_like(var)
        scale = (gamma / torch.sqrt(var + module.eps)).max()  # stays on the device: no sync per step
        self._state["bn_scale"] = self._state.get("bn_scale", 1.0) * scale

    @_timed
    def _on_neuron(self, module: SpikingNeuron, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        spikes = output.detach().float()
        h = module.records["membrane"].float()
        steps, batch = spikes.shape[:2]
        dist = h - module.v_threshold
        sg = module.surrogate.derivative(dist)
        sg_norm = sg.flatten(2).norm(dim=2)  # [T, B]
        if module.v_reset is None:
            coef = torch.ones_like(sg) if module.detach_reset else 1.0 - module.v_threshold * sg
        else:
            coef = 1.0 - spikes
            if not module.detach_reset:
                coef = coef + (module.v_reset - h) * sg
        rho = coef.abs().flatten(2).amax(dim=2)  # [T, B]
        decay = module.decay
        beta = torch.empty_like(sg_norm)
        beta[-1] = sg_norm[-1]
        for t in range(steps - 2, -1, -1):
            beta[t] = sg_norm[t] + decay * rho[t] * beta[t + 1]
        x_norm = self._state.pop("x_norm", None)
        if x_norm is None:
            raise SpikepruneError(f"SADP probe: synapse {self.names['synapse']} did not run before the last neuron")
        x_norm = x_norm.view(steps, batch) if x_norm.numel() == steps * batch else x_norm.view(1, batch)
        leak = module.leak()
        gain = leak.detach() if isinstance(leak, Tensor) else leak  # PLIF: a learned tensor
        gain = gain if (leak is not None and module.decay_input) else 1.0
        bn_scale = self._state.pop("bn_scale", 1.0)
        self._state["q"] = gain * bn_scale * (beta * x_norm).sum(0)
        self._state["timesteps"] = float(steps)
        self._state["spikes_per_example"] = float(spikes[0, 0].numel())

    @_timed
    def _on_readout(self, module: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        steps = int(self._state.get("timesteps", 1))
        a = inputs[0].detach().float()
        a = a.view(steps, -1, a.shape[-1]) if a.dim() == 2 else a
        rates = a.mean(0)
        area = 1.0
        per_example = float(self._state.get("spikes_per_example", a.shape[-1]))
        if self.pooled and per_example % a.shape[-1] == 0:
            area = per_example / a.shape[-1]
        column_norm = module.weight.detach().float().norm(dim=0).max()
        self._state["rr"] = rates.square().sum(1) + (1.0 if module.bias is not None else 0.0)
        self._state["c_w"] = column_norm / area

    del _timed

    # ------------------------------------------------------------------------- results
    def collect(self) -> dict[str, Tensor]:
        """Per-example pieces of the bound for the last training forward: ``q``, ``rr``, ``c_w``, ``T``."""
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


def delta_norm(logits: Tensor, targets: Tensor) -> Tensor:
    """``‖softmax(z) − onehot(y)‖`` per example: the output error (the ANN gradient-norm bound)."""
    probs = torch.softmax(logits.float(), dim=1)
    probs[torch.arange(len(targets)), targets] -= 1.0
    return probs.norm(dim=1)


def spike_aware_score(logits: Tensor, targets: Tensor, extras: dict[str, Tensor]) -> Tensor:
    """``S = ‖δ‖·sqrt(‖r‖² + 1 + (c_W·q/T)²)``: an upper bound on the per-example gradient norm."""
    second = extras["sadp_cw"] * extras["sadp_q"] / extras["sadp_t"]
    return delta_norm(logits, targets) * torch.sqrt(extras["sadp_rr"] + second.square())

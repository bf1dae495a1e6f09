"""SpikeNM: N:M sparsity learned from scratch (our reading of arXiv 2511.12097; docs/spikenm.md).

Each block of M weights has M logits ``π`` (O(M) parameters per block, not one per feasible mask).
The mask is drawn from the block scores ``a = π + β·z(|W|)``: the learned logits plus a magnitude
prior, ``z`` standardising the block's current magnitudes (``β = magnitude_prior``; ``β = 0`` leaves
the logits alone). The logits thus learn a correction to "keep the large weights", and the mask keeps
following the weights as they train, as SR-STE's does; without it the masks settled in the first
epochs and SpikeNM trailed SR-STE at every pattern (docs/spikenm.md has the ablation). In every
training forward pass a differentiable top-N sampler draws N distinct positions:

* **Hard mask** ``h``: Gumbel-top-N on ``a / τ``, so exactly N ones per block. This is a sample of N
  positions without replacement from ``softmax(a / τ)``.
* **Relaxed mask** ``s``: N successive softmaxes of the same Gumbel-perturbed keys, each pushed down
  where the previous picks landed.
* **Mask used:** ``m = h + s − stop_grad(s)``. It is binary in the forward pass, and its gradient
  reaches ``π``.
* **Weights:** with ``dense_gradient`` (default) every weight gets the gradient of ``W ⊙ m``,
  kept or not (as SR-STE does), so unsampled synapses keep learning and their score ``g·W`` stays
  informative.

The temperature anneals geometrically from ``tau_start`` to ``tau_end``. It scales the sampling
distribution itself, not only the relaxation: early blocks explore, and as ``τ`` falls the sampled
mask concentrates on ``top-N(a)``, the mask used for evaluation and deployment, so the weights end
training adapted to the mask they will keep. The logits have their own learning rate and no weight
decay. The last ``freeze_epochs`` may train the weights with the deployed mask fixed.

**EID** (eligibility-inspired distillation) gives each synapse a credit, an EMA of
``|W_ij|·Σ_t ε_{j,t} ψ_{i,t}``. Here ``ε_{j,t} = λ ε_{j,t−1} + x_{j,t}`` is the presynaptic trace and
``ψ_{i,t} = σ'(h_{i,t} − θ)`` the postsynaptic surrogate derivative; for convolutions the credit is
summed over positions (a weight-gradient-shaped computation). Per block, ``q_b = softmax(c_b / T_q)``
(credits normalised by their layer mean), and the loss ``λ_EID · mean_b KL(q_b ‖ softmax(π_b))``
pulls the base distribution ``softmax(π)`` (which ``τ`` then sharpens) towards synapses with high
eligibility. The credits are refreshed every ``eid_every`` steps, a measured cheaper proxy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.snn.neurons import SpikingNeuron
from spikeprune.sparsity.base import Sparsifier
from spikeprune.sparsity.masks import MaskHook, apply_mask, refresh
from spikeprune.sparsity.nm import check_nm, from_blocks, mask_flip_rate, nm_blocks, nm_layers, topn_block_mask


def gumbel_topn(logits: Tensor, n: int, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """Straight-through top-N sample per block (last dim): binary forward, relaxed gradient to ``logits``.

    The hard mask is N positions drawn without replacement from ``softmax(logits / tau)`` (Gumbel
    top-N of ``logits / tau``); the relaxation is N successive softmaxes of the same perturbed keys.
    """
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = uniform.clamp_(1e-20, 1.0).log_().neg_().clamp_min_(1e-20).log_().neg_()
    keys = logits / tau + gumbel
    hard = topn_block_mask(keys.detach(), n)
    # On CPU a softmax over a short last dimension is several times slower than over a leading one
    # (measured: ~8x at M=4); from M=16 on the transpose costs more than it saves.
    leading = keys.shape[-1] < 16 and keys.device.type == "cpu"
    scores = keys.movedim(-1, 0).contiguous() if leading else keys
    dim = 0 if leading else -1
    soft = torch.zeros_like(scores)
    for pick in range(n):
        p = torch.softmax(scores, dim=dim)
        soft = soft + p
        if pick < n - 1:
            scores = scores + torch.log1p(-p.clamp(max=1.0 - 1e-6))
    if leading:
        soft = soft.movedim(0, -1)
    return hard + (soft - soft.detach())  # x - x is exactly 0: the forward value is exactly binary


class _SampledNMMask(MaskHook):
    """Forward pre-hook of a SpikeNM layer: a sampled mask while learning, else the deployed ``weight_mask``.

    ``weight_mask`` holds ``top-N(a)`` as of the last epoch end (or the fixed mask once frozen), so
    evaluation, a reloaded checkpoint and ``finalize`` all use the same mask.
    """

    def __init__(self, n: int, m: int, dense_gradient: bool, prior: float) -> None:
        self.n, self.m, self.dense_gradient, self.prior = n, m, dense_gradient, prior

    def __call__(self, module: nn.Module, inputs) -> None:
        weight = module.weight_orig
        if not (module.training and torch.is_grad_enabled()) or module.nm_frozen:
            module.weight = weight * module.weight_mask
            return
        scores = block_scores(module, module.__dict__.get("nm_prior", self.prior))
        mask = from_blocks(gumbel_topn(scores, self.n, module.nm_tau), weight.shape)
        if self.dense_gradient:  # value w·m; gradient g to every weight, g·w to the mask
            module.weight = weight.detach() * mask + (weight - weight.detach())
        else:
            module.weight = weight * mask

    def cleanup(self, module: nn.Module) -> None:
        """Deployment keeps the top-N(a) mask (written to ``weight_mask`` here) and drops the logits."""
        _deploy(module, self.n, self.prior)
        module._parameters.pop("nm_logits", None)
        for name in ("nm_tau", "nm_frozen", "nm_prior"):
            module.__dict__.pop(name, None)


class SpikeNM(Sparsifier):
    """Learned N:M masks (see module docstring). ``eid_weight=0`` turns EID off."""

    def __init__(
        self,
        n: int,
        m: int,
        *,
        tau_start: float = 0.3,
        tau_end: float = 0.03,
        logit_lr: float = 0.05,
        magnitude_prior: float = 3.0,
        prior_start: float | None = None,
        init: str = "magnitude",
        freeze_epochs: int = 0,
        eid_weight: float = 0.0,
        eid_temperature: float = 1.0,
        eid_ema: float = 0.9,
        eid_every: int = 4,
        dense_gradient: bool = True,
    ) -> None:
        check_nm(n, m)
        if not (tau_start > 0 and tau_end > 0 and logit_lr > 0 and eid_every >= 1 and 0 <= eid_ema < 1):
            raise SpikepruneError("SpikeNM needs positive temperatures and logit_lr, eid_every >= 1, eid_ema in [0, 1)")
        if not magnitude_prior >= 0 or (prior_start is not None and not prior_start >= 0):
            raise SpikepruneError(
                f"SpikeNM magnitude_prior and prior_start must be >= 0 (0 turns the prior off), got "
                f"{magnitude_prior} and {prior_start}"
            )
        if init not in ("magnitude", "uniform"):
            raise SpikepruneError(f"SpikeNM init must be 'magnitude' or 'uniform', got {init!r}")
        self.n, self.m = n, m
        self.tau_start, self.tau_end, self.logit_lr, self.init = tau_start, tau_end, logit_lr, init
        self.magnitude_prior = float(magnitude_prior)
        self.prior_start = None if prior_start is None else float(prior_start)
        self.prior = self.magnitude_prior if self.prior_start is None else self.prior_start  # this epoch's β
        self.freeze_epochs = int(freeze_epochs)
        self.dense_gradient = bool(dense_gradient)
        self.eid_weight, self.eid_temperature, self.eid_ema, self.eid_every = (
            eid_weight,
            eid_temperature,
            eid_ema,
            eid_every,
        )
        self.layers: list[tuple[str, nn.Module]] = []
        self.credits: dict[str, Tensor] = {}
        self._targets: dict[str, tuple[Tensor, Tensor]] = {}  # (q, log q) per layer, from the credits
        self._eid_inputs: dict[str, Tensor] = {}
        self._post: dict[str, SpikingNeuron] = {}
        self._between: dict[str, list[nn.Module]] = {}  # pooling/flattening between a layer and its neuron
        self._steps = 0
        self._start: dict[str, Tensor] = {}
        self.tau = tau_start

    # ------------------------------------------------------------------------- setup
    def attach(self, model: nn.Module) -> None:
        self.layers = nm_layers(model, self.m, "dense")
        for _, module in self.layers:
            weight = module.weight_orig if hasattr(module, "weight_orig") else module.weight
            blocks = nm_blocks(weight.detach(), self.m)
            if self.init == "magnitude":  # logits ∝ standardised |w| per block: a warm start, still learnable
                logits = _standardize(blocks.abs())
            else:
                logits = torch.zeros_like(blocks)
            if "nm_logits" not in module._parameters:
                module.register_parameter("nm_logits", nn.Parameter(logits.clone()))
            module.nm_tau = self.tau
            module.nm_frozen = False
            scores = block_scores(module, self.magnitude_prior, weight)
            deployed = from_blocks(topn_block_mask(scores, self.n), weight.shape)
            hook = _SampledNMMask(self.n, self.m, self.dense_gradient, self.magnitude_prior)
            apply_mask(module, deployed, hook=hook)
        if self.eid_weight > 0:
            self._attach_eid(model)

    def _attach_eid(self, model: nn.Module) -> None:
        order = list(model.named_modules())
        position = {name: i for i, (name, _) in enumerate(order)}
        for name, module in self.layers:
            start = position[name] + 1
            after = [i for i, (_, m) in enumerate(order[start:], start) if isinstance(m, SpikingNeuron)]
            if not after:
                continue  # the readout has no postsynaptic spiking neuron: no eligibility
            between = [(n, m) for n, m in order[start : after[0]] if not list(m.children())]
            if any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) for _, m in between):
                continue  # it reaches a neuron only through code the module order does not show (a shortcut)
            reshaping = []
            for child_name, child in between:
                if isinstance(child, RESHAPING):
                    reshaping.append(child)
                elif not isinstance(child, ELEMENTWISE):
                    raise SpikepruneError(
                        f"EID cannot carry the eligibility of {order[after[0]][0]} back to layer {name} through "
                        f"{child_name} ({type(child).__name__}); use eid_weight=0 for this model"
                    )
            self._post[name] = order[after[0]][1]
            self._post[name].record = True
            self._between[name] = reshaping
            module.register_forward_hook(_CaptureInput(self._eid_inputs, name, keep_output=bool(reshaping)))

    def param_groups(self) -> list[dict[str, Any]]:
        logits = [module.nm_logits for _, module in self.layers]
        return [{"params": logits, "lr": self.logit_lr, "base_lr": self.logit_lr, "weight_decay": 0.0}]

    # ------------------------------------------------------------------------- schedule
    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        progress = epoch / max(epochs - 1, 1)
        self.tau = self.tau_start * (self.tau_end / self.tau_start) ** progress
        if self.prior_start is not None:  # a weaker prior early lets the masks explore, then β takes over
            self.prior = self.prior_start + (self.magnitude_prior - self.prior_start) * progress
        frozen = epoch >= epochs - self.freeze_epochs
        for _, module in self.layers:
            module.nm_tau = self.tau
            module.nm_prior = self.prior
            if frozen and epoch == epochs - self.freeze_epochs:  # a resumed run keeps its checkpointed mask
                _deploy(module, self.n, self.prior)  # not frozen yet: fixes top-N(a) as the weights stand
            module.nm_frozen = frozen
            module.nm_logits.requires_grad_(not frozen)
        self._start = {name: module.weight_mask.clone() for name, module in self.layers}

    # ------------------------------------------------------------------------- EID
    def regularization(self) -> Tensor | None:
        if self.eid_weight <= 0 or not self._targets:
            return None
        terms = []
        for name, module in self.layers:
            if name not in self._targets:
                continue
            q, log_q = self._targets[name]  # (M, out, blocks): see _refresh_target
            log_p = torch.log_softmax(module.nm_logits.movedim(-1, 0), dim=0)
            terms.append((q * (log_q - log_p)).sum() / q[0].numel())  # mean over blocks of KL(q_b ‖ p_b)
        return self.eid_weight * torch.stack(terms).mean() if terms else None

    @torch.no_grad()
    def _refresh_target(self, name: str) -> None:
        """Soft targets ``q_b = softmax(c_b / (T_q · mean c))``, kept between credit updates.

        Stored with the block position first: on CPU, (log-)softmaxes over a short last dimension
        are several times slower than over a leading one.
        """
        credit = self.credits[name]
        log_q = torch.log_softmax(credit.movedim(-1, 0) / (self.eid_temperature * (credit.mean() + 1e-12)), dim=0)
        self._targets[name] = (log_q.exp(), log_q)

    @torch.no_grad()
    def _update_credits(self) -> None:
        for name, module in self.layers:
            captured = self._eid_inputs.pop(name, None)
            neuron = self._post.get(name)
            if captured is None or neuron is None or "membrane" not in neuron.records:
                continue
            x, z = captured
            h = neuron.records["membrane"]
            steps, batch = h.shape[:2]
            psi = neuron.surrogate.derivative(h.float() - neuron.v_threshold).flatten(0, 1)
            x = x.float()
            per_step = x.shape[0] == steps * batch
            x = x.reshape(steps, batch, *x.shape[1:]) if per_step else x.unsqueeze(0).expand(steps, *x.shape)
            if self._between[name]:  # ψ lives after the pooling: route it back to the layer's output
                psi = _route_back(self._between[name], z, psi, steps, per_step)
            trace = torch.empty_like(x)
            running = torch.zeros_like(x[0])
            for t in range(steps):
                running = neuron.decay * running + x[t]
                trace[t] = running
            credit = _eligibility(module, trace.flatten(0, 1), psi) * module.weight_orig.abs()
            blocks = nm_blocks(credit, self.m)
            previous = self.credits.get(name)
            self.credits[name] = blocks if previous is None else self.eid_ema * previous + (1 - self.eid_ema) * blocks
            self._refresh_target(name)

    # ------------------------------------------------------------------------- steps
    @torch.no_grad()
    def after_step(self) -> None:
        self._steps += 1
        if self.eid_weight > 0 and self._steps % self.eid_every == 0:
            self._update_credits()
        self._eid_inputs.clear()

    def on_epoch_end(self) -> None:
        """Write ``top-N(a)`` to ``weight_mask`` once per epoch: forward passes read the scores directly."""
        for _, module in self.layers:
            _deploy(module, self.n, self.prior)

    def epoch_metrics(self) -> dict[str, float]:
        """Deployed-mask flip rate; entropies of ``softmax(a / τ)`` (what is sampled) and of ``softmax(π)``."""
        sampled, base = [], []
        for _, module in self.layers:
            with torch.no_grad():
                sampled.append(_entropy(block_scores(module, self.prior) / self.tau))
            base.append(_entropy(module.nm_logits.detach()))
        count = max(len(self.layers), 1)
        return {
            "mask_flip_rate": mask_flip_rate(self._start, self.layers),
            "sampling_entropy": sum(sampled) / count,
            "logit_entropy": sum(base) / count,
            "max_entropy": math.log(self.m),
            "tau": self.tau,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"credits": dict(self.credits), "steps": self._steps, "start": dict(self._start)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.credits = dict(state.get("credits", {}))
        self._start = dict(state.get("start", {}))  # the epoch's starting masks, for a resume inside it
        self._targets = {}
        for name in self.credits:
            self._refresh_target(name)
        self._steps = int(state.get("steps", 0))


def block_scores(module: nn.Module, prior: float, weight: Tensor | None = None) -> Tensor:
    """``a = π + β·z(|W|)``, shaped ``(out, blocks, M)``: what the mask is sampled from and deployed by."""
    logits = module.nm_logits
    if prior == 0:
        return logits
    weight = module.weight_orig if weight is None else weight
    return logits + prior * _standardize(nm_blocks(weight.detach().abs(), logits.shape[-1]))


def _standardize(blocks: Tensor) -> Tensor:
    """Zero mean, unit spread within each block: the prior's scale is the same in every layer.

    Written with ``mean`` only: ``Tensor.std`` over a short last dimension is ~30x slower on CPU.
    """
    centred = blocks - blocks.mean(-1, keepdim=True)
    spread = (centred.square().sum(-1, keepdim=True) / max(blocks.shape[-1] - 1, 1)).sqrt()
    return centred / (spread + 1e-8)


@torch.no_grad()
def _deploy(module: nn.Module, n: int, prior: float) -> None:
    """Store the deployed mask ``top-N(a)`` in ``weight_mask`` and the visible ``weight`` (kept once frozen)."""
    if "nm_logits" in module._parameters and not module.__dict__.get("nm_frozen", False):
        scores = block_scores(module, prior)
        module.weight_mask.copy_(from_blocks(topn_block_mask(scores, n), module.weight_orig.shape))
        refresh(module)


def _entropy(logits: Tensor) -> float:
    """Mean entropy (nats) of the per-block softmax."""
    p = torch.softmax(logits, dim=-1)
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean())


class _CaptureInput:
    """Forward hook keeping a layer's (detached) input, and output when asked, for the next EID update."""

    def __init__(self, store: dict[str, Any], name: str, keep_output: bool = False) -> None:
        self.store, self.name, self.keep_output = store, name, keep_output

    def __call__(self, module: nn.Module, inputs, output) -> None:
        if module.training and torch.is_grad_enabled():
            self.store[self.name] = (inputs[0].detach(), output.detach() if self.keep_output else None)


# Between a synapse and its neuron, EID carries ψ back through pooling and flattening (what reshapes the
# synapse's output) and passes elementwise modules (norms, dropout) as if they were not there.
RESHAPING = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
)
ELEMENTWISE = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Identity)


def _route_back(modules: list[nn.Module], output: Tensor, psi: Tensor, steps: int, per_step: bool) -> Tensor:
    """ψ at the layer's output: the vector-Jacobian product of the pooling/flattening chain with ψ.

    Max pooling sends each ψ to the position that won the max; average pooling spreads it over the
    window; flattening only reshapes. The layer's output is ``[T·B, ...]`` or, for a stem that runs
    once under direct encoding, ``[B, ...]`` (the same every step).
    """
    z = output.float()
    if not per_step:
        z = z.unsqueeze(0).expand(steps, *z.shape).flatten(0, 1)
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        y = z
        for module in modules:
            y = module(y)
        (routed,) = torch.autograd.grad(y, z, grad_outputs=psi.reshape(y.shape))
    return routed


def _eligibility(module: nn.Module, trace: Tensor, psi: Tensor) -> Tensor:
    """``Σ_{samples, positions} ψ_out · trace_in``, shaped like the weight."""
    weight = module.weight_orig
    if isinstance(module, nn.Linear):
        return psi.reshape(-1, psi.shape[-1]).t() @ trace.reshape(-1, trace.shape[-1])
    if isinstance(module, nn.Conv2d):
        return torch.nn.grad.conv2d_weight(
            trace, weight.shape, psi, module.stride, module.padding, module.dilation, module.groups
        )
    return torch.nn.grad.conv1d_weight(
        trace, weight.shape, psi, module.stride, module.padding, module.dilation, module.groups
    )

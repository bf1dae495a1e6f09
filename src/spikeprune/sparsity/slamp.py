"""SLAMP: spiking layer-adaptive magnitude pruning (our reading of arXiv 2603.14946; docs/slamp.md).

Pruning layer ``l`` by ``ΔW`` perturbs the membrane it drives by the leaky accumulation of the same
perturbation over time, ``Δu_t = Σ_{k≤t} λ^{t−k} ΔW x_k``. The worst case over time therefore grows
with the temporal accumulation of the layer's input. The factor

    ρ_l = max_t ‖Σ_{k≤t} λ^{t−k} x_{l,k}‖ / max_t ‖x_{l,t}‖      (= 1 when T = 1)

measures it. It is computed per example on a few calibration batches and averaged. ``λ`` is the
decay of the spiking layer that ``l`` feeds; the readout accumulates over T (its mean), so it uses
``λ = 1``. SLAMP's score is ``ρ_l^p · LAMP_l(u)`` (``p = 2`` by default: LAMP scores are squared
magnitudes), followed by LAMP's global threshold. With T = 1 every ``ρ_l = 1`` and SLAMP's masks
are exactly LAMP's.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.snn.neurons import SpikingNeuron
from spikeprune.sparsity.unstructured import scaled_lamp


def downstream_decays(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> dict[str, float]:
    """λ of the first spiking neuron after each layer in registration order (1.0 for the readout)."""
    order = list(model.named_modules())
    position = {name: i for i, (name, _) in enumerate(order)}
    decays = {}
    for name, _ in layers:
        after = [m for _, m in order[position[name] + 1 :] if isinstance(m, SpikingNeuron)]
        decays[name] = after[0].decay if after else 1.0
    return decays


@torch.no_grad()
def temporal_factors(
    model: nn.Module, batches: Iterable[Tensor], layers: list[tuple[str, nn.Module]], timesteps: int | None = None
) -> dict[str, float]:
    """ρ_l for each of ``layers`` from forward passes over ``batches`` (model inputs, static or [T, B, ...])."""
    steps = int(timesteps if timesteps is not None else getattr(model, "timesteps", 1))
    decays = downstream_decays(model, layers)
    sums = {name: 0.0 for name, _ in layers}
    counts = {name: 0 for name, _ in layers}
    batch_size = {"B": 0}

    def on_model(module, inputs):
        x, shape = inputs[0], getattr(module, "input_shape", None)
        batch_size["B"] = x.shape[1] if shape is not None and x.dim() == len(shape) + 2 else x.shape[0]

    def on_layer(name: str):
        def hook(module, inputs, output):
            x = inputs[0].detach().double()
            b = batch_size["B"]
            if x.shape[0] == steps * b:
                seq = x.reshape(steps, b, -1)
            elif x.shape[0] == b:
                seq = x.reshape(1, b, -1).expand(steps, b, -1)
            else:
                raise SpikepruneError(
                    f"SLAMP calibration: layer {name} saw {x.shape[0]} rows, expected {b} or {steps * b}"
                )
            accumulated = torch.zeros_like(seq[0])
            worst_accumulated = torch.zeros(b, dtype=torch.float64)
            for t in range(steps):
                accumulated = decays[name] * accumulated + seq[t]
                worst_accumulated = torch.maximum(worst_accumulated, accumulated.norm(dim=1))
            worst_single = seq.norm(dim=2).amax(0)
            active = worst_single > 0
            sums[name] += float((worst_accumulated[active] / worst_single[active]).sum())
            counts[name] += int(active.sum())

        return hook

    handles = [model.register_forward_pre_hook(on_model)]
    handles += [module.register_forward_hook(on_layer(name)) for name, module in layers]
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {name: (sums[name] / counts[name] if counts[name] else 1.0) for name, _ in layers}


def slamp(
    weights: dict[str, Tensor], sparsity: float, factors: dict[str, float], power: float = 2.0
) -> dict[str, Tensor]:
    """SLAMP masks: LAMP scores scaled by ``ρ_l ** power``, one global threshold, exact target."""
    missing = sorted(set(weights) - set(factors))
    if missing:
        raise SpikepruneError(f"SLAMP has no temporal factor for layers {missing}; calibrate them first")
    return scaled_lamp(weights, sparsity, factors, power)

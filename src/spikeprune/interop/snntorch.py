"""snnTorch neurons behind spikeprune's neuron interface.

Supported: ``snntorch.Leaky`` and ``snntorch.Synaptic`` (with ``init_hidden=True``, the form that
fits an ``nn.Sequential``; without it the adapter works the same way), any ``spike_grad``,
reset mechanisms ``subtract``, ``zero`` and ``none``, the default ``reset_delay=True``.

snnTorch neurons are single-step: the adapter calls the neuron once per step of ``[T, B, ...]``
and stacks the spikes. The neuron is put at rest before and after every call (its state buffers
are emptied, as in a new neuron; snnTorch then starts from zeros). With the default delayed reset,
``neuron.mem`` after a step is the potential the spike was fired from (``h_t``; the reset is
applied at the next step), which is what is recorded.

How snnTorch's dynamics read in spikeprune's terms (``h_t = β·v_{t−1} + x_t``, spike
``Θ(h_t − θ)``): decay ``λ = β`` (the largest β when it is per-neuron), leak ``1 − β``, no input
scaling (``decay_input=False``). ``subtract`` is a soft reset, ``zero`` a hard reset to 0, ``none``
behaves like a soft reset whose reset path carries no gradient. snnTorch always detaches the reset
(``mem_reset`` returns a detached tensor), so ``detach_reset=True``. For ``Synaptic`` the synaptic
current filter ``α`` is a second state that these single-compartment figures do not see: SADP's
bound and SLAMP's temporal factor use the membrane decay ``β`` only (an approximation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.interop.base import ForeignNeuron


def supported_types() -> tuple[type[nn.Module], ...]:
    import snntorch

    return (snntorch.Leaky, snntorch.Synaptic)


def is_neuron(module: nn.Module) -> bool:
    """Any snnTorch spiking-neuron module (supported or not)."""
    if not type(module).__module__.startswith("snntorch."):
        return False
    import snntorch

    return isinstance(module, snntorch.SpikingNeuron)


class SnnTorchNeuron(ForeignNeuron):
    """Adapter for an snnTorch ``Leaky`` or ``Synaptic`` neuron."""

    framework = "snntorch"

    def __init__(self, neuron: nn.Module) -> None:
        name = type(neuron).__name__
        if getattr(neuron, "inhibition", False):
            raise SpikepruneError(f"snnTorch {name} with inhibition=True is not supported; set inhibition=False")
        if not getattr(neuron, "reset_delay", True):
            raise SpikepruneError(
                f"snnTorch {name} with reset_delay=False is not supported (its membrane before the reset "
                "is not observable); use the default reset_delay=True"
            )
        super().__init__(neuron)

    def spike_function(self) -> Callable[[Tensor], Tensor]:
        # fire(mem) = spike_grad(mem − threshold) · graded_spikes_factor: shift back to get σ(h − θ)
        return lambda z: self.neuron.fire(z + self.neuron.threshold)

    def reset_state(self) -> None:
        # reset_mem() would keep zeros of the last batch's shape; empty state buffers (what a new
        # neuron has) start the next call from zero just the same and keep the footprint the model's own
        for name in ("syn", "mem"):
            state = getattr(self.neuron, name, None)
            if isinstance(state, Tensor):
                setattr(self.neuron, name, state.new_zeros(0).detach())

    @property
    def v_threshold(self) -> float | Tensor:
        threshold = self.neuron.threshold.detach()
        return float(threshold) if threshold.numel() == 1 else threshold

    @property
    def v_reset(self) -> float | None:
        return 0.0 if self.neuron.reset_mechanism == "zero" else None

    @property
    def detach_reset(self) -> bool:
        return True

    @property
    def decay_input(self) -> bool:
        return False

    def leak(self) -> float:
        return 1.0 - self.decay

    @property
    def decay(self) -> float:
        return float(self.neuron.beta.detach().clamp(0, 1).max())

    def run(self, x_seq: Tensor) -> tuple[Tensor, Tensor | None]:
        spikes, membranes = [], []
        keep = self.record or self.output_membrane
        for x in x_seq:
            out = self.neuron(x)
            spikes.append(out[0] if isinstance(out, tuple) else out)
            if keep:
                membranes.append(self.neuron.mem if self.output_membrane else self.neuron.mem.detach())
        return torch.stack(spikes), (torch.stack(membranes) if keep else None)

"""SpikingJelly neurons (``spikingjelly.activation_based``) behind spikeprune's neuron interface.

Supported: ``neuron.LIFNode``, ``neuron.IFNode`` and ``neuron.ParametricLIFNode``, in multi-step
(``step_mode='m'``) or single-step (``'s'``) mode, with any of SpikingJelly's surrogates. Their
equations are spikeprune's own (``spikeprune.snn.neurons`` follows SpikingJelly's conventions):
leak ``1/τ`` (``sigmoid(w)`` for PLIF, none for IF), ``decay_input``, hard reset to ``v_reset`` or
soft reset (``v_reset=None``), ``detach_reset``.

The surrogate derivative spikeprune reads is that of the neuron's own ``surrogate_function``:
closed-form for ``ATan`` and ``Sigmoid`` (the same formulas as spikeprune's), by autograd through
the function for every other surrogate.

The neuron runs unchanged, with SpikingJelly's own kernels: a multi-step neuron gets the whole
sequence, a single-step one is called once per step. It is reset (``neuron.reset()``, what
``functional.reset_net`` does) before and after every call. When spikeprune asks for the membrane,
the pre-reset potential ``h`` is replayed from the input and the neuron's own spikes with the same
equations (no gradient; at most rounding-level differences from SpikingJelly's kernel).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.interop.base import ForeignNeuron, FrameworkSurrogate
from spikeprune.snn.neurons import _charge, _reset
from spikeprune.snn.surrogate import ATan, Sigmoid, Surrogate


def supported_types() -> tuple[type[nn.Module], ...]:
    from spikingjelly.activation_based import neuron

    return (neuron.LIFNode, neuron.IFNode, neuron.ParametricLIFNode)


def is_neuron(module: nn.Module) -> bool:
    """Any SpikingJelly spiking-neuron module (supported or not)."""
    if not type(module).__module__.startswith("spikingjelly."):
        return False
    from spikingjelly.activation_based import neuron

    bases = tuple(
        getattr(neuron, name) for name in ("BaseNode", "SimpleBaseNode", "NonSpikingBaseNode") if hasattr(neuron, name)
    )
    return isinstance(module, bases) or type(module).__module__.startswith("spikingjelly.activation_based.neuron")


def _closed_form(spike_fn: nn.Module) -> Surrogate | None:
    """SpikingJelly's ``ATan``/``Sigmoid`` are spikeprune's (same formulas): a closed form, ~3x faster
    than differentiating the function, for the hooks that evaluate σ' on every training step."""
    from spikingjelly.activation_based import surrogate

    ours = {surrogate.ATan: ATan, surrogate.Sigmoid: Sigmoid}.get(type(spike_fn))
    if ours is None or not getattr(spike_fn, "spiking", False):
        return None
    return ours(float(spike_fn.alpha))


class SpikingJellyNeuron(ForeignNeuron):
    """Adapter for a SpikingJelly ``LIFNode``, ``IFNode`` or ``ParametricLIFNode``."""

    framework = "spikingjelly"

    def spike_function(self) -> Callable[[Tensor], Tensor]:
        return self.neuron.surrogate_function

    @property
    def surrogate(self) -> Surrogate | FrameworkSurrogate:
        return _closed_form(self.neuron.surrogate_function) or FrameworkSurrogate(self.spike_function())

    def reset_state(self) -> None:
        self.neuron.reset()

    @property
    def v_threshold(self) -> float:
        return float(self.neuron.v_threshold)

    @property
    def v_reset(self) -> float | None:
        return None if self.neuron.v_reset is None else float(self.neuron.v_reset)

    @property
    def detach_reset(self) -> bool:
        return bool(self.neuron.detach_reset)

    @property
    def decay_input(self) -> bool:
        return bool(getattr(self.neuron, "decay_input", True))

    def leak(self) -> Tensor | float | None:
        from spikingjelly.activation_based import neuron

        if isinstance(self.neuron, neuron.IFNode):
            return None
        if isinstance(self.neuron, neuron.ParametricLIFNode):
            return torch.sigmoid(self.neuron.w)
        return 1.0 / float(self.neuron.tau)

    def run(self, x_seq: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.output_membrane:
            raise SpikepruneError(
                "readout='membrane' is not supported for SpikingJelly neurons (spikeprune replays their membrane "
                "without gradient); end the network with a Linear readout, or use the spike-rate readout"
            )
        if self.neuron.step_mode == "m":
            spikes = self.neuron(x_seq)
        else:
            spikes = torch.stack([self.neuron(x) for x in x_seq])
        return spikes, (self._replay(x_seq, spikes) if self.record else None)

    @torch.no_grad()
    def _replay(self, x_seq: Tensor, spikes: Tensor) -> Tensor:
        """The charged membrane ``h_t`` of every step, given the inputs and the neuron's spikes."""
        dyn = self._dynamics()
        k = self.leak()
        k = 0.0 if k is None else (k.detach() if isinstance(k, Tensor) else k)
        x_seq = x_seq.detach()
        h_seq = torch.empty_like(x_seq, memory_format=torch.contiguous_format)
        v: Tensor | float = dyn.v_rest
        for t in range(x_seq.shape[0]):
            h = _charge(v, x_seq[t], k, dyn, out=h_seq[t])
            v = _reset(h, spikes[t].detach().to(h.dtype), dyn)
        return h_seq

"""Record synaptic work and spikes of a model with forward hooks, without keeping activations.

Hooks exist only inside ``with record_activity(model) as rec:``; outside it the model runs untouched.
Each hook turns its call into a handful of integer counts right away (on the tensor's device, no
host synchronisation) and adds them to running totals, so memory does not grow with the data.

Counts are summed over every call; per-sample figures divide by the number of samples the caller
reports with :meth:`ActivityRecorder.add_samples`. A layer inside ``PerStep`` sees ``[T·B, ...]``
and so contributes T steps per sample; a stem layer under direct encoding sees ``[B, ...]`` once
and is counted once per sample, because that is all the work it does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.metrics.synops import OpCounts, _count_tensor, synaptic_layers
from spikeprune.models.base import is_recomputing
from spikeprune.snn.neurons import SpikingNeuron


@dataclass(frozen=True)
class NeuronCounts:
    """Spike totals of one neuron layer over all recorded calls."""

    calls: int
    neurons: int  # per time step and sample (last call's shape)
    timesteps: int  # T of the last call
    elements: int  # neuron·step·sample slots seen
    spikes: int

    @property
    def firing_rate(self) -> float:
        """Spikes per neuron per step: spikes / (neurons·T·samples)."""
        return self.spikes / self.elements if self.elements else 0.0


class ActivityRecorder:
    """Context manager that hooks every synaptic layer and spiking neuron of ``model``."""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise SpikepruneError(f"record_activity needs an nn.Module, got {type(model).__name__}")
        self.model = model
        self.samples = 0
        self._layers = dict(synaptic_layers(model))
        self._neurons = {name: m for name, m in model.named_modules() if isinstance(m, SpikingNeuron)}
        self._layer_sums: dict[str, Tensor | None] = dict.fromkeys(self._layers)
        self._layer_calls = dict.fromkeys(self._layers, 0)
        self._neuron_sums: dict[str, Tensor | None] = dict.fromkeys(self._neurons)
        self._neuron_calls = dict.fromkeys(self._neurons, 0)
        self._neuron_shape = dict.fromkeys(self._neurons, (0, 0))
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    # --- context ------------------------------------------------------------------------------
    def __enter__(self) -> ActivityRecorder:
        if self._handles:
            raise SpikepruneError("this recorder is already active; open a new record_activity(model) instead")
        try:
            for name, layer in self._layers.items():
                self._handles.append(layer.register_forward_hook(self._layer_hook(name)))
            for name, neuron in self._neurons.items():
                self._handles.append(neuron.register_forward_hook(self._neuron_hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove all hooks (idempotent); the totals stay readable."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # --- hooks --------------------------------------------------------------------------------
    def _layer_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if not inputs or not isinstance(inputs[0], Tensor) or is_recomputing():
                return  # a checkpointed block's second forward is not another sample
            counts = _count_tensor(module, inputs[0])
            total = self._layer_sums[name]
            self._layer_sums[name] = counts if total is None else total + counts.to(total.device)
            self._layer_calls[name] += 1

        return hook

    def _neuron_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if not isinstance(output, Tensor) or output.dim() < 2 or is_recomputing():
                return
            with torch.no_grad():
                spikes = torch.count_nonzero(output).reshape(1)
                counts = torch.cat([spikes.new_tensor([output.numel()]), spikes])
            total = self._neuron_sums[name]
            self._neuron_sums[name] = counts if total is None else total + counts.to(total.device)
            self._neuron_calls[name] += 1
            self._neuron_shape[name] = (output[0, 0].numel(), output.shape[0])

        return hook

    # --- results ------------------------------------------------------------------------------
    def add_samples(self, n: int) -> None:
        """Report that ``n`` more samples (the true batch size B, not T·B) went through the model."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SpikepruneError(f"add_samples needs a non-negative int batch size, got {n!r}")
        self.samples += n

    @property
    def layers(self) -> dict[str, OpCounts]:
        """Exact totals per synaptic layer name (layers never called have zero counts)."""
        result = {}
        for name, total in self._layer_sums.items():
            values = [0] * 6 if total is None else [int(v) for v in total.tolist()]
            result[name] = OpCounts(self._layer_calls[name], *values)
        return result

    @property
    def neurons(self) -> dict[str, NeuronCounts]:
        """Spike totals per neuron layer name."""
        result = {}
        for name, total in self._neuron_sums.items():
            elements, spikes = (0, 0) if total is None else (int(v) for v in total.tolist())
            neurons, steps = self._neuron_shape[name]
            result[name] = NeuronCounts(self._neuron_calls[name], neurons, steps, elements, spikes)
        return result


def record_activity(model: nn.Module) -> ActivityRecorder:
    """Hook ``model`` for the duration of a ``with`` block; call ``add_samples(B)`` once per batch."""
    return ActivityRecorder(model)

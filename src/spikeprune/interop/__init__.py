"""Use SpikingJelly and snnTorch models with spikeprune, and export spikeprune models to NIR.

``adapt(model)`` replaces each SpikingJelly or snnTorch neuron by an adapter that presents
spikeprune's neuron interface (:class:`ForeignNeuron`), and makes the model's ``nn.Sequential``
containers run a whole sequence ``[T, B, ...]`` at once (:class:`TimeSequential`).
``TimeWrapper`` turns the result into a classifier (encoder, mean-over-time readout) that the
Trainer, ``profile``, SADP, the pruning methods and N:M sparsity take like any spikeprune model.
See ``docs/interop.md``; NIR export is in :mod:`spikeprune.interop.nir` (``docs/export.md``).
"""

from __future__ import annotations

from torch import nn

from spikeprune.errors import SpikepruneError
from spikeprune.interop import snntorch as _snntorch
from spikeprune.interop import spikingjelly as _spikingjelly
from spikeprune.interop.base import (
    ForeignNeuron,
    FrameworkSurrogate,
    TimeFolded,
    TimeSequential,
    TimeWrapper,
    fold_multistep_layers,
    fold_sequentials,
)
from spikeprune.interop.snntorch import SnnTorchNeuron
from spikeprune.interop.spikingjelly import SpikingJellyNeuron

__all__ = [
    "ForeignNeuron",
    "FrameworkSurrogate",
    "SnnTorchNeuron",
    "SpikingJellyNeuron",
    "TimeFolded",
    "TimeSequential",
    "TimeWrapper",
    "adapt",
    "supported_neurons",
]

_FRAMEWORKS = (
    ("SpikingJelly", _spikingjelly.is_neuron, _spikingjelly.supported_types, SpikingJellyNeuron),
    ("snnTorch", _snntorch.is_neuron, _snntorch.supported_types, SnnTorchNeuron),
)


def supported_neurons() -> list[str]:
    """Names of the neuron classes ``adapt`` knows."""
    return [
        "spikingjelly.activation_based.neuron.LIFNode",
        "spikingjelly.activation_based.neuron.IFNode",
        "spikingjelly.activation_based.neuron.ParametricLIFNode",
        "snntorch.Leaky",
        "snntorch.Synaptic",
    ]


def _adapter(module: nn.Module, name: str) -> ForeignNeuron | None:
    for framework, is_neuron, supported, adapter in _FRAMEWORKS:
        if is_neuron(module):
            if type(module) not in supported():
                raise SpikepruneError(
                    f"{framework} neuron {type(module).__module__}.{type(module).__qualname__} at "
                    f"{name or 'the top level'!r} is not supported by spikeprune.interop; "
                    f"supported neurons: {', '.join(supported_neurons())}"
                )
            return adapter(module)
    return None


def _neuron_adapters(module: nn.Module, prefix: str = "") -> list[tuple[nn.Module, str, ForeignNeuron]]:
    """Every (parent, child name, adapter) to install; raises for an unsupported neuron before any change."""
    found = []
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, ForeignNeuron):
            continue
        adapter = _adapter(child, path)
        if adapter is not None:
            found.append((module, name, adapter))
        else:
            found += _neuron_adapters(child, path)
    return found


def adapt(model: nn.Module) -> nn.Module:
    """Make a SpikingJelly or snnTorch model usable by spikeprune; returns the model to use from now on.

    Works in place on submodules:

    * neurons become adapters;
    * plain ``nn.Sequential`` containers that hold them become :class:`TimeSequential`;
    * SpikingJelly multi-step layers that custom forward code calls directly (ResNet and SEW-ResNet
      blocks, VGG heads) become :class:`TimeFolded`: they fold ``T`` into the batch, as they did
      inside, where spikeprune's hooks can see it.

    ``state_dict`` keys do not change. The returned object is new only when ``model`` itself is such a
    Sequential or a bare neuron. Raises :class:`SpikepruneError` for a neuron class it does not know,
    naming it; the model is then left exactly as it was.
    """
    if not isinstance(model, nn.Module):
        raise SpikepruneError(f"adapt needs an nn.Module, got {type(model).__name__}")
    top = _adapter(model, "") if not isinstance(model, ForeignNeuron) else None
    if top is not None:
        return top
    adapters = _neuron_adapters(model)
    already = any(isinstance(m, ForeignNeuron) for m in model.modules())
    if not adapters and not already:
        raise SpikepruneError(
            f"adapt found no SpikingJelly or snnTorch neuron in {type(model).__name__}; "
            f"supported neurons: {', '.join(supported_neurons())}"
        )
    for parent, name, adapter in adapters:
        parent._modules[name] = adapter
    return fold_multistep_layers(fold_sequentials(model))

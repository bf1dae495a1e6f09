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
    TimeSequential,
    TimeWrapper,
    fold_sequentials,
)
from spikeprune.interop.snntorch import SnnTorchNeuron
from spikeprune.interop.spikingjelly import SpikingJellyNeuron

__all__ = [
    "ForeignNeuron",
    "FrameworkSurrogate",
    "SnnTorchNeuron",
    "SpikingJellyNeuron",
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


def _replace_neurons(module: nn.Module, prefix: str = "") -> int:
    count = 0
    for name, child in list(module.named_children()):
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, ForeignNeuron):
            count += 1
            continue
        adapter = _adapter(child, path)
        if adapter is not None:
            module._modules[name] = adapter
            count += 1
        else:
            count += _replace_neurons(child, path)
    return count


def _check_multistep_synapses(model: nn.Module) -> None:
    """SpikingJelly multi-step synapses left outside a Sequential would hand our hooks ``[T, B, ...]``."""
    import sys

    base = sys.modules.get("spikingjelly.activation_based.base")
    if base is None:
        return
    stuck = [
        name
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and isinstance(m, base.StepModule) and m.step_mode == "m"
    ]
    if stuck:
        raise SpikepruneError(
            f"SpikingJelly multi-step layer(s) {stuck} are called from custom forward code, where spikeprune's "
            "counters would see [T, B, ...]; put the layers in an nn.Sequential (adapted automatically) or wrap "
            "them in spikingjelly's layer.SeqToANNContainer"
        )


def adapt(model: nn.Module) -> nn.Module:
    """Make a SpikingJelly or snnTorch model usable by spikeprune; returns the model to use from now on.

    Works in place on submodules: neurons become adapters and plain ``nn.Sequential`` containers
    that hold them become :class:`TimeSequential` (same children, same ``state_dict`` keys). The
    returned object is new only when ``model`` itself is such a Sequential or a bare neuron.
    Raises :class:`SpikepruneError` for a neuron class it does not know, naming it.
    """
    if not isinstance(model, nn.Module):
        raise SpikepruneError(f"adapt needs an nn.Module, got {type(model).__name__}")
    top = _adapter(model, "") if not isinstance(model, ForeignNeuron) else None
    if top is not None:
        return top
    if _replace_neurons(model) == 0 and not isinstance(model, ForeignNeuron):
        raise SpikepruneError(
            f"adapt found no SpikingJelly or snnTorch neuron in {type(model).__name__}; "
            f"supported neurons: {', '.join(supported_neurons())}"
        )
    model = fold_sequentials(model)
    _check_multistep_synapses(model)
    return model

"""What every adapter shares: the :class:`SpikingNeuron` interface over a foreign neuron, time folding
for ``nn.Sequential`` models, and a wrapper that turns a time-major network into a classifier.

spikeprune's metrics, SADP's probe, SLAMP's calibration and SpikeNM's EID find neurons with
``isinstance(m, SpikingNeuron)`` and read the same few things from them: the spikes the module
returns (``[T, B, ...]``), the membrane ``h`` before the threshold (``records["membrane"]`` when
``record`` is set), ``v_threshold``, ``surrogate.derivative(h − θ)``, ``decay``, ``leak()``,
``decay_input``, ``v_reset`` and ``detach_reset``. A :class:`ForeignNeuron` presents exactly that
over a SpikingJelly or snnTorch neuron that it holds and runs unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.snn.encoding import build_encoder
from spikeprune.snn.layers import PerStep
from spikeprune.snn.neurons import SpikingNeuron


class FrameworkSurrogate:
    """``σ'(x)`` of a framework's own spike function, by differentiating that function.

    Autograd through the function gives exactly the derivative the framework trains with, for any of
    its surrogates (and its parameters), without a table of formulas that could drift from it.
    """

    def __init__(self, spike_fn: Callable[[Tensor], Tensor]) -> None:
        self.spike_fn = spike_fn

    def derivative(self, x: Tensor, alpha: float | None = None) -> Tensor:
        """σ' at distance ``x`` from the threshold (``alpha`` is ignored: the framework holds its own)."""
        with torch.inference_mode(False), torch.enable_grad():
            z = x.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.spike_fn(z).sum(), z)
        return grad.to(x.dtype)

    def __repr__(self) -> str:
        return f"FrameworkSurrogate({self.spike_fn!r})"


def _drop_infix(infix: str):
    """A state_dict post-hook: ``<prefix><infix>.<key>`` → ``<prefix><key>`` (the original model's keys)."""

    def hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        inner = f"{prefix}{infix}."
        for key in [k for k in state_dict if k.startswith(inner)]:
            state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)

    return hook


def _add_infix(infix: str):
    """A load_state_dict pre-hook, the inverse of :func:`_drop_infix` (both key styles load)."""

    def hook(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        inner = f"{prefix}{infix}."
        for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
            state_dict[inner + key[len(prefix) :]] = state_dict.pop(key)

    return hook


def keep_original_keys(wrapper: nn.Module, infix: str) -> None:
    """Give ``wrapper`` (which holds the wrapped module as ``infix``) the state_dict keys of the original."""
    wrapper.register_state_dict_post_hook(_drop_infix(infix))
    wrapper.register_load_state_dict_pre_hook(_add_infix(infix))


class ForeignNeuron(SpikingNeuron):
    """A framework's neuron behind spikeprune's :class:`SpikingNeuron` interface.

    The wrapped module (``.neuron``) runs unchanged; the adapter resets its state before and after
    every call (so, like ours, it starts from rest each forward), iterates it over time if it is a
    single-step neuron, and records spikes and the pre-reset membrane when ``record`` is set.
    ``state_dict`` keys are those of the original model (no ``neuron.`` infix).
    Subclasses fill in the framework-specific parts.
    """

    framework = ""

    def __init__(self, neuron: nn.Module) -> None:
        nn.Module.__init__(self)  # SpikingNeuron.__init__ would create a surrogate and threshold of our own
        self.neuron = neuron
        self.norm = None
        self.backend = self.framework
        self.record = False
        self.records: dict[str, Tensor] = {}
        self.output_membrane = False  # return the membrane (with its gradient) instead of the spikes
        keep_original_keys(self, "neuron")

    # --- framework-specific -----------------------------------------------------------------
    def spike_function(self) -> Callable[[Tensor], Tensor]:
        """The framework's spike nonlinearity of ``h − θ`` (Heaviside forward, surrogate backward)."""
        raise NotImplementedError

    def reset_state(self) -> None:
        """Put the wrapped neuron at rest and drop tensors it keeps from the last call."""
        raise NotImplementedError

    def run(self, x_seq: Tensor) -> tuple[Tensor, Tensor | None]:
        """Spikes ``[T, B, ...]`` of the wrapped neuron, and its membrane ``h`` when ``record`` is set (with
        its gradient when ``output_membrane`` is set)."""
        raise NotImplementedError

    # --- interface -----------------------------------------------------------------------------
    @property
    def surrogate(self) -> FrameworkSurrogate:
        """The wrapped neuron's surrogate (looked up on each access, so copies use their own)."""
        return FrameworkSurrogate(self.spike_function())

    def forward(self, x_seq: Tensor) -> Tensor:
        if x_seq.dim() < 2:
            raise SpikepruneError(
                f"{type(self.neuron).__name__} (adapted) expects a time-first tensor [T, B, ...], "
                f"got shape {tuple(x_seq.shape)}"
            )
        self.reset_state()
        try:
            spikes, membrane = self.run(x_seq)
        finally:
            self.reset_state()
        if self.record:
            self.records = {"spikes": spikes.detach(), "membrane": membrane.detach()}
        return membrane if self.output_membrane else spikes

    def extra_repr(self) -> str:
        reset = "soft" if self.v_reset is None else f"hard(v_reset={self.v_reset:g})"
        return f"{self.framework}, decay={self.decay:.4g}, reset={reset}, detach_reset={self.detach_reset}"


class TimeSequential(nn.Sequential):
    """An ``nn.Sequential`` of a single-step model run on a whole sequence ``[T, B, ...]`` at once.

    Children that hold neurons (or are already time-aware: SpikingJelly multi-step containers, our
    ``PerStep``) get ``[T, B, ...]``; every other child is stateless and runs once on all steps with
    time folded into the batch, as :class:`spikeprune.snn.PerStep` does, so synapses see
    ``[T·B, ...]``, the shape all of spikeprune's hooks expect. Same children, same state_dict keys.
    """

    def __init__(self, sequential: nn.Sequential) -> None:
        super().__init__(OrderedDict(sequential.named_children()))
        self.training = sequential.training
        self.time_major = tuple(_is_time_major(child) for child in self)
        for child, time_major in zip(self, self.time_major, strict=True):
            if not time_major:
                _single_step(child)

    def forward(self, x: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        for child, time_major in zip(self, self.time_major, strict=True):
            x = child(x) if time_major else child(x.flatten(0, 1)).unflatten(0, (steps, batch))
        return x


class TimeFolded(nn.Module):
    """A SpikingJelly multi-step layer that custom forward code calls on ``[T, B, ...]`` (ResNet blocks).

    The layer is switched to single-step mode and called once on ``[T·B, ...]``, which is what it did
    inside anyway; hooks on it (SynOps counters, SADP, SLAMP, EID) then see the folded batch they
    expect. ``state_dict`` keys stay those of the original model.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        layer.step_mode = "s"
        self.layer = layer
        keep_original_keys(self, "layer")

    @property
    def step_mode(self) -> str:
        """What the calling code sees (SpikingJelly's ResNet picks its flatten by the pool's step mode)."""
        return "m"

    def forward(self, x: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        return self.layer(x.flatten(0, 1)).unflatten(0, (steps, batch))


def fold_multistep_layers(model: nn.Module) -> nn.Module:
    """Wrap each SpikingJelly multi-step layer left outside a time-folding container in :class:`TimeFolded`."""
    base = _sj_base()
    if base is None:
        return model

    def needs_folding(module: nn.Module) -> bool:
        return (
            isinstance(module, base.StepModule)
            and not isinstance(module, (base.MultiStepModule, SpikingNeuron))
            and getattr(module, "step_mode", None) == "m"
            and not list(module.children())
        )

    def visit(parent: nn.Module) -> None:
        if isinstance(parent, (ForeignNeuron, PerStep, TimeFolded, base.MultiStepModule)):
            return  # these run their children on folded batches already
        for name, child in list(parent.named_children()):
            if needs_folding(child):
                parent._modules[name] = TimeFolded(child)
            else:
                visit(child)

    if needs_folding(model):
        return TimeFolded(model)
    visit(model)
    return model


def _sj_base():
    """SpikingJelly's base module, if SpikingJelly is loaded (nothing to fold for otherwise)."""
    import sys

    return sys.modules.get("spikingjelly.activation_based.base")


def _is_time_major(module: nn.Module) -> bool:
    base = _sj_base()
    time_aware: tuple[type, ...] = (SpikingNeuron, PerStep)
    if base is not None:
        time_aware += (base.MultiStepModule,)
    return any(isinstance(m, time_aware) for m in module.modules())


def _single_step(module: nn.Module) -> None:
    """SpikingJelly layers in a folded child compute per step on ``[T·B, ...]``: their single-step mode."""
    base = _sj_base()
    if base is None:
        return
    for m in module.modules():
        if isinstance(m, base.StepModule) and m.step_mode != "s":
            m.step_mode = "s"


def fold_sequentials(model: nn.Module) -> nn.Module:
    """Replace every plain ``nn.Sequential`` holding a foreign neuron by a :class:`TimeSequential`."""
    for name, child in list(model.named_children()):
        converted = fold_sequentials(child)
        if converted is not child:
            model._modules[name] = converted
    if type(model) is nn.Sequential and any(isinstance(m, ForeignNeuron) for m in model.modules()):
        return TimeSequential(model)
    return model


READOUTS = ("output", "membrane")


class TimeWrapper(nn.Module):
    """A time-major network as a classifier, like spikeprune's own models.

    ``model`` maps ``[T, B, ...]`` to ``[T, B, classes]`` (an adapted network). A static batch
    ``[B, *input_shape]`` is first encoded to ``[T, B, ...]`` (``direct`` repetition by default);
    a sequence ``[T, B, *input_shape]`` (events) goes in as it is. The logits are the mean over time
    of the network's output (``readout="output"``): a final Linear's output, or the spike rates of a
    final layer of neurons (snnTorch's ``Leaky(..., output=True)``). ``readout="membrane"`` takes the
    mean membrane potential of that final layer instead. ``timesteps`` and ``input_shape`` are read
    by SLAMP's calibration and the profile. state_dict keys gain the prefix ``model.``.
    """

    def __init__(
        self,
        model: nn.Module,
        timesteps: int,
        *,
        input_shape: tuple[int, ...] | None = None,
        encoder: str = "direct",
        readout: str = "output",
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise SpikepruneError(f"unknown readout {readout!r}; choose one of {', '.join(READOUTS)}")
        self.model = model
        self.encoder = build_encoder(encoder, timesteps)
        self.timesteps = int(timesteps)
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.readout = readout
        if readout == "membrane":
            neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
            if not neurons:
                raise SpikepruneError("readout='membrane' needs a network that ends in a layer of spiking neurons")
            neurons[-1].output_membrane = True

    def forward(self, x: Tensor) -> Tensor:
        sequence = self.input_shape is not None and x.dim() == len(self.input_shape) + 2
        if self.input_shape is not None and not sequence and x.dim() != len(self.input_shape) + 1:
            raise SpikepruneError(
                f"TimeWrapper expects input [B, {', '.join(map(str, self.input_shape))}] or [T, B, ...], "
                f"got shape {tuple(x.shape)}"
            )
        out = self.model(x if sequence else self.encoder(x))
        if not isinstance(out, Tensor) or out.dim() < 3:
            raise SpikepruneError(
                "TimeWrapper needs a network that returns [T, B, classes]; got "
                f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}. "
                "End the network with a Linear readout (or a neuron layer) inside its nn.Sequential"
            )
        return out.mean(0)

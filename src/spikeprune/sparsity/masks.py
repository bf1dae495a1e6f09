"""Weight masks on any ``nn.Conv*`` / ``nn.Linear``, robust to deepcopy, pickle, state_dict and DDP.

A masked layer holds ``weight_orig`` (the trainable parameter) and a ``weight_mask`` buffer (0/1).
A forward pre-hook computes ``weight = weight_orig * weight_mask`` for the forward pass, so pruned
weights are exactly zero and receive zero gradient. A forward hook then replaces ``weight`` with a
detached copy. ``torch.nn.utils.prune`` leaves a non-leaf tensor there, which breaks
``copy.deepcopy`` after any forward; ``torch.nn.utils.parametrize`` modules cannot be pickled. With
the detached copy, the model copies, pickles and round-trips ``state_dict`` at any time, and
``layer.weight`` always shows the masked weight (what NeuroBench reads).

:func:`finalize` folds masks into plain parameters with exact zeros and removes the machinery.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.sparsity.base import Sparsifier

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


class MaskHook:
    """Base of the forward pre-hooks that compute a masked ``weight`` from ``weight_orig``."""

    def __call__(self, module: nn.Module, inputs) -> None:
        raise NotImplementedError

    def cleanup(self, module: nn.Module) -> None:
        """Settle ``weight_mask`` and remove whatever else this hook's method put on the module.

        Called by :func:`remove_mask` before it folds ``weight_orig * weight_mask``.
        """


class _ApplyMask(MaskHook):
    """Forward pre-hook: the weight used in this forward is ``weight_orig * weight_mask``.

    With ``straight_through`` (SR-STE) the forward value is the same but the gradient reaches every
    weight, pruned or not: ``w·m + (w − stop_grad(w))·(1 − m)``.
    """

    def __init__(self, straight_through: bool = False) -> None:
        self.straight_through = straight_through

    def __call__(self, module: nn.Module, inputs) -> None:
        weight, mask = module.weight_orig, module.weight_mask
        module.weight = weight * mask
        if self.straight_through:
            module.weight = module.weight + (weight - weight.detach()) * (1 - mask)


class _KeepDetached:
    """Forward hook: leave a detached (copyable, picklable) masked weight on the module."""

    def __call__(self, module: nn.Module, inputs, output) -> None:
        module.weight = module.weight.detach()


def is_masked(module: nn.Module) -> bool:
    return hasattr(module, "weight_mask") and hasattr(module, "weight_orig")


def apply_mask(module: nn.Module, mask: Tensor, straight_through: bool = False, hook: MaskHook | None = None) -> None:
    """Mask ``module.weight`` (replacing an existing mask). ``mask`` must have the weight's shape.

    ``straight_through`` lets gradients reach pruned weights (SR-STE); by default they get none.
    ``hook`` replaces the default masking hook (SpikeNM samples its mask in the hook).
    """
    if not isinstance(module, PRUNABLE):
        raise SpikepruneError(f"only Conv1d/Conv2d/Linear weights can be masked, not {type(module).__name__}")
    weight = module.weight_orig if is_masked(module) else module.weight
    if tuple(mask.shape) != tuple(weight.shape):
        raise SpikepruneError(f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(weight.shape)}")
    mask = (mask != 0).to(device=weight.device, dtype=weight.dtype)
    if is_masked(module):
        module.weight_mask.copy_(mask)
        if hook is not None:
            _drop_hooks(module, (MaskHook,))
            module.register_forward_pre_hook(hook, prepend=True)
        for existing in module._forward_pre_hooks.values():
            if isinstance(existing, _ApplyMask):
                existing.straight_through = straight_through
    else:
        original = module.weight
        del module._parameters["weight"]
        module.register_parameter("weight_orig", original)
        module.register_buffer("weight_mask", mask)
        module.register_forward_pre_hook(hook if hook is not None else _ApplyMask(straight_through))
        module.register_forward_hook(_KeepDetached())
    with torch.no_grad():
        module.weight = (module.weight_orig * module.weight_mask).detach()


def refresh(module: nn.Module) -> None:
    """Recompute the visible ``weight`` after ``weight_orig`` changed outside a forward (optimizer step)."""
    if is_masked(module):
        with torch.no_grad():
            module.weight = (module.weight_orig * module.weight_mask).detach()


def remove_mask(module: nn.Module) -> None:
    """Fold the mask into a plain ``weight`` parameter (pruned entries exactly 0.0) and drop the hooks."""
    if not is_masked(module):
        return
    for hook in list(module._forward_pre_hooks.values()):
        if isinstance(hook, MaskHook):
            hook.cleanup(module)  # first: a hook may settle the final mask
    with torch.no_grad():
        folded = nn.Parameter(module.weight_orig * module.weight_mask, requires_grad=module.weight_orig.requires_grad)
    _drop_hooks(module, (MaskHook, _KeepDetached))
    del module._parameters["weight_orig"]
    del module._buffers["weight_mask"]
    if "weight" in module.__dict__:
        del module.__dict__["weight"]
    module.register_parameter("weight", folded)


def _drop_hooks(module: nn.Module, kinds: tuple[type, ...]) -> None:
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key in [k for k, hook in hooks.items() if isinstance(hook, kinds)]:
            del hooks[key]


def prunable_layers(
    model: nn.Module,
    *,
    exclude_first: bool = False,
    exclude_last: bool = False,
    include: list[str] | None = None,
) -> list[tuple[str, nn.Module]]:
    """Conv/Linear layers in registration order; optionally without the first/last, or only ``include``."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if include is not None:
        known = {name for name, _ in layers}
        unknown = sorted(set(include) - known)
        if unknown:
            raise SpikepruneError(f"no Conv/Linear layer named {unknown}; prunable layers are {sorted(known)}")
        layers = [(name, m) for name, m in layers if name in include]
    if exclude_first and layers:
        layers = layers[1:]
    if exclude_last and layers:
        layers = layers[:-1]
    if not layers:
        raise SpikepruneError("no prunable (Conv/Linear) layers left to prune")
    return layers


def effective_weight(module: nn.Module) -> Tensor:
    """The weight the layer computes with (masked if a mask is attached)."""
    return (module.weight_orig * module.weight_mask).detach() if is_masked(module) else module.weight.detach()


def attach_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Apply ``{layer name: mask}`` to ``model``."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in modules:
            raise SpikepruneError(f"mask for unknown layer {name!r}")
        apply_mask(modules[name], mask)


def masks_of(model: nn.Module) -> dict[str, Tensor]:
    """``{layer name: mask}`` of every masked layer."""
    return {name: m.weight_mask.clone() for name, m in model.named_modules() if is_masked(m)}


def finalize(model: nn.Module) -> nn.Module:
    """Fold every mask into its weight (exact zeros) and remove the masking machinery; returns ``model``."""
    for module in model.modules():
        remove_mask(module)
    return model


class FixedMasks(Sparsifier):
    """Train with fixed masks (retraining after pruning): pruned weights stay exactly zero."""

    def __init__(self, masks: dict[str, Tensor]) -> None:
        self.masks = masks
        self.layers: list[nn.Module] = []

    def attach(self, model: nn.Module) -> None:
        attach_masks(model, self.masks)
        modules = dict(model.named_modules())
        self.layers = [modules[name] for name in self.masks]

    def after_step(self) -> None:
        for module in self.layers:
            refresh(module)

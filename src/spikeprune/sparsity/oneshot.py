"""One-shot pruning of a model object: masks by a criterion, attached, BatchNorm recalibrated.

This is the step ``spikeprune prune`` runs before retraining (:mod:`spikeprune.prune_retrain`), and
what a Python user calls on any model, spikeprune's or an adapted SpikingJelly/snnTorch one.
"""

from __future__ import annotations

import torch
from torch import nn

from spikeprune.errors import SpikepruneError
from spikeprune.sparsity.masks import attach_masks, effective_weight, prunable_layers
from spikeprune.sparsity.nm import magnitude_nm_mask, nm_layers, parse_nm
from spikeprune.sparsity.slamp import slamp, temporal_factors
from spikeprune.sparsity.unstructured import CRITERIA

UNSTRUCTURED_METHODS = ("slamp", *CRITERIA)
METHODS = (*UNSTRUCTURED_METHODS, "nm-magnitude")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Re-estimate BatchNorm running statistics of the pruned model (cumulative average over batches)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)


def compute_masks(
    model: nn.Module,
    layers: list[tuple[str, nn.Module]],
    method: str,
    sparsity: float,
    *,
    batches: list[torch.Tensor] | None = None,
    slamp_power: float = 2.0,
) -> tuple[dict[str, torch.Tensor], dict[str, float] | None]:
    """Masks for ``layers`` at ``sparsity`` (and SLAMP's temporal factors, when used)."""
    weights = {name: effective_weight(module) for name, module in layers}
    if method == "slamp":
        if not batches:
            raise SpikepruneError("SLAMP needs calibration batches to measure its temporal factors")
        factors = temporal_factors(model, batches, layers)
        return slamp(weights, sparsity, factors, slamp_power), factors
    try:
        criterion = CRITERIA[method]
    except KeyError:
        raise SpikepruneError(
            f"unknown pruning method {method!r}; choose one of {', '.join(UNSTRUCTURED_METHODS)}"
        ) from None
    return criterion(weights, sparsity), None


def prune_model(
    model: nn.Module,
    method: str,
    sparsity: float = 0.0,
    *,
    nm: str | None = None,
    nm_policy: str = "dense",
    batches: list[torch.Tensor] | None = None,
    exclude_first: bool = False,
    exclude_last: bool = False,
    slamp_power: float = 2.0,
    recalibrate_bn: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, float] | None]:
    """One-shot pruning of a model object (any model, also an adapted SpikingJelly/snnTorch one).

    Computes the masks with ``method`` (``nm-magnitude`` with ``nm="2:4"`` for one-shot N:M),
    attaches them and, with ``batches`` (model inputs; SLAMP calibrates on them), re-estimates
    BatchNorm statistics. Returns ``(masks, temporal factors or None)``; retrain with
    ``Trainer(..., model=model, sparsifier=FixedMasks(masks))`` and call ``finalize(model)`` after.
    """
    if method not in METHODS:
        raise SpikepruneError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    layers = prunable_layers(model, exclude_first=exclude_first, exclude_last=exclude_last)
    factors = None
    if method == "nm-magnitude":
        if nm is None:
            raise SpikepruneError("method nm-magnitude needs an N:M pattern, e.g. nm='2:4'")
        n, m = parse_nm(nm)
        masks = {
            name: magnitude_nm_mask(effective_weight(mod), n, m, nm_policy == "pad")
            for name, mod in nm_layers(model, m, nm_policy, layers=layers)
        }
    else:
        masks, factors = compute_masks(model, layers, method, sparsity, batches=batches, slamp_power=slamp_power)
    attach_masks(model, masks)
    if recalibrate_bn and batches:
        recalibrate_batchnorm(model, batches)
    return masks, factors

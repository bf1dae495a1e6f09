"""Weight sparsity: masks, unstructured criteria (SLAMP and baselines) and N:M (SpikeNM and baselines).

One-shot pruning of a model is :func:`prune_model`; the prune-and-retrain workflow behind
``spikeprune prune`` is :mod:`spikeprune.prune_retrain`.
"""

from spikeprune.sparsity.base import Sparsifier
from spikeprune.sparsity.masks import (
    FixedMasks,
    apply_mask,
    attach_masks,
    effective_weight,
    finalize,
    is_masked,
    masks_of,
    prunable_layers,
    remove_mask,
)
from spikeprune.sparsity.oneshot import METHODS, UNSTRUCTURED_METHODS, prune_model, recalibrate_batchnorm
from spikeprune.sparsity.registry import build_sparsifier
from spikeprune.sparsity.slamp import slamp, temporal_factors
from spikeprune.sparsity.unstructured import CRITERIA, erk, global_magnitude, lamp, lamp_scores, uniform, uniform_plus

__all__ = [
    "CRITERIA",
    "METHODS",
    "UNSTRUCTURED_METHODS",
    "FixedMasks",
    "Sparsifier",
    "apply_mask",
    "attach_masks",
    "build_sparsifier",
    "effective_weight",
    "erk",
    "finalize",
    "global_magnitude",
    "is_masked",
    "lamp",
    "lamp_scores",
    "masks_of",
    "prunable_layers",
    "prune_model",
    "recalibrate_batchnorm",
    "remove_mask",
    "slamp",
    "temporal_factors",
    "uniform",
    "uniform_plus",
]

"""Weight sparsity: masks, unstructured criteria (SLAMP and baselines) and N:M (SpikeNM and baselines).

The prune-and-retrain pipeline lives in :mod:`spikeprune.sparsity.pipeline` (import it directly).
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
from spikeprune.sparsity.slamp import slamp, temporal_factors
from spikeprune.sparsity.unstructured import CRITERIA, erk, global_magnitude, lamp, lamp_scores, uniform, uniform_plus

__all__ = [
    "CRITERIA",
    "FixedMasks",
    "Sparsifier",
    "apply_mask",
    "attach_masks",
    "effective_weight",
    "erk",
    "finalize",
    "global_magnitude",
    "is_masked",
    "lamp",
    "lamp_scores",
    "masks_of",
    "prunable_layers",
    "remove_mask",
    "slamp",
    "temporal_factors",
    "uniform",
    "uniform_plus",
]

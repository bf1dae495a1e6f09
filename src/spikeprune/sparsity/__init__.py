"""Weight sparsity: masks, unstructured criteria (SLAMP and baselines) and N:M (SpikeNM and baselines)."""

from spikeprune.sparsity.base import Sparsifier

__all__ = ["Sparsifier"]

"""Data pruners by name, for configs and the command line."""

from __future__ import annotations

from typing import Any

from spikeprune.datapruning.base import DataPruner
from spikeprune.datapruning.baselines import UCB, InfoBatch, LossImportance, UniformRandom
from spikeprune.datapruning.sadp import SADP
from spikeprune.errors import SpikepruneError

DATA_PRUNERS: dict[str, type] = {
    "sadp": SADP,
    "random": UniformRandom,
    "loss": LossImportance,
    "ucb": UCB,
    "infobatch": InfoBatch,
}
METHODS = ("none", *DATA_PRUNERS)


def build_data_pruner(name: str, prune_ratio: float, epochs: int, seed: int = 0, **options: Any) -> DataPruner:
    """``none`` gives full data; the others prune ``prune_ratio`` of each pruned epoch."""
    key = name.lower()
    if key == "none":
        return DataPruner()
    try:
        cls = DATA_PRUNERS[key]
    except KeyError:
        raise SpikepruneError(f"unknown data pruning method {name!r}; choose one of {', '.join(METHODS)}") from None
    try:
        return cls(prune_ratio, epochs, seed=seed, **options)
    except TypeError as error:
        raise SpikepruneError(f"bad option for data pruning method {name!r}: {error}") from None

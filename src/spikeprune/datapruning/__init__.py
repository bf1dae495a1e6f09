"""Data pruning: which examples each epoch visits, and with what loss weight (SADP and baselines)."""

from spikeprune.datapruning.base import (
    DataPruner,
    EpochPlan,
    PruningSchedule,
    ScheduledPruner,
    StepStats,
    WithIndex,
    budget,
)
from spikeprune.datapruning.baselines import UCB, InfoBatch, LossImportance, UniformRandom
from spikeprune.datapruning.probe import SpikeProbe, delta_norm, spike_aware_score
from spikeprune.datapruning.registry import METHODS, build_data_pruner
from spikeprune.datapruning.sadp import SADP

__all__ = [
    "METHODS",
    "SADP",
    "UCB",
    "DataPruner",
    "EpochPlan",
    "InfoBatch",
    "LossImportance",
    "PruningSchedule",
    "ScheduledPruner",
    "SpikeProbe",
    "StepStats",
    "UniformRandom",
    "WithIndex",
    "budget",
    "build_data_pruner",
    "delta_norm",
    "spike_aware_score",
]

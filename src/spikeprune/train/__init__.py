"""Training: config, the one Trainer, checkpoints, DDP helpers and the extension points."""

from spikeprune.train.config import TrainConfig, load_config, make_config
from spikeprune.train.hooks import DataPruner, EpochPlan, Sparsifier, StepStats
from spikeprune.train.trainer import Trainer, load_trained

__all__ = [
    "DataPruner",
    "EpochPlan",
    "Sparsifier",
    "StepStats",
    "TrainConfig",
    "Trainer",
    "load_config",
    "load_trained",
    "make_config",
]

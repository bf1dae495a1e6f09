"""Training: config, the one Trainer, checkpoints and DDP helpers."""

from spikeprune.train.config import TrainConfig, load_config, make_config
from spikeprune.train.trainer import Trainer, load_trained

__all__ = [
    "TrainConfig",
    "Trainer",
    "load_config",
    "load_trained",
    "make_config",
]

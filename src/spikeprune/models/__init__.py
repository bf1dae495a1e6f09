"""Spiking models: a registry of builders whose synapses are plain ``nn.Conv*`` / ``nn.Linear``."""

from spikeprune.models.base import SNNOptions, SpikingNetwork
from spikeprune.models.registry import ModelInfo, build_model, list_models

__all__ = ["ModelInfo", "SNNOptions", "SpikingNetwork", "build_model", "list_models"]

"""spikeprune: make spiking neural networks cheaper to train and to run."""

__version__ = "0.1.0"

"""The SNN substrate: multi-step neurons, surrogates, norms, encoders and time-folded layers."""

from spikeprune.snn.encoding import DirectEncoder, Encoder, FramesEncoder, LatencyEncoder, RateEncoder, build_encoder
from spikeprune.snn.layers import PerStep
from spikeprune.snn.neurons import IF, LIF, PLIF, SpikingNeuron, build_neuron
from spikeprune.snn.norm import MembraneBatchNorm, TdBatchNorm
from spikeprune.snn.surrogate import ATan, Sigmoid, Surrogate, Triangle, build_surrogate, set_surrogate_alpha

__all__ = [
    "ATan",
    "DirectEncoder",
    "Encoder",
    "FramesEncoder",
    "IF",
    "LIF",
    "LatencyEncoder",
    "MembraneBatchNorm",
    "PLIF",
    "PerStep",
    "RateEncoder",
    "Sigmoid",
    "SpikingNeuron",
    "Surrogate",
    "TdBatchNorm",
    "Triangle",
    "build_encoder",
    "build_neuron",
    "build_surrogate",
    "set_surrogate_alpha",
]

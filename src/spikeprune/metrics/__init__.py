"""Accounting for pruned SNNs: exact SynOps (ACs/MACs), spikes, energy, density and footprint.

``profile(model, data)`` runs a model and returns a :class:`ProfileReport`; the pieces
(``record_activity``, ``count_ops``, ``density_report``, ``EnergyModel``) work on their own too.
"""

from spikeprune.metrics.density import (
    DensityReport,
    LayerDensity,
    csr_footprint,
    dense_footprint,
    density_report,
    nm_footprint,
)
from spikeprune.metrics.energy import (
    COMPUTE_ONLY_NOTE,
    ENERGY_MODELS,
    FP16_45NM,
    FP32_45NM,
    INT8_45NM,
    EnergyModel,
    energy_model,
)
from spikeprune.metrics.recorder import ActivityRecorder, NeuronCounts, record_activity
from spikeprune.metrics.report import LayerProfile, NeuronProfile, ProfileReport, profile
from spikeprune.metrics.synops import (
    SYNAPTIC_TYPES,
    OpCounts,
    count_ops,
    dense_ops,
    dense_synops,
    effective_ops,
    fanout,
    is_spiking,
    layer_kind,
    synaptic_layers,
)

__all__ = [
    "COMPUTE_ONLY_NOTE",
    "ENERGY_MODELS",
    "FP16_45NM",
    "FP32_45NM",
    "INT8_45NM",
    "SYNAPTIC_TYPES",
    "ActivityRecorder",
    "DensityReport",
    "EnergyModel",
    "LayerDensity",
    "LayerProfile",
    "NeuronCounts",
    "NeuronProfile",
    "OpCounts",
    "ProfileReport",
    "count_ops",
    "csr_footprint",
    "dense_footprint",
    "dense_ops",
    "dense_synops",
    "density_report",
    "effective_ops",
    "energy_model",
    "fanout",
    "is_spiking",
    "layer_kind",
    "nm_footprint",
    "profile",
    "record_activity",
    "synaptic_layers",
]

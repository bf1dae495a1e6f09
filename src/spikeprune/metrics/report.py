"""``profile``: run a model over data and report per-sample synaptic work, spikes, energy and footprint.

All per-layer figures are per sample: counts summed over every call while profiling, divided by the
number of samples. Under direct encoding the stem layer runs once per sample on the real-valued
input, so its MACs are counted once, not T times; this matches the common SNN-energy convention
(first-layer MACs counted once with direct encoding). Energy is compute only (see ``energy``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from spikeprune.errors import SpikepruneError
from spikeprune.io import atomic_write_json
from spikeprune.metrics.density import DensityReport, density_report
from spikeprune.metrics.energy import COMPUTE_ONLY_NOTE, FP32_45NM, EnergyModel
from spikeprune.metrics.recorder import ActivityRecorder, record_activity
from spikeprune.metrics.table import bytes_str, energy_str, render, si


@dataclass(frozen=True)
class LayerProfile:
    """One synaptic layer, per sample (counts are averages over the profiled samples)."""

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    params: int
    nonzeros: int
    density: float
    input_rate: float
    acs: float
    macs: float
    effective_synops: float
    dense_synops: float
    dense_ops: float
    energy_pj: float
    calls: int


@dataclass(frozen=True)
class NeuronProfile:
    """One spiking-neuron layer: size per step, firing rate and spikes per sample."""

    name: str
    neurons: int
    timesteps: int
    firing_rate: float
    spikes_per_sample: float


@dataclass
class ProfileReport:
    """What :func:`profile` measured; ``totals`` holds the model-wide figures."""

    layers: list[LayerProfile]
    neurons: list[NeuronProfile]
    totals: dict[str, float | int]
    energy_model: str
    e_ac_pj: float
    e_mac_pj: float
    note: str = COMPUTE_ONLY_NOTE
    timesteps: int | None = None
    nm_patterns: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON atomically (temp file in the same folder, then ``os.replace``)."""
        path = Path(path)
        if not path.parent.is_dir():
            raise SpikepruneError(f"cannot save profile to {path}: folder {path.parent} does not exist; create it")
        atomic_write_json(path, self.to_dict())
        return path

    def table(self) -> str:
        """Plain-text per-layer and per-neuron tables with totals, for a terminal."""
        return format_table(self)

    def __str__(self) -> str:
        return self.table()


def _loader(data: Dataset | DataLoader, batch_size: int) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    raise SpikepruneError(f"profile needs a Dataset or DataLoader yielding (x, y, idx), got {type(data).__name__}")


def _split(batch: Any) -> tuple[Tensor, Tensor | None]:
    """Input and (optional) labels of a batch: ``(x, y, idx)``, ``(x, y)``, ``(x,)`` or ``x``."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        y = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return batch[0], y
    raise SpikepruneError(f"profile expects batches (x, y, idx) of tensors, got {type(batch).__name__}")


def profile(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    batches: int | None = None,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    energy: EnergyModel = FP32_45NM,
    nm_patterns: Mapping[str, tuple[int, int]] | None = None,
) -> ProfileReport:
    """Run ``model`` (moved to ``device``, eval mode, no grad) on ``data`` and count its work per sample.

    ``batches`` limits how many batches run (default all). ``nm_patterns`` declares N:M layouts
    (layer name → (N, M)) for the compressed footprint. The model's train/eval mode is restored.
    """
    if batches is not None and (isinstance(batches, bool) or not isinstance(batches, int) or batches < 1):
        raise SpikepruneError(f"batches must be a positive int or None, got {batches!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpikepruneError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(energy, EnergyModel):
        raise SpikepruneError(f"energy must be an EnergyModel (e.g. metrics.FP32_45NM), got {type(energy).__name__}")
    loader = _loader(data, batch_size)
    density = density_report(model, nm_patterns)  # first, so a bad nm_patterns fails before any work
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise SpikepruneError(f"unknown device {device!r}: {error}") from None
    was_training = model.training
    model.to(device).eval()
    correct = labelled = 0
    try:
        with torch.no_grad(), record_activity(model) as recorder:
            for i, batch in enumerate(loader):
                if batches is not None and i >= batches:
                    break
                x, y = _split(batch)
                logits = model(x.to(device))
                size = logits.shape[0] if isinstance(logits, Tensor) and logits.dim() >= 1 else x.shape[0]
                recorder.add_samples(int(size))
                if y is not None and y.dim() == 1 and y.shape[0] == size and logits.dim() == 2:
                    correct += int((logits.argmax(1) == y.to(device)).sum())
                    labelled += size
    finally:
        model.train(was_training)
    if recorder.samples == 0:
        raise SpikepruneError("profile saw no samples; pass a non-empty dataset or loader")
    return _build_report(model, recorder, density, energy, nm_patterns, correct, labelled)


def _build_report(
    model: nn.Module,
    recorder: ActivityRecorder,
    dens: DensityReport,
    energy: EnergyModel,
    nm_patterns: Mapping[str, tuple[int, int]] | None,
    correct: int,
    labelled: int,
) -> ProfileReport:
    samples = recorder.samples
    layer_density = {d.name: d for d in dens.layers}
    layers = []
    for name, counts in recorder.layers.items():
        d = layer_density[name]
        acs, macs = counts.acs / samples, counts.macs / samples
        layers.append(
            LayerProfile(
                name=name,
                kind=d.kind,
                weight_shape=d.shape,
                params=d.numel,
                nonzeros=d.nonzeros,
                density=d.density,
                input_rate=counts.input_rate,
                acs=acs,
                macs=macs,
                effective_synops=counts.effective_synops / samples,
                dense_synops=counts.dense_synops / samples,
                dense_ops=counts.dense_ops / samples,
                energy_pj=energy.energy_pj(acs, macs),
                calls=counts.calls,
            )
        )
    neurons = [
        NeuronProfile(name, c.neurons, c.timesteps, c.firing_rate, c.spikes / samples)
        for name, c in recorder.neurons.items()
    ]
    spikes = sum(c.spikes for c in recorder.neurons.values())
    elements = sum(c.elements for c in recorder.neurons.values())
    totals: dict[str, float | int] = {
        key: sum(getattr(layer, key) for layer in layers)
        for key in ("acs", "macs", "effective_synops", "dense_synops", "dense_ops", "energy_pj")
    }
    totals.update(
        density=dens.density,
        params=dens.params,
        nonzero_params=dens.nonzero_params,
        footprint_dense_bytes=dens.footprint_dense_bytes,
        footprint_compressed_bytes=dens.footprint_compressed_bytes,
        mean_firing_rate=spikes / elements if elements else 0.0,
        samples=samples,
    )
    if labelled:
        totals["accuracy"] = correct / labelled
    timesteps = getattr(model, "timesteps", None)
    return ProfileReport(
        layers=layers,
        neurons=neurons,
        totals=totals,
        energy_model=energy.name,
        e_ac_pj=energy.e_ac_pj,
        e_mac_pj=energy.e_mac_pj,
        timesteps=int(timesteps) if isinstance(timesteps, int) else None,
        nm_patterns={k: tuple(v) for k, v in (nm_patterns or {}).items()},
    )


def format_table(report: ProfileReport) -> str:
    """The report as plain-text tables: per synaptic layer, per spiking layer, and totals."""
    t = report.totals
    header = [
        "layer",
        "kind",
        "weight",
        "density",
        "in rate",
        "ACs",
        "MACs",
        "SynOps",
        "dense SynOps",
        "dense ops",
        "energy",
    ]
    rows = [
        [
            layer.name,
            layer.kind,
            "x".join(map(str, layer.weight_shape)),
            f"{layer.density:.3f}",
            f"{layer.input_rate:.3f}",
            si(layer.acs),
            si(layer.macs),
            si(layer.effective_synops),
            si(layer.dense_synops),
            si(layer.dense_ops),
            energy_str(layer.energy_pj),
        ]
        for layer in report.layers
    ]
    rows.append(
        [
            "total",
            "",
            "",
            f"{t['density']:.3f}",
            "",
            si(t["acs"]),
            si(t["macs"]),
            si(t["effective_synops"]),
            si(t["dense_synops"]),
            si(t["dense_ops"]),
            energy_str(t["energy_pj"]),
        ]
    )
    parts = ["Synaptic layers (per sample)", render(header, rows, left=3)]
    if report.neurons:
        neuron_rows = [
            [n.name, str(n.neurons), str(n.timesteps), f"{n.firing_rate:.4f}", si(n.spikes_per_sample)]
            for n in report.neurons
        ]
        neuron_rows.append(["mean", "", "", f"{t['mean_firing_rate']:.4f}", ""])
        parts += [
            "",
            "Spiking neurons",
            render(["neuron layer", "neurons/step", "T", "rate", "spikes/sample"], neuron_rows),
        ]
    summary = [
        f"samples: {t['samples']}" + (f"   accuracy: {t['accuracy']:.4f}" if "accuracy" in t else ""),
        f"params: {si(t['nonzero_params'])} non-zero of {si(t['params'])}   weight density: {t['density']:.4f}",
        f"footprint: dense {bytes_str(t['footprint_dense_bytes'])}, "
        f"compressed {bytes_str(t['footprint_compressed_bytes'])}",
        f"energy model: {report.energy_model} (AC {report.e_ac_pj:g} pJ, MAC {report.e_mac_pj:g} pJ); {report.note}",
    ]
    return "\n".join([*parts, "", *summary])

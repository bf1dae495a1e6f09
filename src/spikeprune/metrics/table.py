"""Plain-text rendering of a profile report: aligned columns, SI-suffixed numbers, no dependencies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spikeprune.metrics.report import ProfileReport

_SUFFIXES = ("", "k", "M", "G", "T", "P", "E")


def si(value: float) -> str:
    """``1234567`` → ``1.23M``: three significant digits with a thousands suffix."""
    if value == 0:
        return "0"
    scaled, step = float(value), 0
    while abs(scaled) >= 999.5 and step < len(_SUFFIXES) - 1:
        scaled, step = scaled / 1000, step + 1
    return f"{scaled:.3g}{_SUFFIXES[step]}"


def energy_str(pj: float) -> str:
    """Picojoules in the largest unit that keeps the number >= 1."""
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def bytes_str(size: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{int(size)} B"


def render(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def format_table(report: ProfileReport) -> str:
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

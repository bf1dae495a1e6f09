"""Energy per operation: turn AC and MAC counts into picojoules.

These are **compute-only** estimates: they price arithmetic and ignore memory access and data
movement, which often dominate real hardware. They make pruned and dense models comparable under
one stated assumption, not a prediction of measured power. The figures are Horowitz (ISSCC 2014),
45 nm; a MAC is priced as one multiply plus one add.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spikeprune.errors import SpikepruneError

COMPUTE_ONLY_NOTE = "compute only: arithmetic (ACs, MACs) priced per op; no memory access or data movement"


@dataclass(frozen=True)
class EnergyModel:
    """Energy of one accumulate (AC) and one multiply-accumulate (MAC), in picojoules."""

    e_ac_pj: float
    e_mac_pj: float
    name: str = "custom"

    def __post_init__(self) -> None:
        if not (self.e_ac_pj >= 0 and self.e_mac_pj >= 0):
            raise SpikepruneError(
                f"energy model {self.name!r} needs non-negative per-op energies, got AC={self.e_ac_pj}, "
                f"MAC={self.e_mac_pj}"
            )

    def energy_pj(self, acs: float, macs: float) -> float:
        """Compute energy of ``acs`` accumulates and ``macs`` multiply-accumulates (memory not included)."""
        return acs * self.e_ac_pj + macs * self.e_mac_pj

    def to_dict(self) -> dict:
        return {**asdict(self), "note": COMPUTE_ONLY_NOTE}


FP32_45NM = EnergyModel(0.9, 4.6, "fp32_45nm")  # add 0.9, mult 3.7
FP16_45NM = EnergyModel(0.4, 1.5, "fp16_45nm")  # add 0.4, mult 1.1
INT8_45NM = EnergyModel(0.03, 0.23, "int8_45nm")  # add 0.03, mult 0.2

ENERGY_MODELS: dict[str, EnergyModel] = {m.name: m for m in (FP32_45NM, FP16_45NM, INT8_45NM)}


def energy_model(name: str) -> EnergyModel:
    """A preset by name (``fp32_45nm``, ``fp16_45nm``, ``int8_45nm``)."""
    try:
        return ENERGY_MODELS[name.lower()]
    except KeyError:
        raise SpikepruneError(f"unknown energy model {name!r}; choose one of {', '.join(ENERGY_MODELS)}") from None

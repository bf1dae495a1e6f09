"""The main job on the embedded digits: a dense spiking CNN, then the same training with SADP.

Each step is a normal run folder under ``out`` (``dense/``, ``sadp/``), so every figure printed can
be checked with ``spikeprune eval`` / ``spikeprune profile``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spikeprune.datapruning import PruningSchedule
from spikeprune.train import Trainer, make_config

QUICKSTART = dict(
    dataset="mnist5k",
    model="scnn",
    timesteps=4,
    batch_size=64,
    optimizer="adamw",
    lr=2e-3,
    weight_decay=1e-4,
    profile=True,
)
SADP_RATIO = 0.5


def run_quickstart(out: str | Path, epochs: int = 4, progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Train ``scnn`` (T=4) on ``mnist5k`` with full data and with SADP (r=0.5); return both summaries."""
    out = Path(out)
    base = {**QUICKSTART, "epochs": epochs, "progress": progress, "seed": seed}
    dense = Trainer(make_config(base, "quickstart settings"), out / "dense").fit()
    sadp_config = make_config({**base, "data_pruning": "sadp", "prune_ratio": SADP_RATIO}, "quickstart settings")
    sadp = Trainer(sadp_config, out / "sadp").fit()
    schedule = PruningSchedule(epochs)
    return {
        "dense": dense,
        "sadp": sadp,
        "sadp_speedup": dense["train_seconds"] / sadp["train_seconds"],
        "sadp_theoretical_speedup": schedule.theoretical_speedup(SADP_RATIO),
    }

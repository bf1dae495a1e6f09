"""The main job: train the default spiking CNN on the embedded digits, in a few minutes on a laptop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def run_quickstart(out: str | Path, epochs: int = 4, progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Train ``scnn`` (T=4) on ``mnist5k`` for ``epochs`` epochs into ``out``; return the summary."""
    config = make_config({**QUICKSTART, "epochs": epochs, "progress": progress, "seed": seed}, "quickstart settings")
    return Trainer(config, out).fit()

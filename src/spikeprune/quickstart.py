"""The main job on an embedded data set (mnist5k by default): a dense spiking CNN, the same training
with SADP data pruning, the dense model pruned to 90% sparsity with SLAMP and retrained for one epoch, and a 2:4 SpikeNM
network learned from scratch.

Each step is a normal run folder under ``out`` (``dense/``, ``sadp/``, ``slamp/``, ``spikenm/``), so every figure
printed can be checked with ``spikeprune eval`` / ``spikeprune profile``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spikeprune.datapruning import PruningSchedule
from spikeprune.prune_retrain import prune_run
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
SLAMP_SPARSITY = 0.9
SLAMP_FINETUNE_EPOCHS = 1
SPIKENM_PATTERN = "2:4"


def run_quickstart(
    out: str | Path, epochs: int = 4, progress: bool = True, seed: int = 0, dataset: str = "mnist5k"
) -> dict[str, Any]:
    """Dense ``scnn`` (T=4) on ``dataset``, SADP (r=0.5), SLAMP at 90% and SpikeNM 2:4; return the summaries."""
    out = Path(out)
    base = {**QUICKSTART, "dataset": dataset, "epochs": epochs, "progress": progress, "seed": seed}
    dense = Trainer(make_config(base, "quickstart settings"), out / "dense").fit()
    sadp_config = make_config({**base, "data_pruning": "sadp", "prune_ratio": SADP_RATIO}, "quickstart settings")
    sadp = Trainer(sadp_config, out / "sadp").fit()
    slamp = prune_run(
        out / "dense",
        out / "slamp",
        method="slamp",
        sparsity=SLAMP_SPARSITY,
        finetune_epochs=SLAMP_FINETUNE_EPOCHS,
        progress=progress,
    )
    spikenm_config = make_config(
        {**base, "sparsity": "nm", "nm": SPIKENM_PATTERN, "nm_method": "spikenm"}, "quickstart settings"
    )
    spikenm = Trainer(spikenm_config, out / "spikenm").fit()
    schedule = PruningSchedule(epochs)
    return {
        "dense": dense,
        "sadp": sadp,
        "slamp": slamp,
        "spikenm": spikenm,
        "sadp_speedup": dense["train_seconds"] / sadp["train_seconds"],
        "sadp_theoretical_speedup": schedule.theoretical_speedup(SADP_RATIO),
    }

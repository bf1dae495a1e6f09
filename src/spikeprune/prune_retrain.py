"""Prune a trained run and retrain it: the Python API behind ``spikeprune prune``.

Steps:

1. Load the run.
2. Measure it: accuracy and per-layer firing rates.
3. Compute masks with the chosen criterion. SLAMP first calibrates its temporal factors on a few
   training batches.
4. Optionally recalibrate the BatchNorm statistics.
5. Measure again.
6. Retrain with the masks fixed through the one Trainer, into a new run folder that can be resumed,
   evaluated and profiled like any other.

Iterative pruning repeats steps 3–5 over ``rounds`` rounds, with sparsity ``1 − (1 − s)^{i/rounds}``
after round ``i``; the rounds before the last retrain in memory.

It composes the trainer with the one-shot pruning of :mod:`spikeprune.sparsity.oneshot`, so it sits
above both (beside the quickstart).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from spikeprune.errors import SpikepruneError
from spikeprune.io import atomic_write_json, writing
from spikeprune.metrics import ProfileReport, profile
from spikeprune.sparsity.masks import FixedMasks, finalize
from spikeprune.sparsity.nm import parse_nm
from spikeprune.sparsity.oneshot import METHODS, prune_model
from spikeprune.train.checkpoint import save_tensor_groups
from spikeprune.train.rundir import lock_run, unlock_run
from spikeprune.train.trainer import Trainer, load_trained, profile_summary

INIT_NAME = "init.safetensors"


def calibration_batches(trainer: Trainer, count: int) -> list[torch.Tensor]:
    """The first ``count`` training batches (unaugmented order, fixed), as model inputs."""
    loader = DataLoader(trainer.train_set, batch_size=trainer.config.batch_size, shuffle=False)
    return [x.to(trainer.device) for x, _, _ in itertools.islice(loader, count)]


def _stage(report: ProfileReport) -> dict[str, Any]:
    return {
        "accuracy": report.totals.get("accuracy"),
        "firing_rates": {n.name: n.firing_rate for n in report.neurons},
        **profile_summary(report),
    }


def prune_run(
    checkpoint: str | Path,
    out: str | Path,
    *,
    method: str,
    sparsity: float = 0.0,
    nm: str | None = None,
    finetune_epochs: int = 0,
    rounds: int = 1,
    exclude_first: bool = False,
    exclude_last: bool = False,
    calibration: int = 8,
    slamp_power: float = 2.0,
    recalibrate_bn: bool = True,
    profile_batches: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Prune the run in ``checkpoint`` to ``sparsity`` with ``method``, retrain, write a run to ``out``.

    ``method="nm-magnitude"`` with ``nm="2:4"`` is one-shot magnitude N:M (NVIDIA's ASP recipe):
    the top-N magnitudes of every block of the layers that fit, then retraining with the masks fixed.
    """
    if method not in METHODS:
        raise SpikepruneError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    if rounds < 1 or finetune_epochs < 0 or calibration < 1:
        raise SpikepruneError("rounds and calibration batches must be >= 1 and finetune epochs >= 0")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpikepruneError(f"{out} is not an empty folder; choose a new --out for the pruned run")
    lock_run(out)
    try:
        return _prune_run(checkpoint, out, method, sparsity, nm, finetune_epochs, rounds, exclude_first, exclude_last,
                          calibration, slamp_power, recalibrate_bn, profile_batches, device, progress)  # fmt: skip
    finally:
        unlock_run(out)


def _prune_run(
    checkpoint, out, method, sparsity, nm, finetune_epochs, rounds, exclude_first, exclude_last,
    calibration, slamp_power, recalibrate_bn, profile_batches, device, progress,
) -> dict[str, Any]:  # fmt: skip
    source = load_trained(checkpoint, device=device)
    model = finalize(source.model)
    pattern = None
    if method == "nm-magnitude":
        if nm is None:
            raise SpikepruneError("method nm-magnitude needs an N:M pattern, e.g. nm='2:4'")
        pattern = parse_nm(nm)
        rounds = 1
    batches = calibration_batches(source, calibration)

    def measure() -> ProfileReport:
        return profile(
            model,
            source.test_set,
            batches=profile_batches,
            batch_size=source.config.batch_size * 2,
            device=source.device,
        )

    stages = {"before": _stage(measure())}
    per_round = [finetune_epochs // rounds + (1 if i < finetune_epochs % rounds else 0) for i in range(rounds)]
    factors = None
    for index in range(rounds):
        target = 1.0 - (1.0 - sparsity) ** ((index + 1) / rounds)
        masks, factors = prune_model(
            model,
            method,
            target,
            nm=nm,
            batches=batches,
            exclude_first=exclude_first,
            exclude_last=exclude_last,
            slamp_power=slamp_power,
            recalibrate_bn=recalibrate_bn,
        )
        if index == rounds - 1:
            stages["after_prune"] = _stage(measure())
            break
        if per_round[index]:  # intermediate retraining, in memory
            config = source.config.model_copy(
                update={"epochs": per_round[index], "progress": progress, "profile": False}
            )
            Trainer(config, None, model=model, sparsifier=FixedMasks(masks)).fit()
    modules = dict(model.named_modules())
    final_masks = {name: modules[name].weight_mask.clone() for name in masks}
    finalize(model)
    with writing(out / INIT_NAME, "initial weights"):
        save_tensor_groups(out / INIT_NAME, {"model": model.state_dict(), "mask": final_masks})
    config = source.config.model_copy(
        update={
            "epochs": per_round[-1],
            "sparsity": "fixed",
            "init_from": INIT_NAME,
            "progress": progress,
            "profile": True,
            "profile_batches": profile_batches,
            "sparsity_options": {"nm": nm} if pattern is not None else {},
        }
    )
    trainer = Trainer(config, out)
    summary = trainer.fit()
    stages["after_retrain"] = _stage(trainer.profile(profile_batches))
    summary["pruning"] = {
        "source": str(checkpoint),
        "method": method,
        "target_sparsity": sparsity if pattern is None else 1.0 - pattern[0] / pattern[1],
        "nm": nm,
        "rounds": rounds,
        "finetune_epochs": finetune_epochs,
        "layers": list(final_masks),
        "layer_density": {name: float(mask.mean()) for name, mask in final_masks.items()},
        "temporal_factors": factors,
        "slamp_power": slamp_power if method == "slamp" else None,
        "bn_recalibrated": recalibrate_bn,
        "stages": stages,
    }
    with writing(out / "summary.json", "run summary"):
        atomic_write_json(out / "summary.json", summary)
    return summary

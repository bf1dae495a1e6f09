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
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch.utils.data import DataLoader

from spikeprune.errors import SpikepruneError
from spikeprune.io import atomic_write_json, writing
from spikeprune.metrics import ProfileReport, profile
from spikeprune.sparsity.masks import FixedMasks, finalize
from spikeprune.sparsity.nm import parse_nm
from spikeprune.sparsity.oneshot import METHODS, prune_model
from spikeprune.train.checkpoint import save_tensor_groups
from spikeprune.train.config import TrainConfig, describe_validation, make_config
from spikeprune.train.rundir import lock_run, unlock_run
from spikeprune.train.trainer import Trainer, load_trained, profile_summary

INIT_NAME = "init.safetensors"


class PruneConfig(BaseModel):
    """What ``spikeprune prune`` does to a trained run; a recipe's YAML holds these keys."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(description="slamp, lamp, global, uniform, uniform-plus, erk or nm-magnitude")
    sparsity: float | None = Field(None, ge=0, lt=1, description="fraction of the pruned layers' weights set to 0")
    nm: str | None = Field(None, description="N:M pattern for nm-magnitude, e.g. 2:4")
    nm_policy: Literal["dense", "pad"] = Field(
        "dense", description="layers whose input size is not a multiple of M: keep dense, or pad"
    )
    finetune_epochs: int = Field(0, ge=0, description="retraining epochs with the masks fixed")
    finetune_lr: float | None = Field(None, gt=0, description="the retraining's learning rate (default: the run's)")
    rounds: int = Field(1, ge=1, description="iterative pruning: prune-retrain rounds")
    exclude_first: bool = False
    exclude_last: bool = False
    calibration: int = Field(8, ge=1, description="training batches for SLAMP's factors and BN recalibration")
    slamp_power: float = Field(2.0, ge=0, description="SLAMP's exponent p (0 = LAMP)")
    recalibrate_bn: bool = True

    @model_validator(mode="after")
    def _target(self) -> PruneConfig:
        if (self.method == "nm-magnitude") != (self.nm is not None) or (self.nm is None and self.sparsity is None):
            raise ValueError(
                "give --sparsity S (sparsity: S) for unstructured methods, "
                "or --method nm-magnitude with --nm N:M (nm: N:M)"
            )
        if self.method not in METHODS:
            raise ValueError(f"unknown pruning method {self.method!r}; choose one of {', '.join(METHODS)}")
        return self


def load_prune_config(path: str | Path | None, overrides: dict[str, Any]) -> PruneConfig:
    """A recipe's YAML (optional), then the flags given (``None`` values are ignored)."""
    values: dict[str, Any] = {}
    source = "prune settings"
    if path is not None:
        path, source = Path(path), f"prune config {path}"
        if not path.is_file():
            raise SpikepruneError(f"prune config {path} does not exist or is not a file; check the --config path")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise SpikepruneError(f"prune config {path} is not valid YAML: {error}".replace("\n", " ")) from None
        if not isinstance(loaded, dict):
            raise SpikepruneError(f"prune config {path} must hold a mapping of keys to values")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return PruneConfig(**values)
    except ValidationError as error:
        raise SpikepruneError(f"bad {source}: {describe_validation(error)}") from None


def retrain_config(config: TrainConfig, **update: Any) -> TrainConfig:
    """The run's settings for retraining with fixed masks, validated. The run's own sparsity settings
    (e.g. SpikeNM's, when a SpikeNM run is pruned further) give way: ``update`` names the new ones, or
    the caller passes its sparsifier to the Trainer."""
    keep = {"sparsity": "none", "sparsity_options": {}, "nm": "2:4", "nm_method": "spikenm"}
    return make_config({**config.model_dump(), **keep, **update}, "retraining settings")


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
    nm_policy: str = "dense",
    finetune_epochs: int = 0,
    finetune_lr: float | None = None,
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
        return _prune_run(
            checkpoint, out, method, sparsity, nm, nm_policy, finetune_epochs, finetune_lr, rounds, exclude_first,
            exclude_last, calibration, slamp_power, recalibrate_bn, profile_batches, device, progress,
        )  # fmt: skip
    finally:
        unlock_run(out)


def _prune_run(
    checkpoint, out, method, sparsity, nm, nm_policy, finetune_epochs, finetune_lr, rounds, exclude_first, exclude_last,
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
            nm_policy=nm_policy,
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
            lr = {"lr": finetune_lr} if finetune_lr is not None else {}
            config = retrain_config(source.config, epochs=per_round[index], progress=progress, profile=False, **lr)
            Trainer(config, None, model=model, sparsifier=FixedMasks(masks)).fit()
    modules = dict(model.named_modules())
    final_masks = {name: modules[name].weight_mask.clone() for name in masks}
    finalize(model)
    with writing(out / INIT_NAME, "initial weights"):
        save_tensor_groups(out / INIT_NAME, {"model": model.state_dict(), "mask": final_masks})
    config = retrain_config(
        source.config,
        epochs=per_round[-1],
        sparsity="fixed",
        init_from=INIT_NAME,
        progress=progress,
        profile=True,
        profile_batches=profile_batches,
        sparsity_options={"nm": nm} if pattern is not None else {},
        **({"lr": finetune_lr} if finetune_lr is not None else {}),
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
        "finetune_lr": finetune_lr,
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

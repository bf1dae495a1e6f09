"""Training configuration: one pydantic model, filled from YAML and command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spikeprune.errors import SpikepruneError


class TrainConfig(BaseModel):
    """Everything that defines a training run; saved as ``config.yaml`` in the run folder."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dataset: str = "mnist5k"
    data_root: str | None = None
    data_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the dataset's loader (event data: bin_by, size, ...)"
    )
    augment: bool = True
    model: str = "scnn"
    model_options: dict[str, Any] = Field(default_factory=dict)
    timesteps: int = Field(4, ge=1, le=1024)
    neuron: Literal["lif", "if", "plif"] = "lif"
    surrogate: Literal["atan", "sigmoid", "triangle"] = "atan"
    surrogate_alpha: float | None = Field(None, gt=0)
    surrogate_alpha_end: float | None = Field(None, gt=0, description="anneal sharpness to this value")
    learnable_alpha: bool = False
    epochs: int = Field(5, ge=0)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    amp: bool = False
    seed: int = 0
    device: str = "auto"
    num_workers: int = Field(0, ge=0)
    progress: bool = True
    tensorboard: bool | None = Field(None, description="None: write TensorBoard logs when installed")
    data_pruning: Literal["none", "sadp", "random", "loss", "ucb", "infobatch"] = "none"
    prune_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of examples skipped in a pruned epoch")
    data_pruning_options: dict[str, Any] = Field(default_factory=dict)
    sparsity: Literal["none", "fixed", "nm"] = Field(
        "none", description="fixed: train with the masks of init_from; nm: learn N:M masks during training"
    )
    nm: str = Field("2:4", description="N:M pattern for sparsity='nm'")
    nm_method: Literal["spikenm", "srste"] = "spikenm"
    sparsity_options: dict[str, Any] = Field(default_factory=dict, description="options of the sparsifier")
    init_from: str | None = Field(None, description="safetensors file of starting weights (and masks), beside the run")
    eval_every: int = Field(1, ge=1, description="evaluate on the test set every N epochs (and after the last)")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="also checkpoint every N training steps inside an epoch (exact resume from there)"
    )
    profile: bool = Field(False, description="after training, count SynOps/energy/density on the test set")
    profile_batches: int | None = Field(None, ge=1, description="limit the profile to this many test batches")

    @field_validator("nm")
    @classmethod
    def _pattern(cls, value: str) -> str:
        parts = value.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or not 1 <= int(parts[0]) < int(parts[1]):
            raise ValueError("an N:M pattern is two integers 1 <= N < M, e.g. 2:4")
        return value

    @model_validator(mode="after")
    def _no_silent_settings(self) -> TrainConfig:
        """A setting that would do nothing is a mistake: refuse it, naming the setting it needs."""
        if self.sparsity != "nm" and (self.nm != "2:4" or self.nm_method != "spikenm"):
            raise ValueError(
                "nm and nm_method take effect only with sparsity: nm (--sparsity-mode nm, implied by --nm on the "
                "command line); add it or drop them"
            )
        if self.sparsity == "nm" and self.nm_method == "spikenm" and self.sparsity_options.get("policy") == "pad":
            raise ValueError(
                "SpikeNM keeps layers whose input size is not a multiple of M dense; for padding them use "
                "--nm-method srste (or drop --nm-policy pad)"
            )
        if self.sparsity == "none" and self.sparsity_options:
            raise ValueError("sparsity_options take effect only with a sparsity method; add sparsity or drop them")
        if self.data_pruning == "none" and (self.prune_ratio > 0 or self.data_pruning_options):
            raise ValueError(
                "prune_ratio and data_pruning_options take effect only with a data pruning method "
                "(--data-pruning sadp|random|loss|ucb|infobatch); add one or drop them"
            )
        if self.data_pruning != "none" and self.prune_ratio == 0:
            raise ValueError(f"data_pruning={self.data_pruning} needs prune_ratio > 0 (--prune-ratio), e.g. 0.5")
        return self

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword options for :func:`spikeprune.models.build_model`."""
        options: dict[str, Any] = dict(
            timesteps=self.timesteps,
            neuron=self.neuron,
            surrogate=self.surrogate,
            surrogate_alpha=self.surrogate_alpha,
            learnable_alpha=self.learnable_alpha,
        )
        options.update(self.model_options)
        return options


def describe_validation(error: ValidationError) -> str:
    """A pydantic error as one line: each bad key, its value and what is wrong."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "config"
        if not item["loc"]:  # a rule across settings: its message says it all
            parts.append(str(item["msg"]).removeprefix("Value error, "))
            continue
        value, message = item.get("input"), str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}={value!r}: {message}" if item["type"] != "extra_forbidden" else f"unknown key {where!r}")
    return "; ".join(parts)


def make_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a dict into a :class:`TrainConfig`, turning pydantic errors into one clear line."""
    try:
        return TrainConfig(**values)
    except ValidationError as error:
        raise SpikepruneError(f"bad {source}: {describe_validation(error)}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (optional) and apply overrides (``None`` values are ignored)."""
    values: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = f"config file {path}"
        if path.is_dir():
            raise SpikepruneError(f"config file {path} is a folder; pass a YAML file (e.g. recipes/example.yaml)")
        if not path.is_file():
            raise SpikepruneError(f"config file {path} does not exist; check the --config path")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise SpikepruneError(f"config file {path} is not a text file; pass a YAML file") from None
        except yaml.YAMLError as error:
            raise SpikepruneError(f"config file {path} is not valid YAML: {error}".replace("\n", " ")) from None
        if not isinstance(loaded, dict):
            raise SpikepruneError(f"config file {path} must hold a mapping of keys to values")
        values.update(loaded)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return make_config(values, source)

"""The one training loop of spikeprune.

It trains any model on any indexed dataset; data pruners choose each epoch's examples and loss
weights, sparsifiers act around the optimizer step (see :mod:`spikeprune.datapruning.base` and
:mod:`spikeprune.sparsity.base`). Under
``torchrun`` every rank follows the same plan and visits a disjoint shard of it.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from spikeprune.data import build_dataset, dataset_info
from spikeprune.datapruning import DataPruner, EpochPlan, StepStats, build_data_pruner
from spikeprune.errors import SpikepruneError
from spikeprune.io import atomic_write_json, atomic_write_text, writing
from spikeprune.metrics import ProfileReport, profile
from spikeprune.models import build_model
from spikeprune.snn import kernels, set_surrogate_alpha
from spikeprune.snn.surrogate import Surrogate
from spikeprune.sparsity import Sparsifier, build_sparsifier
from spikeprune.train.checkpoint import (
    checkpoint_files,
    has_checkpoint,
    load_checkpoint,
    load_tensor_groups,
    save_checkpoint,
)
from spikeprune.train.config import TrainConfig, make_config
from spikeprune.train.distributed import DistInfo, all_gather_cat, all_reduce_sum, init_distributed, sync_buffers
from spikeprune.train.rundir import clean_run, lock_run, unlock_run

LOG_NAME = "log.jsonl"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RUNTIME_KEYS = ("progress", "num_workers", "device", "tensorboard", "eval_every", "checkpoint_every_steps")
PROFILE_NAME = "profile.json"
PROFILE_SUMMARY_KEYS = ("density", "effective_synops", "acs", "macs", "dense_synops", "energy_pj", "mean_firing_rate")
SUMMARY_NAME = "summary.json"
CONFIG_NAME = "config.yaml"


class TrainingDiverged(SpikepruneError):
    """The loss or the weights stopped being finite; the run stopped without saving them."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run at a step boundary, after a checkpoint of that point."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = int(signum)
        self.message = message


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpikepruneError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpikepruneError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    return device


def lr_factor(step: int, total_steps: int, schedule: str) -> float:
    """Learning-rate multiplier at ``step`` of ``total_steps`` (cosine decays to 0 at the last step)."""
    if schedule == "constant" or total_steps <= 1:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def data_options(config: TrainConfig) -> dict[str, Any]:
    """The dataset options of a run: ``data_options``, plus T for event frames (the model's ``timesteps``)."""
    options = dict(config.data_options)
    if dataset_info(config.dataset).event_frames:
        options.setdefault("timesteps", config.timesteps)
    return options


def model_spec(config: TrainConfig, info: Any = None) -> dict[str, Any]:
    """What builds a run's model: ``build_model(spec["model"], spec["input_shape"], spec["num_classes"],
    **spec["options"])``, from its config and the dataset's info (event data read with encoder 'frames')."""
    options = config.model_kwargs()
    if info is not None and info.event_frames and options.setdefault("encoder", "frames") != "frames":
        raise SpikepruneError(
            f"dataset {info.name!r} gives event frames [T, 2, H, W]; models read them with encoder "
            f"'frames', not {options['encoder']!r}: remove 'encoder' from model_options"
        )
    return {
        "model": config.model,
        "input_shape": tuple(info.input_shape) if info is not None else None,
        "num_classes": info.num_classes if info is not None else 10,
        "options": options,
    }


def _batch_count(examples: int, batch_size: int) -> int:
    """Batches per rank; a trailing batch of one example is merged into the previous one."""
    count = math.ceil(examples / batch_size)
    return count - 1 if count > 1 and examples % batch_size == 1 else count


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 over all parameters and buffers (bit-exact comparison of replicas)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def read_run_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise SpikepruneError(
            f"{run_dir} is not a spikeprune run folder (no {CONFIG_NAME}); pass a folder written by 'spikeprune train'"
        )
    return make_config(yaml.safe_load(path.read_text()) or {}, f"config of run {run_dir}")


class Trainer:
    """Train and evaluate a model from a :class:`TrainConfig`.

    Args:
        config: the run's settings.
        out_dir: run folder (config, log, checkpoint, summary); ``None`` keeps nothing on disk.
        model, train_set, test_set: override what the config would build (used by the Python API).
        data_pruner, sparsifier: the extension points; defaults do nothing special.
    """

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        *,
        model: nn.Module | None = None,
        train_set: Dataset | None = None,
        test_set: Dataset | None = None,
        data_pruner: DataPruner | None = None,
        sparsifier: Sparsifier | None = None,
        base_dir: str | Path | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        base_dir = Path(base_dir) if base_dir is not None else self.out_dir
        self.device = resolve_device(config.device)
        self.dist: DistInfo = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if train_set is None or test_set is None:
            built_train, built_test = build_dataset(
                config.dataset,
                root=config.data_root,
                seed=config.seed,
                augment=config.augment,
                options=data_options(config),
            )
            train_set = train_set if train_set is not None else built_train
            test_set = test_set if test_set is not None else built_test
        self.train_set, self.test_set = train_set, test_set
        if model is None:
            torch.manual_seed(config.seed)
            spec = model_spec(config, getattr(train_set, "info", None))
            model = build_model(spec["model"], spec["input_shape"], spec["num_classes"], **spec["options"])
        masks: dict[str, Tensor] = {}
        if config.init_from is not None:
            path = Path(config.init_from)
            path = path if path.is_absolute() or base_dir is None else base_dir / path
            initial = load_tensor_groups(path)
            model.load_state_dict(initial["model"])
            masks = initial.get("mask", {})
        if sparsifier is None:
            sparsifier = build_sparsifier(
                config.sparsity, masks=masks, nm=config.nm, method=config.nm_method, options=config.sparsity_options
            )
        self.model = model.to(self.device)
        if data_pruner is None:
            data_pruner = build_data_pruner(
                config.data_pruning, config.prune_ratio, config.epochs, seed=config.seed, **config.data_pruning_options
            )
        self.data_pruner = data_pruner
        self.sparsifier = sparsifier
        self.data_pruner.attach(self.model)
        self.sparsifier.attach(self.model)
        self.optimizer = self._build_optimizer()
        self.net: nn.Module = self.model
        if self.dist.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.epoch = 0
        self.step = 0
        self._position: dict[str, Any] | None = None  # where inside an epoch a restored checkpoint was written
        self._stop_signal: int | None = None
        self._saved = False
        self._locked = False
        self.total_steps = sum(self.steps_in_epoch(e) for e in range(config.epochs))
        self.history: list[dict[str, Any]] = []
        self._alpha0 = self._initial_alpha()

    # ----------------------------------------------------------------------------- setup
    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        extra = self.sparsifier.param_groups()
        claimed = {id(p) for group in extra for p in group["params"]}
        decay, no_decay = [], []
        for param in self.model.parameters():
            if not param.requires_grad or id(param) in claimed:
                continue
            (no_decay if param.dim() <= 1 else decay).append(param)
        groups: list[dict[str, Any]] = [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        groups += extra
        for group in groups:
            group.setdefault("base_lr", group.get("lr", cfg.lr))
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        return torch.optim.AdamW(groups, lr=cfg.lr)

    def _initial_alpha(self) -> float | None:
        for module in self.model.modules():
            if isinstance(module, Surrogate):
                return float(module.alpha)
        return None

    # ----------------------------------------------------------------------------- schedule
    def steps_in_epoch(self, epoch: int, size: int | None = None) -> int:
        if size is None:
            size = self.data_pruner.epoch_size(epoch, len(self.train_set))
        return _batch_count(math.ceil(size / self.dist.world_size), self.config.batch_size)

    def _plan_total_steps(self, epoch: int, plan_size: int, done: int = 0) -> None:
        """Steps of the whole run: those before this epoch, this epoch's (``done`` of them already run, when
        resuming inside it), and the pruner's sizes for the rest.

        Recomputed each epoch, so methods whose epoch sizes are random (InfoBatch) still end their
        cosine schedule at the last step that really runs.
        """
        future = sum(self.steps_in_epoch(e) for e in range(epoch + 1, self.config.epochs))
        self.total_steps = self.step - done + self.steps_in_epoch(epoch, plan_size) + future

    def _set_lr(self) -> None:
        factor = lr_factor(self.step, self.total_steps, self.config.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def _anneal_surrogate(self, epoch: int) -> None:
        cfg = self.config
        if cfg.surrogate_alpha_end is None or self._alpha0 is None:
            return
        progress = epoch / max(cfg.epochs - 1, 1)
        set_surrogate_alpha(self.model, self._alpha0 * (cfg.surrogate_alpha_end / self._alpha0) ** progress)

    # ----------------------------------------------------------------------------- data
    def _epoch_batches(self, plan: EpochPlan, epoch: int) -> list[list[int]]:
        """Shuffle the plan (seeded by epoch), shard it across ranks (equal lengths), cut into batches."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        order = plan.indices[torch.randperm(len(plan.indices), generator=generator)]
        world = self.dist.world_size
        per_rank = math.ceil(len(order) / world)
        if per_rank * world > len(order):  # pad by repeating the start, as DistributedSampler does
            order = torch.cat([order, order[: per_rank * world - len(order)]])
        shard = order[self.dist.rank :: world].tolist()
        size = self.config.batch_size
        batches = [shard[i : i + size] for i in range(0, len(shard), size)]
        if len(batches) > 1 and len(batches[-1]) == 1:  # BatchNorm cannot train on one example
            batches[-2] += batches.pop()
        assert len(batches) == _batch_count(len(shard), size)
        return batches

    def _loader(self, dataset: Dataset, batches: list[list[int]]) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # its base seed must not come from the global RNG (exact resume)
        )

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp)

    # ----------------------------------------------------------------------------- loop
    def train_epoch(self) -> dict[str, Any]:
        """One epoch over the data pruner's plan; returns the epoch's training figures.

        After a checkpoint written inside this epoch, it continues at the next batch of the saved
        plan, with the saved running totals, so the epoch ends exactly as an uninterrupted one.
        """
        cfg, epoch = self.config, self.epoch
        self.net.train()
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        self._anneal_surrogate(epoch)
        self.sparsifier.on_epoch_start(epoch, cfg.epochs)
        position, self._position = self._position, None
        if position is not None:  # the epoch-start hooks ran; put the checkpointed states back over them
            self.model.load_state_dict(position["model"])
            self.sparsifier.load_state_dict(position["sparsifier"])
            plan, done = position["plan"], position["batches_done"]
            totals, elapsed = position["totals"].to(self.device), position["seconds"]
        else:
            plan, done = self.data_pruner.plan(epoch, len(self.train_set)), 0
            totals, elapsed = torch.zeros(3, dtype=torch.float64, device=self.device), 0.0  # loss, correct, count
        self._plan_total_steps(epoch, len(plan.indices), done)
        weight_of = None
        if plan.weights is not None:
            weight_of = torch.zeros(len(self.train_set))
            weight_of[plan.indices] = plan.weights.float()
        batches = self._epoch_batches(plan, epoch)
        started = time.perf_counter() - elapsed
        progress = self._progress(len(batches), f"epoch {epoch + 1}/{cfg.epochs}", done)
        every = cfg.checkpoint_every_steps
        for batch, (x, y, idx) in enumerate(self._loader(self.train_set, batches[done:]), start=done + 1):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            self._set_lr()
            with self._autocast():
                logits = self.net(x)
                losses = F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=cfg.label_smoothing)
            if weight_of is not None:
                loss = (losses * weight_of[idx].to(self.device)).mean()
            else:
                loss = losses.mean()
            extra = self.sparsifier.regularization()
            if extra is not None:
                loss = loss + extra
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.sparsifier.before_step()
            self.optimizer.step()
            self.sparsifier.after_step()
            self.step += 1
            detached = losses.detach()
            self._observe(idx, y, logits.detach(), detached)
            totals[0] += detached.sum()
            totals[1] += (logits.argmax(1) == y).sum()
            totals[2] += len(y)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{totals[0] / max(totals[2], 1):.3f}")
            if batch < len(batches) and (self._stop_signal is not None or (every and self.step % every == 0)):
                seconds = time.perf_counter() - started
                where = {"plan": plan, "batches_done": batch, "totals": totals, "seconds": seconds}
                self._check_finite(totals, f"epoch {epoch + 1}, step {batch} of {len(batches)}")
                self.save(where)
                if self._stop_signal is not None:
                    if progress is not None:
                        progress.close()
                    raise self._interrupted(f"epoch {epoch + 1}, step {batch} of {len(batches)}")
        if progress is not None:
            progress.close()
        self.sparsifier.on_epoch_end()
        seconds = time.perf_counter() - started
        sync_buffers(self.model, self.dist)
        totals = all_reduce_sum(totals, self.dist).cpu()
        self._check_finite(totals, f"epoch {epoch + 1}")
        return {
            "epoch": epoch + 1,
            "train_loss": float(totals[0] / max(totals[2], 1)),
            "train_accuracy": float(totals[1] / max(totals[2], 1)),
            "examples_visited": int(totals[2]),
            "steps": len(batches),
            "train_seconds": seconds,
            "lr": self.optimizer.param_groups[0]["lr"],
            "plan_sha256": self._plan_digests(plan),
            **self.data_pruner.epoch_metrics(),
            **self.sparsifier.epoch_metrics(),
        }

    def _check_finite(self, totals: Tensor, where: str) -> None:
        """Stop a run whose loss or weights stopped being finite, before anything of it is saved."""
        if bool(torch.isfinite(totals).all()) and all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            return
        last = f"its last checkpoint (after epoch {self.epoch}) is kept" if self._saved else "nothing was saved"
        raise TrainingDiverged(
            f"training diverged in {where}: the loss or the weights are no longer finite; {last}. Lower the "
            "learning rate (--lr), or use a smaller --batch-size or the adamw optimizer"
        )

    def _interrupted(self, where: str) -> Interrupted:
        signum = self._stop_signal or signal.SIGINT
        name = signal.Signals(signum).name
        if self.out_dir is None:
            return Interrupted(signum, f"{name}: stopped at {where}; nothing was saved (no run folder)")
        return Interrupted(
            signum,
            f"{name}: stopped at {where}; a checkpoint of that exact point is in {self.out_dir}; continue with: "
            f"spikeprune train --out {self.out_dir} --resume",
        )

    def _plan_digests(self, plan: EpochPlan) -> list[str]:
        """One digest of (indices, weights) per rank: equal digests mean every rank drew the same plan."""
        digest = hashlib.sha256(plan.indices.long().numpy().tobytes())
        if plan.weights is not None:
            digest.update(plan.weights.float().numpy().tobytes())
        digests = [digest.hexdigest()[:16]]
        if self.dist.enabled:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(gathered, digests[0])
            digests = gathered
        return digests

    def _observe(self, idx: Tensor, y: Tensor, logits: Tensor, losses: Tensor) -> None:
        if not self.data_pruner.observes:
            return  # nothing listens: skip the gather
        extras = {
            name: all_gather_cat(value.detach(), self.dist).cpu() for name, value in self.data_pruner.collect().items()
        }
        stats = StepStats(
            indices=all_gather_cat(idx.to(self.device), self.dist).cpu(),
            targets=all_gather_cat(y, self.dist).cpu(),
            logits=all_gather_cat(logits.float(), self.dist).cpu(),
            losses=all_gather_cat(losses, self.dist).cpu(),
            extras=extras,
        )
        self.data_pruner.observe(stats)

    def _progress(self, total: int, description: str, done: int = 0):
        if not (self.config.progress and self.dist.is_main and sys.stderr.isatty()):
            return None  # a bar redrawn into a log file is noise; the epoch log has the figures
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=done, desc=description, leave=False, dynamic_ncols=True)

    @torch.no_grad()
    def evaluate(self, dataset: Dataset | None = None) -> dict[str, float]:
        """Top-1/top-5 accuracy and mean loss on ``dataset`` (default: the test set), sharded across ranks.

        Stochastic encoders draw from a generator seeded by the run's seed, apart from the training RNG:
        the same model always gets the same figures, and testing (or how often) changes no weight.
        """
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            return self._evaluate(dataset)

    def _evaluate(self, dataset: Dataset | None) -> dict[str, float]:
        dataset = dataset if dataset is not None else self.test_set
        self.net.eval()
        indices = list(range(self.dist.rank, len(dataset), self.dist.world_size))
        size = self.config.batch_size * 2
        batches = [indices[i : i + size] for i in range(0, len(indices), size)]
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, top1, top5, count
        started = time.perf_counter()
        for x, y, _ in self._loader(dataset, batches):
            x, y = x.to(self.device), y.to(self.device)
            with self._autocast():
                logits = self.model(x).float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            totals[0] += F.cross_entropy(logits, y, reduction="sum")
            totals[1] += (top[:, 0] == y).sum()
            totals[2] += (top == y[:, None]).any(1).sum()
            totals[3] += len(y)
        totals = all_reduce_sum(totals, self.dist).cpu()
        count = max(float(totals[3]), 1.0)
        return {
            "test_loss": float(totals[0]) / count,
            "test_accuracy": float(totals[1]) / count,
            "test_top5": float(totals[2]) / count,
            "eval_seconds": time.perf_counter() - started,
        }

    def profile(self, batches: int | None = None) -> ProfileReport:
        """SynOps, spikes, energy and density of the model on the test set (see :mod:`spikeprune.metrics`)."""
        return profile(
            self.model, self.test_set, batches=batches, batch_size=self.config.batch_size * 2, device=self.device
        )

    # ----------------------------------------------------------------------------- persistence
    def _states(self) -> dict[str, Any]:
        states: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "data_pruner": self.data_pruner.state_dict(),
            "sparsifier": self.sparsifier.state_dict(),
        }
        if self.device.type == "cuda":
            states["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def save(self, position: dict[str, Any] | None = None) -> None:
        """Checkpoint the run: after ``self.epoch`` epochs, or inside the next one at ``position``
        (the epoch's plan, the batches done, the running totals and seconds)."""
        if self.out_dir is None or not self.dist.is_main:
            return
        states = self._states()
        meta: dict[str, Any] = {"step": self.step, "history": self.history, "config": self.config.model_dump()}
        if position is not None:
            plan = position["plan"]
            states["position"] = {"indices": plan.indices, "totals": position["totals"].detach().cpu()}
            if plan.weights is not None:
                states["position"]["weights"] = plan.weights
            meta["position"] = {"batches_done": position["batches_done"], "seconds": position["seconds"]}
        save_checkpoint(self.out_dir, self.epoch, states, meta, step=self.step if position is not None else None)
        self._saved = True

    def restore(self, run_dir: Path) -> None:
        """Load a run folder's checkpoint: weights, optimizer, RNG, hook states, epoch and step, and the
        position inside an epoch when the checkpoint was written there."""
        epoch, states, meta = load_checkpoint(run_dir)
        try:
            self.model.load_state_dict(states["model"])
            self.optimizer.load_state_dict(states["optimizer"])
            self.data_pruner.load_state_dict(states["data_pruner"])
            self.sparsifier.load_state_dict(states["sparsifier"])
            self.epoch, self.step, self.history = epoch, int(meta["step"]), list(meta["history"])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise SpikepruneError(
                f"the checkpoint in {run_dir} does not fit this model or its settings ({str(error).splitlines()[0]}); "
                "resume with the settings it was written with, or start a new --out"
            ) from None
        torch.set_rng_state(states["rng"]["torch"])
        if "cuda" in states["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["rng"]["cuda"], self.device)
        self._saved = True
        self._position = None
        if "position" in meta:
            saved = states["position"]
            self._position = {
                "plan": EpochPlan(saved["indices"], saved.get("weights")),
                "batches_done": int(meta["position"]["batches_done"]),
                "totals": saved["totals"],
                "seconds": float(meta["position"]["seconds"]),
                "model": states["model"],
                "sparsifier": states["sparsifier"],
            }

    def _prepare_out_dir(self, resume: bool) -> None:
        """Lock the run folder, clear what a killed writer left, and start or continue the run in it."""
        if self.out_dir is None:
            if resume:
                raise SpikepruneError("--resume needs the run folder: pass --out DIR of the run to continue")
            return
        if not self.dist.is_main:
            if resume and has_checkpoint(self.out_dir):
                self.restore(self.out_dir)
            return
        lock_run(self.out_dir)
        self._locked = True
        clean_run(self.out_dir, keep=checkpoint_files(self.out_dir))
        if resume and has_checkpoint(self.out_dir):
            saved = read_run_config(self.out_dir)
            changed = {
                key
                for key, value in self.config.model_dump().items()
                if key not in RUNTIME_KEYS and getattr(saved, key) != value
            }
            if changed:
                raise SpikepruneError(
                    f"run {self.out_dir} was started with different settings ({', '.join(sorted(changed))}); "
                    "resume with the same settings (leave those flags out) or start a new --out"
                )
            self.restore(self.out_dir)
            return
        if resume and not (self.out_dir / CONFIG_NAME).is_file():
            raise SpikepruneError(f"nothing to resume in {self.out_dir}: it holds no run; drop --resume to start one")
        if resume:  # killed before its first checkpoint: nothing to continue from
            print(f"note: {self.out_dir} holds no checkpoint yet; starting the run from the beginning", file=sys.stderr)
        elif has_checkpoint(self.out_dir):
            raise SpikepruneError(
                f"{self.out_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        with writing(self.out_dir / CONFIG_NAME, "run config"):
            atomic_write_text(self.out_dir / CONFIG_NAME, yaml.safe_dump(self.config.model_dump(), sort_keys=False))

    def _write_log(self) -> None:
        if self.out_dir is None or not self.dist.is_main:
            return
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        with writing(self.out_dir / LOG_NAME, "training log"):
            atomic_write_text(self.out_dir / LOG_NAME, lines)

    def _tensorboard(self):
        if self.out_dir is None or not self.dist.is_main or self.config.tensorboard is False:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if self.config.tensorboard:
                raise SpikepruneError(
                    "tensorboard=true but TensorBoard is not installed; pip install tensorboard"
                ) from None
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    # ----------------------------------------------------------------------------- run
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for the configured epochs (continuing a saved run with ``resume``); return the summary.

        With a run folder, SIGINT and SIGTERM stop the run at the next step boundary, after a checkpoint
        of that exact point (raising :class:`Interrupted`); a loss or weights that stop being finite stop
        it with :class:`TrainingDiverged`, keeping the last good checkpoint.
        """
        try:
            self._prepare_out_dir(resume)
            if self.device.type == "cpu":
                kernels.warm()  # loading the compiled neuron kernels is not part of any epoch's time
            with self._signals():
                writer = self._tensorboard()
                try:
                    while self.epoch < self.config.epochs:
                        record = self.train_epoch()
                        if (self.epoch + 1) % self.config.eval_every == 0 or self.epoch + 1 == self.config.epochs:
                            record.update(self.evaluate())
                        self.epoch += 1
                        self.history.append(record)
                        self.save()
                        self._write_log()
                        if writer is not None:
                            for key, value in record.items():
                                if key != "epoch":
                                    writer.add_scalar(key, value, record["epoch"])
                        if self._stop_signal is not None and self.epoch < self.config.epochs:
                            raise self._interrupted(f"the end of epoch {self.epoch}")
                    if not self.history:  # epochs=0 (e.g. pruning without retraining): still leave a checkpoint
                        self.save()
                finally:
                    if writer is not None:
                        writer.close()
            return self._finish()
        finally:
            if self._locked:
                unlock_run(self.out_dir)
                self._locked = False

    @contextmanager
    def _signals(self):
        """While training into a run folder (main thread, one process): SIGINT/SIGTERM ask for a clean stop."""
        if self.out_dir is None or self.dist.enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def request(signum, frame):
            self._stop_signal = signum
            for sig in STOP_SIGNALS:  # a second signal acts at once, as usual
                signal.signal(sig, previous[sig])

        previous = {sig: signal.signal(sig, request) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig in STOP_SIGNALS:
                signal.signal(sig, previous[sig])

    def _finish(self) -> dict[str, Any]:
        digests = [parameter_digest(self.model)]
        if self.dist.enabled:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(gathered, digests[0])
            digests = gathered
        last = self.history[-1] if self.history and "test_accuracy" in self.history[-1] else self.evaluate()
        summary = {
            "test_accuracy": last["test_accuracy"],
            "test_top5": last["test_top5"],
            "test_loss": last["test_loss"],
            "epochs": len(self.history),
            "train_seconds": sum(r["train_seconds"] for r in self.history),
            "seconds_per_epoch": [r["train_seconds"] for r in self.history],
            "examples_visited": sum(r["examples_visited"] for r in self.history),
            "data_pruning": self.config.data_pruning,
            "prune_ratio": self.config.prune_ratio,
            "world_size": self.dist.world_size,
            "parameter_sha256": digests,
            "dataset": self.config.dataset,
            "model": self.config.model,
        }
        if self.config.profile and self.dist.is_main:
            report = self.profile(self.config.profile_batches)
            summary.update(profile_summary(report))
            if self.out_dir is not None:
                with writing(self.out_dir / PROFILE_NAME, "profile"):
                    report.save_json(self.out_dir / PROFILE_NAME)
        if self.out_dir is not None and self.dist.is_main:
            with writing(self.out_dir / SUMMARY_NAME, "run summary"):
                atomic_write_json(self.out_dir / SUMMARY_NAME, summary)
        return summary


def profile_summary(report: ProfileReport) -> dict[str, float]:
    """The per-sample profile totals that go into ``summary.json``."""
    return {key: report.totals[key] for key in PROFILE_SUMMARY_KEYS}


def record_profile(run_dir: str | Path, report: ProfileReport) -> None:
    """Save a profile beside a run and add its totals to the run's ``summary.json`` (holding the run's lock)."""
    run_dir = Path(run_dir)
    lock_run(run_dir)
    try:
        with writing(run_dir / PROFILE_NAME, "profile"):
            report.save_json(run_dir / PROFILE_NAME)
        path = run_dir / SUMMARY_NAME
        summary = json.loads(path.read_text()) if path.is_file() else {}
        summary.update(profile_summary(report))
        with writing(path, "run summary"):
            atomic_write_json(path, summary)
    finally:
        unlock_run(run_dir)


def load_trained(run_dir: str | Path, device: str = "auto") -> Trainer:
    """A Trainer for a finished or partial run folder, with its checkpoint's weights loaded."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    config = config.model_copy(update={"device": device, "progress": False})
    trainer = Trainer(config, None, base_dir=run_dir)
    trainer.restore(run_dir)
    return trainer

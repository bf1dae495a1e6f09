"""Command line: a thin layer over the Python API (``spikeprune --help``)."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import typer

from spikeprune.errors import SpikepruneError
from spikeprune.io import writing

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Make spiking neural networks cheaper to train and to run.",
)


def _d(key: str, text: str) -> str:
    """A train option's help: its meaning and the config default it falls back to."""
    from spikeprune.train.config import TrainConfig

    default = TrainConfig.model_fields[key].default
    return f"{text} (default: {'none' if default is None else default}, or the --config file's)"


@app.command()
def train(
    config: Path | None = typer.Option(
        None, "--config", help="YAML file of config keys, e.g. recipes/example.yaml (default: none)"
    ),
    dataset: str | None = typer.Option(None, help=_d("dataset", "data set name (see 'spikeprune datasets')")),
    data_root: str | None = typer.Option(None, "--data-root", help=_d("data_root", "folder holding local data")),
    model: str | None = typer.Option(None, help=_d("model", "model name (see 'spikeprune models')")),
    width: float | None = typer.Option(
        None,
        "--width",
        help="channel multiplier of the deep models (default: 1, the papers' size; e.g. 0.125 on a CPU)",
    ),
    epochs: int | None = typer.Option(None, help=_d("epochs", "training epochs")),
    timesteps: int | None = typer.Option(None, "--timesteps", "-T", help=_d("timesteps", "time steps T")),
    batch_size: int | None = typer.Option(None, "--batch-size", help=_d("batch_size", "examples per batch")),
    lr: float | None = typer.Option(None, help=_d("lr", "learning rate")),
    optimizer: str | None = typer.Option(None, help=_d("optimizer", "sgd or adamw")),
    seed: int | None = typer.Option(None, help=_d("seed", "seed of weights, data order and sampling")),
    device: str | None = typer.Option(None, help=_d("device", "auto, cpu, cuda or cuda:N")),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help=_d("amp", "bfloat16 autocast")),
    data_pruning: str | None = typer.Option(
        None, "--data-pruning", help=_d("data_pruning", "none, sadp, random, loss, ucb or infobatch")
    ),
    prune_ratio: float | None = typer.Option(
        None, "--prune-ratio", help=_d("prune_ratio", "fraction of examples skipped per pruned epoch")
    ),
    sparsity_mode: str | None = typer.Option(
        None,
        "--sparsity-mode",
        help=_d("sparsity", "none; nm: learn N:M masks while training (implied by --nm/--nm-method); fixed"),
    ),
    nm: str | None = typer.Option(None, "--nm", help=_d("nm", "N:M pattern learned while training, e.g. 2:4")),
    nm_method: str | None = typer.Option(None, "--nm-method", help=_d("nm_method", "spikenm or srste")),
    nm_policy: str | None = typer.Option(
        None,
        "--nm-policy",
        help="layers whose input size is not a multiple of M: dense (keep them dense) or pad (SR-STE only) "
        "(default: dense)",
    ),
    out: Path | None = typer.Option(None, "--out", help="run folder (default: runs/<dataset>-<model>-<time>)"),
    resume: bool = typer.Option(
        False, "--resume", help="continue the run in --out exactly where it stopped (default: off)"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on a terminal"),
) -> None:
    """Train a model; writes config, log, checkpoint and summary.json into the run folder."""
    from spikeprune.train import Trainer, load_config, make_config
    from spikeprune.train.trainer import CONFIG_NAME, read_run_config

    overrides = dict(
        dataset=dataset,
        data_root=data_root,
        model=model,
        epochs=epochs,
        timesteps=timesteps,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        device=device,
        amp=amp,
        progress=progress,
        data_pruning=data_pruning,
        prune_ratio=prune_ratio,
        sparsity="nm" if sparsity_mode is None and (nm or nm_method) else sparsity_mode,
        nm=nm,
        nm_method=nm_method,
        sparsity_options={"policy": nm_policy} if nm_policy else None,
    )
    if epochs is not None and epochs < 1:
        raise SpikepruneError(f"--epochs must be at least 1 for train, got {epochs}")
    if resume and out is None:
        raise SpikepruneError("--resume needs --out: the run folder to continue")
    if resume and (out / CONFIG_NAME).is_file():
        # continue with the run's own settings; only what is given explicitly must agree with them
        cfg = make_config(
            {**read_run_config(out).model_dump(), **load_config(config, overrides).model_dump(exclude_unset=True)},
            "settings",
        )
    else:
        cfg = load_config(config, overrides)
    if width is not None:
        cfg = make_config({**cfg.model_dump(), "model_options": {**cfg.model_options, "width": width}})
    if out is None:
        out = Path("runs") / f"{cfg.dataset}-{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    trainer = Trainer(cfg, out)
    with _interruptible():
        summary = trainer.fit(resume=resume)
    if trainer.dist.is_main:
        _print_summary(summary, out)


@app.command("eval")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="run folder written by 'spikeprune train'"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    with_profile: bool = typer.Option(False, "--profile", help="add SynOps, energy and density totals (default: off)"),
) -> None:
    """Evaluate a run's checkpoint on its test set; prints JSON."""
    from spikeprune.train import load_trained
    from spikeprune.train.trainer import profile_summary

    trainer = load_trained(checkpoint, device=device)
    result = trainer.evaluate()
    if with_profile:
        result.update(profile_summary(trainer.profile()))
    typer.echo(json.dumps(result, indent=2))


@app.command()
def profile(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="run folder written by 'spikeprune train'"),
    json_path: Path | None = typer.Option(
        None, "--json", help="also write the full report here (default: only the run folder's profile.json)"
    ),
    batches: int | None = typer.Option(None, help="profile only this many test batches (default: all)"),
    energy: str = typer.Option("fp32_45nm", help="energy preset: fp32_45nm, fp16_45nm, int8_45nm"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
) -> None:
    """Per-layer SynOps (effective and dense), firing rates, energy and density of a run on its test set.

    Saves profile.json in the run folder and adds the totals to its summary.json.
    """
    from spikeprune.metrics import energy_model
    from spikeprune.metrics import profile as run_profile
    from spikeprune.train import load_trained
    from spikeprune.train.trainer import record_profile

    preset = energy_model(energy)
    trainer = load_trained(checkpoint, device=device)
    report = run_profile(
        trainer.model,
        trainer.test_set,
        batches=batches,
        batch_size=trainer.config.batch_size * 2,
        device=trainer.device,
        energy=preset,
    )
    typer.echo(report.table())
    record_profile(checkpoint, report)
    if json_path is not None:
        with writing(json_path, "profile"):
            report.save_json(json_path)


@app.command()
def prune(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="trained run folder to prune"),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="YAML of these settings (e.g. a recipe's *-slamp.yaml); flags override it (default: none)",
    ),
    method: str | None = typer.Option(
        None,
        help="slamp, lamp, global, uniform, uniform-plus, erk (unstructured), or nm-magnitude (one-shot N:M) "
        "(required, here or in --config)",
    ),
    sparsity: float | None = typer.Option(
        None,
        "--sparsity",
        help="unstructured methods: fraction of the pruned layers' weights set to 0, in [0, 1) (required for them)",
    ),
    nm: str | None = typer.Option(
        None, "--nm", help="N:M pattern for --method nm-magnitude, e.g. 2:4 (required for it)"
    ),
    nm_policy: str | None = typer.Option(
        None,
        "--nm-policy",
        help="nm-magnitude: layers whose input size is not a multiple of M: dense or pad (default: dense)",
    ),
    finetune_epochs: int | None = typer.Option(
        None, "--finetune-epochs", help="retraining epochs with the masks fixed (default: 0)"
    ),
    finetune_lr: float | None = typer.Option(
        None, "--finetune-lr", help="retraining learning rate (default: the run's)"
    ),
    rounds: int | None = typer.Option(None, help="iterative pruning: prune-retrain rounds (default: 1)"),
    exclude_first: bool | None = typer.Option(
        None, "--exclude-first/--include-first", help="keep the first layer dense (default: include it)"
    ),
    exclude_last: bool | None = typer.Option(
        None, "--exclude-last/--include-last", help="keep the last layer dense (default: include it)"
    ),
    calibration: int | None = typer.Option(
        None, help="training batches for SLAMP's temporal factors and BN recalibration (default: 8)"
    ),
    slamp_p: float | None = typer.Option(None, "--slamp-p", help="SLAMP's exponent p (0 = LAMP) (default: 2)"),
    recalibrate_bn: bool | None = typer.Option(
        None,
        "--recalibrate-bn/--no-recalibrate-bn",
        help="re-estimate BatchNorm statistics after pruning (default: on)",
    ),
    out: Path | None = typer.Option(None, "--out", help="new run folder (default: <checkpoint>-<method>-<sparsity>)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on a terminal"),
) -> None:
    """Prune a trained run (unstructured criteria, or one-shot N:M), retrain with the masks fixed, write a new run."""
    from spikeprune.prune_retrain import load_prune_config, prune_run

    settings = load_prune_config(
        config,
        dict(method=method.lower() if method else None, sparsity=sparsity, nm=nm, nm_policy=nm_policy,
             finetune_epochs=finetune_epochs,
             finetune_lr=finetune_lr, rounds=rounds, exclude_first=exclude_first, exclude_last=exclude_last,
             calibration=calibration, slamp_power=slamp_p, recalibrate_bn=recalibrate_bn),
    )  # fmt: skip
    level = settings.nm.replace(":", "of") if settings.nm is not None else f"{settings.sparsity:g}"
    out = out or Path(f"{str(checkpoint).rstrip('/')}-{settings.method}-{level}")
    values = settings.model_dump()
    values["sparsity"] = values["sparsity"] or 0.0
    with _interruptible():
        summary = prune_run(checkpoint, out, **values, device=device, progress=progress)
    stages = summary["pruning"]["stages"]
    before = stages["before"]
    for label, key in [("dense", "before"), ("after pruning", "after_prune"), ("after retraining", "after_retrain")]:
        stage = stages[key]
        typer.echo(
            f"{label:>16}: accuracy {stage['accuracy']:.4f}, density {stage['density']:.4f}, "
            f"effective SynOps {stage['effective_synops'] / before['effective_synops']:.3f}x dense, "
            f"energy {stage['energy_pj'] / before['energy_pj']:.3f}x dense, "
            f"mean firing rate {stage['mean_firing_rate']:.3f}"
        )
    typer.echo(f"pruned run folder {out}")


EXPORT_DEFAULTS = {"nir": "model.nir", "safetensors": "model.safetensors", "compressed": "model-compressed.safetensors"}


@app.command()
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="run folder written by 'spikeprune train' or 'prune'"),
    format: str = typer.Option(
        "nir",
        "--format",
        help="nir (neuromorphic toolchains), safetensors (dense weights, pruned ones exactly 0) or compressed "
        "(CSR / N:M layouts); the last two write a JSON sidecar that spikeprune.deploy.load rebuilds from",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="file to write (default: <checkpoint>/model.nir, model.safetensors, ...)"
    ),
) -> None:
    """Export a run's final model: masks folded (pruned weights exactly 0), sparsity recorded per layer."""
    from spikeprune.sparsity.nm import parse_nm
    from spikeprune.train import load_trained
    from spikeprune.train.trainer import model_spec

    kind = format.lower()
    if kind not in EXPORT_DEFAULTS:
        raise SpikepruneError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_DEFAULTS)}")
    trainer = load_trained(checkpoint, device="cpu")
    config = trainer.config
    pattern = config.nm if config.sparsity == "nm" else config.sparsity_options.get("nm")
    nm = parse_nm(pattern) if pattern else None
    out = out or Path(checkpoint) / EXPORT_DEFAULTS[kind]
    if out.is_dir():
        raise SpikepruneError(f"--out {out} is a folder; give the file to write, e.g. {out / EXPORT_DEFAULTS[kind]}")
    if kind == "nir":
        from spikeprune.interop.nir import export_nir

        with writing(out, "NIR file"):
            graph = export_nir(trainer.model, out, nm=nm)
        records = [node.metadata for node in graph.nodes.values() if node.metadata.get("weights")]
        weights = sum(meta["weights"] for meta in records)
        nonzeros = sum(meta["nonzeros"] for meta in records)
        detail = f"{len(graph.nodes)} NIR nodes"
    else:
        from spikeprune import deploy

        spec = model_spec(config, getattr(trainer.train_set, "info", None))
        with writing(out, "exported model"):
            sidecar = deploy.save(trainer.model, out, spec, encoding=kind, nm=nm)
        layers = sidecar["layers"].values()
        weights = sum(math.prod(r["shape"]) for r in layers)
        nonzeros = sum(r["nonzeros"] for r in layers)
        detail = f"{out.stat().st_size:,} bytes, sidecar {deploy.sidecar_path(out).name}"
    typer.echo(
        f"wrote {out}: {detail}, {nonzeros}/{weights} synaptic weights non-zero "
        f"(density {nonzeros / max(weights, 1):.4f}){f', {pattern} N:M' if pattern else ''}"
    )


@app.command()
def datasets() -> None:
    """List the data sets, their sizes and where they come from (event data: where each expects its files)."""
    from spikeprune.data import dataset_options, list_datasets

    for info in list_datasets():
        shape = "x".join(map(str, ("T", *info.step_shape) if info.event_frames else info.input_shape))
        sizes = f"{info.num_classes:>3} classes, train {info.train_size:>5}, test {info.test_size:>5}"
        typer.echo(f"{info.name:<10} {shape:<10} {sizes}")
        typer.echo(f"{'':<10} {info.description}")
        typer.echo(f"{'':<10} source: {info.source}")
        if info.event_frames:
            options = ", ".join(dataset_options(info.name))
            typer.echo(f"{'':<10} event frames, T = --timesteps; data_options: {options}")


@app.command()
def models() -> None:
    """List the model names."""
    from spikeprune.models import list_models

    for info in list_models():
        shape = "x".join(map(str, info.default_input_shape))
        typer.echo(f"{info.name:<9} input {shape:<8} {info.description}")


@app.command()
def quickstart(
    out: Path | None = typer.Option(None, "--out", help="folder for the runs (default: runs/quickstart-<time>)"),
    epochs: int = typer.Option(4, help="training epochs of each run"),
    dataset: str = typer.Option("mnist5k", help="an image data set of 'spikeprune datasets' (digits: a quick look)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars on a terminal"),
) -> None:
    """Train the default SNN (scnn, T=4) on the embedded mnist5k digits, with SADP, pruned by SLAMP, and 2:4 SpikeNM."""
    from spikeprune.quickstart import SADP_RATIO, SLAMP_FINETUNE_EPOCHS, SLAMP_SPARSITY, SPIKENM_PATTERN, run_quickstart

    out = out or Path("runs") / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    with _interruptible():
        result = run_quickstart(out, epochs=epochs, progress=progress, dataset=dataset)
    typer.echo("dense:")
    _print_summary(result["dense"], out / "dense")
    typer.echo(f"SADP data pruning (r={SADP_RATIO}):")
    _print_summary(result["sadp"], out / "sadp")
    visited, full = result["sadp"]["examples_visited"], result["dense"]["examples_visited"]
    ideal, measured = result["sadp_theoretical_speedup"], result["sadp_speedup"]
    typer.echo(
        f"SADP visited {visited} of {full} examples ({visited / full:.0%}); ideal speedup {ideal:.2f}x "
        f"(1 warm-up and 1 annealing epoch of {epochs} on full data)"
    )
    flag = "; above the ideal, so the timing is noise (other work on the machine?)" if measured > ideal else ""
    typer.echo(
        f"  timed once: {result['sadp']['train_seconds']:.1f} s against {result['dense']['train_seconds']:.1f} s, "
        f"{measured:.2f}x{flag}; bench/data_pruning.py measures speed properly"
    )
    slamp = result["slamp"]
    stages = slamp["pruning"]["stages"]
    typer.echo(f"SLAMP pruning to {SLAMP_SPARSITY:.0%} sparsity, {SLAMP_FINETUNE_EPOCHS} retraining epoch:")
    _print_summary(slamp, out / "slamp")
    typer.echo(
        f"  accuracy {stages['before']['accuracy']:.4f} dense -> {stages['after_prune']['accuracy']:.4f} pruned -> "
        f"{stages['after_retrain']['accuracy']:.4f} retrained; effective SynOps "
        f"{stages['after_retrain']['effective_synops'] / stages['before']['effective_synops']:.2f}x and energy "
        f"{stages['after_retrain']['energy_pj'] / stages['before']['energy_pj']:.2f}x of dense"
    )
    spikenm = result["spikenm"]
    typer.echo(f"SpikeNM {SPIKENM_PATTERN} sparsity learned from scratch:")
    _print_summary(spikenm, out / "spikenm")
    typer.echo(
        f"  every pruned block keeps at most {SPIKENM_PATTERN.split(':')[0]} of {SPIKENM_PATTERN.split(':')[1]} "
        f"weights; accuracy {spikenm['test_accuracy'] - result['dense']['test_accuracy']:+.4f} vs dense"
    )


def _print_summary(summary: dict, out: Path) -> None:
    seconds = summary["seconds_per_epoch"]
    epochs = summary["epochs"]
    typer.echo(
        f"  test accuracy {summary['test_accuracy']:.4f} (top-5 {summary['test_top5']:.4f}) after "
        f"{epochs} epoch{'' if epochs == 1 else 's'}; {sum(seconds) / max(len(seconds), 1):.1f} s per epoch; "
        f"run folder {out}"
    )
    if "effective_synops" in summary:
        typer.echo(
            f"  per sample: {summary['effective_synops']:.3g} effective SynOps ({summary['acs']:.3g} AC, "
            f"{summary['macs']:.3g} MAC), {summary['energy_pj'] / 1e6:.3g} uJ compute energy (45 nm FP32), "
            f"firing rate {summary['mean_firing_rate']:.3f}, weight density {summary['density']:.3f}"
        )


@contextmanager
def _interruptible():
    """A run stopped by SIGINT/SIGTERM says where and how to continue, and exits with 128 + the signal.

    (Exits here, inside the command: typer turns any KeyboardInterrupt that reaches it into exit 130.)
    """
    from spikeprune.train.trainer import Interrupted

    try:
        yield
    except Interrupted as stop:
        typer.echo(stop.message, err=True)
        sys.exit(128 + stop.signum)


def _usage_error(error: BaseException) -> bool:
    """An error of the command-line parser (click's, or the copy typer carries): a mistyped flag or value."""
    return any(cls.__name__ == "UsageError" for cls in type(error).__mro__)


def _quiet_notes() -> None:
    """Warnings reach the terminal as one ``note:`` line each (no source line), once per message;
    SpikingJelly's import-time 'Triton not available' log lines are silenced."""
    import logging
    import warnings

    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"note: {text}", file=sys.stderr)

    warnings.showwarning = show
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)


def main() -> None:
    """Entry point: user errors print one line (no traceback) and exit with status 2.

    An interrupted run (Ctrl-C, SIGTERM) prints where it stopped and how to continue, and exits with
    128 + the signal's number (130, 143).
    """
    _quiet_notes()
    try:
        code = app(standalone_mode=False)
    except SpikepruneError as error:
        message = str(error).strip()
        if "\n" in message:  # raised in a DataLoader worker: torch wraps it with the worker's traceback
            message = message.splitlines()[-1].split("SpikepruneError: ", 1)[-1]
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as stop:
        typer.echo(getattr(stop, "message", "interrupted"), err=True)
        sys.exit(128 + getattr(stop, "signum", signal.SIGINT))
    except Exception as error:
        if not _usage_error(error):
            raise
        if type(error).__name__ == "NoArgsIsHelpError":  # plain 'spikeprune': typer has printed the help
            sys.exit(0)
        command = f"spikeprune {error.ctx.info_name} --help" if error.ctx and error.ctx.parent else "spikeprune --help"
        command = command.replace("spikeprune spikeprune", "spikeprune")
        typer.echo(f"error: {error.format_message().rstrip('.')} (see '{command}')", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

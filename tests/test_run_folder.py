"""A run folder you can trust: fault injection for every guarantee in docs/training.md ("Run folders").

1. one writer at a time (an OS lock, released by any exit, kill -9 included);
2. a diverging run stops with one line and never overwrites its last good checkpoint;
3. every file a run writes goes through the atomic writer (a failed write keeps the old file);
4. edited or damaged checkpoint metadata is refused with one line;
5. user mistakes and file-system failures are one ``error:`` line, exit 2, nothing lost;
6. SIGINT/SIGTERM stop at a step boundary with a checkpoint and a line that says how to continue;
7. checkpoints inside an epoch resume bit-identically (also under SADP and SpikeNM);
8. settings that would do nothing are refused;
9. --resume takes the run's saved settings, starts over when no checkpoint exists, and clears stale files.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from spikeprune import cli, io
from spikeprune.errors import SpikepruneError
from spikeprune.sparsity import Sparsifier
from spikeprune.train import Trainer, load_trained, make_config
from spikeprune.train.checkpoint import load_checkpoint
from spikeprune.train.rundir import lock_run, unlock_run
from spikeprune.train.trainer import Interrupted, TrainingDiverged, parameter_digest
from test_train import SMALL  # the same tiny run

FLAGS = ["--dataset", "digits", "--model", "mlp", "-T", "2", "--batch-size", "128", "--no-progress"]


def run_cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spikeprune.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def call_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the CLI in this process (so faults can be injected); exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["spikeprune", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err


def one_error_line(stderr: str, *needles: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def fail_writes(monkeypatch, code: int, when=lambda target: True) -> list[str]:
    """Make the atomic writer's data write fail with ``code`` for targets matching ``when``; returns their names."""
    real, failed = io._write, []

    def write(handle, data, target):
        if when(target):
            failed.append(target.name)
            raise OSError(code, os.strerror(code))
        real(handle, data, target)

    monkeypatch.setattr(io, "_write", write)
    return failed


def named(part: str):
    return lambda target: part in target.name


def tensors_finite(run: Path) -> bool:
    _, states, _ = load_checkpoint(run)
    return all(bool(torch.isfinite(t).all()) for t in states["model"].values() if t.is_floating_point())


# ----------------------------------------------------------------------------------- 1. one writer
def test_second_writer_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    lock_run(run, "the test")
    try:
        result = run_cli("train", *FLAGS, "--epochs", "1", "--out", str(run), cwd=tmp_path)
    finally:
        unlock_run(run)
    assert result.returncode == 2
    one_error_line(result.stderr, "in use by process", str(os.getpid()), "choose another --out")
    assert not (run / "config.yaml").exists() and not (run / "checkpoint.json").exists()


def test_the_lock_dies_with_its_process_even_under_kill_9(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from spikeprune.train.rundir import lock_run; lock_run({str(run)!r}); "
         "print('locked', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(SpikepruneError, match=f"in use by process {holder.pid}"):
        lock_run(run)
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait()
    lock_run(run)  # the OS released it: no stale lock
    unlock_run(run)


# ----------------------------------------------------------------------------------- 2. divergence
def test_divergence_stops_with_one_line_and_writes_no_bad_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", *FLAGS, "--optimizer", "sgd", "--lr", "1e30", "--epochs", "3", "--out", str(run),
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    one_error_line(result.stderr, "diverged in epoch 1", "nothing was saved", "--lr")
    assert not (run / "checkpoint.json").exists()


class PoisonAt(Sparsifier):
    """Turn the weights to NaN after a chosen step, as an exploding update would."""

    def __init__(self, step: int) -> None:
        self.step, self.seen = step, 0

    def attach(self, model) -> None:
        self.model = model

    def after_step(self) -> None:
        self.seen += 1
        if self.seen == self.step:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(make_config(SMALL), run, sparsifier=PoisonAt(step=20))  # epoch 2 of 3 (12 steps each)
    with pytest.raises(TrainingDiverged, match="last checkpoint \\(after epoch 1\\) is kept"):
        trainer.fit()
    epoch, _, meta = load_checkpoint(run)
    assert epoch == 1 and tensors_finite(run) and len(meta["history"]) == 1
    assert len((run / "log.jsonl").read_text().splitlines()) == 1


# ----------------------------------------------------------------------------------- 3. atomic writes
def test_a_failed_log_write_keeps_the_previous_log(tmp_path, monkeypatch):
    run = tmp_path / "run"
    Trainer(make_config({**SMALL, "epochs": 1}), run).fit()
    before = (run / "log.jsonl").read_bytes()
    config = make_config({**SMALL, "epochs": 2})
    (run / "config.yaml").write_text(yaml.safe_dump(config.model_dump()))  # continue it for a 2nd epoch
    failed = fail_writes(monkeypatch, errno.ENOSPC, named("log.jsonl"))
    with pytest.raises(SpikepruneError, match="cannot write training log .*log.jsonl: the disk is full"):
        Trainer(config, run).fit(resume=True)
    assert failed and (run / "log.jsonl").read_bytes() == before  # whole, not 0 bytes
    assert not list(run.glob(".*.tmp"))  # the writer removed its temporary file


def test_every_file_of_a_run_goes_through_the_atomic_writer(tmp_path, monkeypatch):
    written = set()
    real = io._write

    def spy(handle, data, target):
        written.add(target.name)
        real(handle, data, target)

    monkeypatch.setattr(io, "_write", spy)
    run = tmp_path / "run"
    Trainer(make_config({**SMALL, "epochs": 1, "profile": True, "profile_batches": 1}), run).fit()
    on_disk = {p.name for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    assert on_disk == {"config.yaml", "checkpoint.json", "checkpoint-e1.safetensors", "log.jsonl", "summary.json",
                       "profile.json"}  # fmt: skip
    assert on_disk <= written


# ----------------------------------------------------------------------------------- 4. metadata integrity
def test_edited_checkpoint_metadata_is_refused(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    Trainer(make_config({**SMALL, "epochs": 2}), run).fit()
    path = run / "checkpoint.json"
    record = json.loads(path.read_text())
    record["epoch"] = 1
    path.write_text(json.dumps(record))
    code, err = call_main(monkeypatch, capsys, "eval", "--checkpoint", str(run), "--device", "cpu")
    assert code == 2
    one_error_line(err, "was modified or damaged", "restore it")
    code, err = call_main(monkeypatch, capsys, "train", "--out", str(run), "--resume")
    assert code == 2
    one_error_line(err, "was modified or damaged")
    del record["layout"]
    path.write_text(json.dumps(record))
    code, err = call_main(monkeypatch, capsys, "eval", "--checkpoint", str(run), "--device", "cpu")
    assert code == 2
    one_error_line(err, "lacks or mangles layout")


# ----------------------------------------------------------------------------------- 5. one error line each
def test_binary_config_file(tmp_path, monkeypatch, capsys):
    config = tmp_path / "binary.yaml"
    config.write_bytes(bytes(range(256)))
    code, err = call_main(monkeypatch, capsys, "train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert code == 2
    one_error_line(err, "is not a text file")


def test_config_that_is_a_folder(tmp_path, monkeypatch, capsys):
    code, err = call_main(monkeypatch, capsys, "train", "--config", str(tmp_path), "--out", str(tmp_path / "run"))
    assert code == 2
    one_error_line(err, "is a folder", "YAML file")


def test_out_that_is_a_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "taken"
    out.write_text("precious")
    code, err = call_main(monkeypatch, capsys, "train", *FLAGS, "--epochs", "1", "--out", str(out))
    assert code == 2
    one_error_line(err, "is a file, not a run folder")
    assert out.read_text() == "precious"


def test_out_on_a_read_only_file_system(tmp_path, monkeypatch, capsys):
    fail_writes(monkeypatch, errno.EROFS)
    code, err = call_main(monkeypatch, capsys, "train", *FLAGS, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert code == 2
    one_error_line(err, "cannot write run config", "read-only", "writable")


def test_export_out_on_a_read_only_file_system_or_a_folder(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    Trainer(make_config({**SMALL, "epochs": 1, "model_options": {"hidden": [32]}}), run).fit()
    code, err = call_main(monkeypatch, capsys, "export", "--checkpoint", str(run), "--out", str(tmp_path))
    assert code == 2
    one_error_line(err, "is a folder", "give the file")
    import nir

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(nir, "write", read_only)
    code, err = call_main(monkeypatch, capsys, "export", "--checkpoint", str(run), "--out", str(tmp_path / "m.nir"))
    assert code == 2
    one_error_line(err, "cannot write NIR file", "read-only")


@pytest.mark.parametrize("target", ["safetensors", "checkpoint.json", "log.jsonl"])
def test_full_disk_while_saving_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys, target):
    run = tmp_path / "run"
    code, _ = call_main(monkeypatch, capsys, "train", *FLAGS, "--epochs", "1", "--out", str(run))
    assert code == 0
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("epochs: 1", "epochs: 2"))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    fail_writes(monkeypatch, errno.ENOSPC, named(target))
    code, err = call_main(monkeypatch, capsys, "train", "--out", str(run), "--resume")
    assert code == 2
    one_error_line(err, "the disk is full", "free some space")
    if target != "log.jsonl":  # the checkpoint of epoch 1 is still the one in force, whole
        assert load_checkpoint(run)[0] == 1
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.name in before} == before
    assert not list(run.glob(".*.tmp"))


def test_negative_layer_size(tmp_path, monkeypatch, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: digits\nmodel: mlp\nmodel_options: {hidden: [-3]}\n")
    code, err = call_main(monkeypatch, capsys, "train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert code == 2
    one_error_line(err, "cannot be built", "negative dimension", "model_options")


def test_cifar_pickle_asking_for_an_absurd_array(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Huge:  # pickles as numpy's reconstruction of a 10^12-element array
        def __reduce__(self):
            return (np.zeros, ((10**12,), np.uint8))

    payload = pickle.dumps({"data": Huge(), "labels": [0]})
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(payload)
    code, err = call_main(monkeypatch, capsys, "train", "--dataset", "cifar10", "--data-root", str(tmp_path),
                          "--model", "vgg11", "--out", str(tmp_path / "run"))  # fmt: skip
    assert code == 2
    one_error_line(err, "data_batch_1")


def test_flag_typo(tmp_path, monkeypatch, capsys):
    code, err = call_main(monkeypatch, capsys, "train", "--epoch", "3")
    assert code == 2
    one_error_line(err, "No such option: --epoch", "--epochs", "spikeprune train --help")


# ----------------------------------------------------------------------------------- 6. interrupts
INTERRUPTED_ARGS = [*FLAGS, "--epochs", "3"]


@pytest.fixture(scope="module")
def uninterrupted_digest(tmp_path_factory) -> str:
    """The parameter digest of the CLI run that the interrupted runs must reproduce after resuming."""
    folder = tmp_path_factory.mktemp("reference")
    done = run_cli("train", *INTERRUPTED_ARGS, "--out", str(folder / "run"), cwd=folder)
    assert done.returncode == 0, done.stderr
    return json.loads((folder / "run" / "summary.json").read_text())["parameter_sha256"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_at_a_step_with_a_checkpoint_and_resume_is_exact(tmp_path, sig, uninterrupted_digest):
    args = INTERRUPTED_ARGS
    run = tmp_path / "run"
    config = tmp_path / "slow.yaml"
    config.write_text("checkpoint_every_steps: 1\n")  # step checkpoints make it slow enough to catch mid-epoch
    process = subprocess.Popen(
        [sys.executable, "-m", "spikeprune.cli", "train", *args, "--config", str(config), "--out", str(run)],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (run / "checkpoint.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + sig
    line = stderr.strip().splitlines()[-1]
    assert signal.Signals(sig).name in line and "stopped at epoch" in line
    assert f"spikeprune train --out {run} --resume" in line
    resumed = run_cli("train", "--out", str(run), "--resume", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "summary.json").read_text())["parameter_sha256"] == uninterrupted_digest


# ----------------------------------------------------------------------------------- 7. mid-epoch resume
class CrashAt:
    """A sparsifier's stand-in that raises like a crash right after a chosen step (whose checkpoint,
    written every step, is then the last one on disk); everything else goes to the real sparsifier."""

    def __init__(self, inner: Sparsifier, step: int) -> None:
        self.inner, self.step, self.seen = inner, step, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def after_step(self) -> None:
        self.inner.after_step()
        self.seen += 1
        if self.seen == self.step + 1:
            raise RuntimeError("simulated crash")


CASES = {
    "plain": {},
    "sadp": {"data_pruning": "sadp", "prune_ratio": 0.5},
    "spikenm-eid": {"sparsity": "nm", "nm": "2:4", "sparsity_options": {"eid_weight": 0.1, "eid_every": 2}},
}


@pytest.mark.parametrize("case", list(CASES))
def test_mid_epoch_checkpoint_resumes_bit_identically(tmp_path, case):
    from spikeprune.sparsity import build_sparsifier

    config = make_config({**SMALL, **CASES[case], "model_options": {"hidden": [32]}, "checkpoint_every_steps": 1})
    reference = Trainer(config, tmp_path / "reference")
    reference.fit()
    run = tmp_path / "run"
    inner = build_sparsifier(config.sparsity, nm=config.nm, method=config.nm_method, options=config.sparsity_options)
    crashing = Trainer(config, run, sparsifier=CrashAt(inner, step=17))  # inside epoch 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit()
    assert json.loads((run / "checkpoint.json").read_text())["meta"]["position"]["batches_done"] == 5
    resumed = Trainer(config, run)
    resumed.fit(resume=True)
    assert parameter_digest(resumed.model) == parameter_digest(reference.model)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in reference.history]
    assert [r["plan_sha256"] for r in resumed.history] == [r["plan_sha256"] for r in reference.history]


def test_kill_9_inside_an_epoch_then_resume_is_exact(tmp_path, uninterrupted_digest):
    args = INTERRUPTED_ARGS
    run = tmp_path / "run"
    config = tmp_path / "steps.yaml"
    config.write_text("checkpoint_every_steps: 1\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "spikeprune.cli", "train", *args, "--config", str(config), "--out", str(run)],
        stderr=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline:
        meta = run / "checkpoint.json"
        if meta.exists() and "position" in json.loads(meta.read_text() or "{}").get("meta", {}):
            break
        time.sleep(0.02)
    process.kill()
    process.wait()
    resumed = run_cli("train", "--out", str(run), "--resume", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "summary.json").read_text())["parameter_sha256"] == uninterrupted_digest
    assert not list(run.glob(".*.tmp")) and len(list(run.glob("checkpoint-*.safetensors"))) == 1


# ----------------------------------------------------------------------------------- 8. settings that do nothing
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--nm", "3:2"], "N:M pattern"),
        (["--sparsity-mode", "none", "--nm", "1:8"], "only with sparsity: nm"),
        (["--prune-ratio", "0.5"], "only with a data pruning method"),
        (["--data-pruning", "sadp"], "needs prune_ratio > 0"),
        (["--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_settings_that_would_do_nothing_are_refused(tmp_path, monkeypatch, capsys, args, needle):
    code, err = call_main(monkeypatch, capsys, "train", *FLAGS, *args, "--out", str(tmp_path / "run"))
    assert code == 2
    one_error_line(err, needle)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------- 9. resume ergonomics
def test_resume_takes_the_saved_settings_and_only_explicit_flags_must_match(tmp_path, monkeypatch, capsys):
    config = tmp_path / "my.yaml"
    config.write_text(json.dumps({**SMALL, "epochs": 2, "label_smoothing": 0.1, "lr": 4e-3}))
    run = tmp_path / "run"
    assert call_main(monkeypatch, capsys, "train", "--config", str(config), "--out", str(run))[0] == 0
    code, err = call_main(monkeypatch, capsys, "train", "--out", str(run), "--resume")
    assert code == 0, err  # finished already: nothing more to train, no complaint
    code, err = call_main(monkeypatch, capsys, "train", "--out", str(run), "--resume", "--lr", "0.1")
    assert code == 2
    one_error_line(err, "different settings (lr)")


def test_resume_before_the_first_checkpoint_starts_over_and_clears_stale_files(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(make_config({**SMALL, "epochs": 1}).model_dump()))
    (run / ".checkpoint-e1.safetensors.abc123.tmp").write_bytes(b"\0" * 1000)  # a killed writer's leftovers
    (run / "checkpoint-e7.safetensors").write_bytes(b"\0" * 1000)
    code, err = call_main(monkeypatch, capsys, "train", "--out", str(run), "--resume")
    assert code == 0
    assert "note: " in err and "starting the run from the beginning" in err
    assert not list(run.glob(".*.tmp")) and not (run / "checkpoint-e7.safetensors").exists()
    assert load_trained(run, device="cpu").epoch == 1


def test_resume_of_a_missing_folder_is_an_error(tmp_path, monkeypatch, capsys):
    code, err = call_main(monkeypatch, capsys, "train", "--out", str(tmp_path / "nope"), "--resume")
    assert code == 2
    one_error_line(err, "nothing to resume")


def test_an_interrupted_python_run_raises_interrupted(tmp_path):
    trainer = Trainer(make_config({**SMALL, "epochs": 2}), tmp_path / "run")

    class Stop(Sparsifier):
        def after_step(self) -> None:
            trainer._stop_signal = signal.SIGINT  # what the handler does

    trainer.sparsifier = Stop()
    with pytest.raises(Interrupted) as stop:
        trainer.fit()
    assert stop.value.signum == signal.SIGINT and "resume" in stop.value.message
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["meta"]["position"]["batches_done"] == 1

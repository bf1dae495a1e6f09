"""The trainer: exact resume, checkpoints, the LR schedule, eval, and DDP under torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch

from spikeprune.errors import SpikepruneError
from spikeprune.sparsity import Sparsifier
from spikeprune.train import Trainer, load_trained, make_config
from spikeprune.train.checkpoint import load_checkpoint
from spikeprune.train.trainer import lr_factor, parameter_digest

SMALL = dict(
    dataset="digits",
    model="mlp",
    model_options={"hidden": [32], "encoder": "rate"},
    timesteps=2,
    epochs=3,
    batch_size=128,
    lr=5e-3,
    progress=False,
)


class StopAt(Sparsifier):
    """Interrupt training at the start of an epoch, as a crash or Ctrl-C would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_continues_exactly(tmp_path):
    straight = Trainer(make_config(SMALL), tmp_path / "a")
    summary = straight.fit()
    interrupted = Trainer(make_config(SMALL), tmp_path / "b", sparsifier=StopAt(2))
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert load_checkpoint(tmp_path / "b")[0] == 2
    resumed = Trainer(make_config(SMALL), tmp_path / "b")
    resumed_summary = resumed.fit(resume=True)
    assert parameter_digest(resumed.model) == parameter_digest(straight.model)
    assert resumed_summary["test_accuracy"] == summary["test_accuracy"]
    assert resumed.step == straight.step
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert len(list((tmp_path / "b").glob("checkpoint-e*.safetensors"))) == 1


def test_training_learns_and_schedule_counts_real_steps(tmp_path):
    cfg = make_config({**SMALL, "model_options": {"hidden": [64]}, "epochs": 4})
    trainer = Trainer(cfg, tmp_path / "run")
    summary = trainer.fit()
    assert summary["test_accuracy"] > 0.8
    assert trainer.step == trainer.total_steps == 4 * 12
    # the last step ran at the cosine value of step S-1 of S: the schedule spans the steps that ran
    last = trainer.total_steps - 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        cfg.lr * lr_factor(last, trainer.total_steps, "cosine")
    )
    assert lr_factor(last, trainer.total_steps, "cosine") < 0.01
    assert summary["examples_visited"] == 4 * 1437
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["test_accuracy"] == summary["test_accuracy"]
    reloaded = load_trained(tmp_path / "run", device="cpu")
    assert reloaded.evaluate()["test_accuracy"] == summary["test_accuracy"]


def test_existing_run_is_not_overwritten(tmp_path):
    cfg = make_config({**SMALL, "epochs": 1})
    Trainer(cfg, tmp_path / "run").fit()
    before = (tmp_path / "run" / "checkpoint.json").read_bytes()
    with pytest.raises(SpikepruneError, match="already holds a run"):
        Trainer(cfg, tmp_path / "run").fit()
    with pytest.raises(SpikepruneError, match="different settings"):
        Trainer(make_config({**SMALL, "epochs": 1, "lr": 0.1}), tmp_path / "run").fit(resume=True)
    assert (tmp_path / "run" / "checkpoint.json").read_bytes() == before


def test_corrupt_checkpoint_is_named(tmp_path):
    Trainer(make_config({**SMALL, "epochs": 1}), tmp_path / "run").fit()
    tensor_file = next((tmp_path / "run").glob("checkpoint-e*.safetensors"))
    data = bytearray(tensor_file.read_bytes())
    data[-10] ^= 0xFF
    tensor_file.write_bytes(bytes(data))
    with pytest.raises(SpikepruneError, match="corrupt"):
        load_checkpoint(tmp_path / "run")


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "spikeprune.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--lr", "-1", "--no-progress"], "lr"),
        (["train", "--model", "transformer9000", "--dataset", "digits"], "unknown model"),
        (["train", "--dataset", "imagenet22k"], "unknown dataset"),
        (
            ["train", "--dataset", "cifar10", "--model", "vgg11", "--data-root", "/nonexistent/cifar"],
            "/nonexistent/cifar",
        ),
        (["eval", "--checkpoint", "/nonexistent/run"], "/nonexistent/run"),
    ],
)
def test_cli_user_errors_are_one_line(tmp_path, args, needle):
    result = (
        _cli(*args, "--out", str(tmp_path / "out"), cwd=tmp_path) if args[0] == "train" else _cli(*args, cwd=tmp_path)
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert not (tmp_path / "out" / "checkpoint.json").exists()


def test_cli_bad_config_file(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: zero\nmodel: mlp\n")
    result = _cli("train", "--config", str(config), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and "epochs" in result.stderr and "Traceback" not in result.stderr


def test_cli_train_then_eval(tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "small.yaml"
    config.write_text(json.dumps({**SMALL, "epochs": 1}))
    result = _cli("train", "--config", str(config), "--out", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and str(run) in result.stdout
    evaluated = _cli("eval", "--checkpoint", str(run), "--device", "cpu", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert json.loads(evaluated.stdout)["test_accuracy"] == summary["test_accuracy"]


def test_ddp_two_ranks_end_identical(tmp_path):
    run = tmp_path / "ddp"
    config = tmp_path / "small.yaml"
    config.write_text(json.dumps({**SMALL, "epochs": 2, "device": "cpu"}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "spikeprune.cli",
        "train",
        "--config",
        str(config),
        "--out",
        str(run),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test accuracy") == 1  # only rank 0 reports
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    first, second = summary["parameter_sha256"]
    assert first == second
    # the checkpoint rank 0 wrote holds exactly those weights
    model_state = load_checkpoint(run)[1]["model"]
    model = Trainer(make_config({**SMALL, "device": "cpu"})).model
    model.load_state_dict(model_state)
    assert parameter_digest(model) == first
    # each epoch visits every example once across the two ranks (1437 is odd: one padded repeat)
    assert summary["examples_visited"] == 2 * 1438
    assert torch.is_tensor(model_state[next(iter(model_state))])


def test_cli_lists_the_deep_models_and_passes_width(tmp_path):
    """`spikeprune models` lists them; `train --width` reaches the model and its saved config."""
    listed = _cli("models", cwd=tmp_path)
    assert listed.returncode == 0 and "convnet6" in listed.stdout and "vggsnn" in listed.stdout
    run = tmp_path / "run"
    args = ["--dataset", "digits", "--model", "convnet6", "--width", "0.0625", "-T", "1", "--epochs", "1"]
    result = _cli("train", *args, "--no-progress", "--out", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    saved = load_trained(run, device="cpu")
    assert saved.config.model_options == {"width": 0.0625}
    assert [m.out_channels for m in saved.model.modules() if isinstance(m, torch.nn.Conv2d)] == [16] * 6


def test_eval_every_tests_every_n_epochs_and_after_the_last():
    config = make_config({**SMALL, "epochs": 3, "eval_every": 2})
    trainer = Trainer(config, None)
    summary = trainer.fit()
    assert ["test_accuracy" in r for r in trainer.history] == [False, True, True]
    assert summary["test_accuracy"] == trainer.history[-1]["test_accuracy"]

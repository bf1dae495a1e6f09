"""What a newcomer sees: every option explained with its default, warnings as one clean line."""

import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "COLUMNS": "250", "TERM": "dumb"}


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spikeprune.cli", *args], capture_output=True, text=True,
                          timeout=600, env=ENV, cwd=cwd)  # fmt: skip


def test_train_help_gives_every_default():
    text = cli("train", "--help").stdout
    defaults = [("--epochs", "5"), ("--timesteps", "4"), ("--batch-size", "64"), ("--lr", "0.001"),
                ("--optimizer", "adamw"), ("--sparsity-mode", "none"), ("--nm-policy", "dense")]  # fmt: skip
    for option, default in defaults:
        line = next(line for line in text.splitlines() if option in line)
        assert f"(default: {default}" in line, line


@pytest.mark.parametrize("command", ["eval", "profile", "prune"])
def test_device_is_described_everywhere(command):
    line = next(line for line in cli(command, "--help").stdout.splitlines() if "--device" in line)
    assert "auto, cpu, cuda" in line


def test_warnings_reach_the_cli_as_one_note_line(tmp_path):
    result = cli("train", "--dataset", "digits", "--epochs", "1", "--nm", "2:4", "--no-progress", "--out", "run",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "after 1 epoch;" in result.stdout  # singular
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: N:M with M=4")]
    assert len(notes) == 1 and "--nm-policy pad" in notes[0]
    assert "Warning" not in result.stderr and "warnings.warn" not in result.stderr
    refused = cli("train", "--dataset", "digits", "--nm", "2:4", "--nm-policy", "pad", "--out", "x", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "srste" in refused.stderr

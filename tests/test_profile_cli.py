"""`spikeprune profile` / `eval --profile` / quickstart on real run folders, dense and partly zeroed."""

import json
import subprocess
import sys

import torch

from spikeprune.sparsity.nm import validate_nm
from spikeprune.train import Trainer, load_trained, make_config
from spikeprune.train.checkpoint import load_checkpoint, save_checkpoint

SMALL = dict(
    dataset="digits", model="mlp", model_options={"hidden": [48]}, timesteps=2, epochs=1, batch_size=128, progress=False
)


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "spikeprune.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=900
    )


def _zero_half_of_hidden_weights(run):
    epoch, states, meta = load_checkpoint(run)
    weight = states["model"]["stem.1.weight"]
    weight[: weight.shape[0] // 2] = 0.0
    save_checkpoint(run, epoch, states, meta)
    return weight


def test_profile_dense_then_partly_zero(tmp_path):
    run = tmp_path / "run"
    Trainer(make_config(SMALL), run).fit()
    dense = _cli(
        "profile", "--checkpoint", str(run), "--json", str(tmp_path / "p.json"), "--device", "cpu", cwd=tmp_path
    )
    assert dense.returncode == 0, dense.stderr
    assert "Synaptic layers" in dense.stdout and "compute only" in dense.stdout
    dense_report = json.loads((tmp_path / "p.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["density"] == 1.0
    assert summary["effective_synops"] == dense_report["totals"]["effective_synops"] > 0
    assert (run / "profile.json").is_file()

    weight = _zero_half_of_hidden_weights(run)
    sparse = _cli(
        "profile", "--checkpoint", str(run), "--json", str(tmp_path / "q.json"), "--device", "cpu", cwd=tmp_path
    )
    assert sparse.returncode == 0, sparse.stderr
    sparse_report = json.loads((tmp_path / "q.json").read_text())
    layers = {layer["name"]: layer for layer in sparse_report["layers"]}
    assert layers["stem.1"]["density"] == 0.5
    expected_zeros = weight.numel() // 2
    assert sparse_report["totals"]["params"] - sparse_report["totals"]["nonzero_params"] >= expected_zeros
    assert sparse_report["totals"]["density"] < 1.0
    # the zeroed half of the first layer's weights no longer produce operations
    before = {layer["name"]: layer for layer in dense_report["layers"]}["stem.1"]
    assert layers["stem.1"]["effective_synops"] < before["effective_synops"]
    assert layers["stem.1"]["dense_synops"] == before["dense_synops"]


def test_eval_with_profile(tmp_path):
    run = tmp_path / "run"
    Trainer(make_config(SMALL), run).fit()
    result = _cli("eval", "--checkpoint", str(run), "--profile", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert {"test_accuracy", "effective_synops", "energy_pj", "density"} <= set(values)


def test_profile_in_training_summary(tmp_path):
    trainer = Trainer(make_config({**SMALL, "profile": True, "profile_batches": 1}), tmp_path / "run")
    summary = trainer.fit()
    assert summary["density"] == 1.0 and summary["energy_pj"] > 0
    saved = json.loads((tmp_path / "run" / "profile.json").read_text())
    assert saved["totals"]["samples"] == 256
    assert torch.isclose(torch.tensor(summary["energy_pj"]), torch.tensor(saved["totals"]["energy_pj"]))


def test_quickstart_command(tmp_path):
    # digits keeps the suite quick; 3 epochs = 1 warm-up, 1 pruned, 1 annealing epoch
    result = _cli("quickstart", "--dataset", "digits", "--epochs", "3", "--out", str(tmp_path / "qs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "dense:" and lines[1].strip().startswith("test accuracy") and "effective SynOps" in lines[2]
    assert lines[3].startswith("SADP") and any("ideal speedup" in line for line in lines)
    assert any(line.strip().startswith("timed once:") for line in lines)
    assert any(line.startswith("SLAMP pruning to 90%") for line in lines) and any("retrained" in x for x in lines)
    assert any(line.startswith("SpikeNM 2:4") for line in lines) and "vs dense" in lines[-1]
    dense = json.loads((tmp_path / "qs" / "dense" / "summary.json").read_text())
    sadp = json.loads((tmp_path / "qs" / "sadp" / "summary.json").read_text())
    assert dense["test_accuracy"] > 0.85 and dense["effective_synops"] > 0
    assert sadp["data_pruning"] == "sadp" and sadp["examples_visited"] < dense["examples_visited"]
    slamp = json.loads((tmp_path / "qs" / "slamp" / "summary.json").read_text())
    assert abs(slamp["density"] - 0.1) < 1e-3 and slamp["pruning"]["method"] == "slamp"
    spikenm = load_trained(tmp_path / "qs" / "spikenm", device="cpu")
    worst = validate_nm(spikenm.model, 2, 4)  # raises if any block of a pruned layer keeps more than 2 of 4
    assert max(v for v in worst.values() if v is not None) == 2
    assert worst["stem.0"] is None  # a one-channel input: left dense on purpose, reported, not an error

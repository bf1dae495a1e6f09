"""Masks, unstructured criteria, SLAMP, and the prune-and-retrain pipeline."""

import copy
import json
import pickle
import subprocess
import sys

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from spikeprune.errors import SpikepruneError
from spikeprune.models import build_model
from spikeprune.prune_retrain import load_prune_config, prune_run
from spikeprune.sparsity import (
    CRITERIA,
    attach_masks,
    finalize,
    lamp,
    lamp_scores,
    masks_of,
    prunable_layers,
    slamp,
    temporal_factors,
    uniform_plus,
)
from spikeprune.train import Trainer, load_trained, make_config


def _weights(seed=0, shapes=((16, 1, 3, 3), (32, 16, 3, 3), (64, 288), (10, 64))):
    generator = torch.Generator().manual_seed(seed)
    return {f"l{i}": torch.randn(shape, generator=generator) * (i + 1) for i, shape in enumerate(shapes)}


def test_lamp_scores_match_the_naive_formula():
    weight = torch.randn(7, 5)
    scores = lamp_scores(weight)
    flat = weight.flatten().double()
    for u in range(flat.numel()):
        bigger_or_equal = flat[flat.abs() >= flat[u].abs()]
        assert scores.flatten()[u] == pytest.approx(float(flat[u] ** 2 / bigger_or_equal.square().sum()), rel=1e-12)
    assert scores.flatten()[flat.abs().argmax()] == 1.0


@settings(max_examples=40, deadline=None)
@given(
    sparsity=st.floats(0.0, 0.99),
    seed=st.integers(0, 1000),
    method=st.sampled_from(["global", "uniform", "erk", "lamp"]),
)
def test_targets_are_met_exactly(sparsity, seed, method):
    weights = _weights(seed)
    total = sum(w.numel() for w in weights.values())
    masks = CRITERIA[method](weights, sparsity)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == total - round(sparsity * total)
    if method != "global":  # global magnitude may empty a layer (the collapse LAMP avoids)
        assert all(int(m.sum()) >= 1 for m in masks.values())
    # inside each layer the kept weights are the largest ones
    for name, mask in masks.items():
        magnitudes = weights[name].abs()
        if 0 < mask.sum() < mask.numel():
            assert magnitudes[mask.bool()].min() >= magnitudes[~mask.bool()].max()


def test_global_magnitude_equals_torch_global_unstructured():
    weights = _weights(3)
    ours = CRITERIA["global"](weights, 0.8)
    layers = [nn.Linear(1, 1) for _ in weights]
    for layer, w in zip(layers, weights.values(), strict=True):
        layer.weight = nn.Parameter(w.clone())
    prune.global_unstructured([(layer, "weight") for layer in layers], pruning_method=prune.L1Unstructured, amount=0.8)
    for layer, mask in zip(layers, ours.values(), strict=True):
        assert torch.equal(layer.weight_mask, mask)


def test_uniform_plus_keeps_first_dense_and_last_above_20_percent():
    weights = _weights(1)
    masks = uniform_plus(weights, 0.9)
    names = list(weights)
    assert masks[names[0]].mean() == 1.0
    assert masks[names[-1]].mean() >= 0.2
    with pytest.raises(SpikepruneError, match="uniform-plus cannot reach"):
        uniform_plus(_weights(1, shapes=((100, 100), (10, 10))), 0.99)


def test_erk_gives_large_layers_lower_density():
    masks = CRITERIA["erk"](_weights(2), 0.9)
    densities = {name: float(m.mean()) for name, m in masks.items()}
    assert densities["l2"] < densities["l3"] and densities["l1"] < densities["l0"]


def test_slamp_with_one_timestep_equals_lamp():
    torch.manual_seed(0)
    model = build_model("scnn", timesteps=1, channels=(4, 8), hidden=16)
    layers = prunable_layers(model)
    factors = temporal_factors(model, [torch.rand(8, 1, 28, 28)], layers)
    assert all(value == 1.0 for value in factors.values())
    weights = {name: m.weight.detach() for name, m in layers}
    for sparsity in (0.5, 0.9, 0.98):
        slamp_masks = slamp(weights, sparsity, factors, power=2.0)
        lamp_masks = lamp(weights, sparsity)
        assert all(torch.equal(slamp_masks[n], lamp_masks[n]) for n in weights)


def test_temporal_factors_grow_with_timesteps_and_leak():
    torch.manual_seed(0)
    model = build_model("scnn", timesteps=4, channels=(4, 8), hidden=16, tdbn_alpha=4.0)
    layers = prunable_layers(model)
    factors = temporal_factors(model, [torch.rand(8, 1, 28, 28)], layers)
    # the stem sees the same input every step: ρ = Σ_j λ^j with λ = 0.5 (tau = 2)
    assert factors["stem.0"] == pytest.approx(1 + 0.5 + 0.25 + 0.125)
    assert all(1.0 <= value <= 4.0 for value in factors.values())


def _masked_model():
    torch.manual_seed(0)
    model = build_model("scnn", timesteps=2, channels=(4, 8), hidden=16)
    masks = {name: (torch.rand_like(m.weight) > 0.7).float() for name, m in prunable_layers(model)}
    attach_masks(model, masks)
    return model, masks


def test_masks_survive_copy_pickle_state_dict_and_zero_gradients():
    model, masks = _masked_model()
    x = torch.rand(4, 1, 28, 28)
    model.train()
    model(x).sum().backward()
    for name, module in prunable_layers(model):
        assert torch.all(module.weight_orig.grad[masks[name] == 0] == 0)
    model.eval()
    expected = model(x)
    assert torch.equal(copy.deepcopy(model)(x), expected)
    assert torch.equal(pickle.loads(pickle.dumps(model))(x), expected)
    twin = build_model("scnn", timesteps=2, channels=(4, 8), hidden=16)
    attach_masks(twin, {name: torch.ones_like(mask) for name, mask in masks.items()})
    twin.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(twin.eval()(x), expected)
    assert all(torch.equal(masks_of(twin)[n], masks[n]) for n in masks)
    zeros = sum(int((mask == 0).sum()) for mask in masks.values())
    finalize(model)
    assert torch.equal(model(x), expected)
    assert sum(int((m.weight == 0).sum()) for _, m in prunable_layers(model)) == zeros
    assert not any("weight_orig" in key or "weight_mask" in key for key in model.state_dict())


SMALL = dict(dataset="digits", model="mlp", model_options={"hidden": [64, 32]}, timesteps=4, epochs=3, lr=5e-3,
             batch_size=64, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dense") / "run"
    Trainer(make_config(SMALL), run).fit()
    return run


@pytest.mark.parametrize("method,rounds", [("slamp", 1), ("lamp", 2), ("erk", 1)])
def test_prune_and_retrain_pipeline(dense_run, tmp_path, method, rounds):
    out = tmp_path / method
    summary = prune_run(dense_run, out, method=method, sparsity=0.8, finetune_epochs=2, rounds=rounds, device="cpu")
    pruning = summary["pruning"]
    assert set(pruning["stages"]) == {"before", "after_prune", "after_retrain"}
    assert all(stage["firing_rates"] for stage in pruning["stages"].values())
    assert summary["density"] == pytest.approx(0.2, abs=1e-3)
    assert pruning["stages"]["after_retrain"]["accuracy"] == summary["test_accuracy"] > 0.6
    assert (method == "slamp") == (pruning["temporal_factors"] is not None)
    # the pruned run reloads with its masks: zeros stay zeros, figures match
    reloaded = load_trained(out, device="cpu")
    assert reloaded.evaluate()["test_accuracy"] == summary["test_accuracy"]
    for _, module in prunable_layers(reloaded.model):
        assert torch.all(module.weight[module.weight_mask == 0] == 0)


def test_prune_cli_and_errors(dense_run, tmp_path):
    out = tmp_path / "cli"
    args = ["prune", "--checkpoint", str(dense_run), "--method", "slamp", "--sparsity", "0.9", "--finetune-epochs", "1"]
    result = subprocess.run([sys.executable, "-m", "spikeprune.cli", *args, "--out", str(out)], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "density" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pruning"]["method"] == "slamp" and summary["density"] == pytest.approx(0.1, abs=1e-3)
    profiled = subprocess.run([sys.executable, "-m", "spikeprune.cli", "profile", "--checkpoint", str(out)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert profiled.returncode == 0, profiled.stderr
    for bad, needle in [(["--method", "random"], "unknown pruning method"), (["--sparsity", "1.5"], "sparsity")]:
        command = ["prune", "--checkpoint", str(dense_run), "--method", "lamp", "--sparsity", "0.5", *bad]
        failed = subprocess.run([sys.executable, "-m", "spikeprune.cli", *command, "--out", str(tmp_path / "bad")],
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert failed.returncode == 2 and needle in failed.stderr and "Traceback" not in failed.stderr
    with pytest.raises(SpikepruneError, match="not an empty folder"):
        prune_run(dense_run, out, method="lamp", sparsity=0.5)


def test_prune_config_file_with_flag_overrides(dense_run, tmp_path):
    recipe = tmp_path / "slamp.yaml"
    recipe.write_text("method: lamp\nsparsity: 0.7\nfinetune_epochs: 1\nfinetune_lr: 0.001\n")
    settings = load_prune_config(recipe, {"sparsity": 0.6, "rounds": None})
    assert (settings.method, settings.sparsity, settings.finetune_lr, settings.rounds) == ("lamp", 0.6, 0.001, 1)
    out = tmp_path / "from-config"
    result = subprocess.run([sys.executable, "-m", "spikeprune.cli", "prune", "--checkpoint", str(dense_run),
                             "--config", str(recipe), "--sparsity", "0.6", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["density"] == pytest.approx(0.4, abs=1e-3)
    assert summary["pruning"]["finetune_lr"] == 0.001
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 0.001
    recipe.write_text("method: lamp\nsparsity: 0.7\nfine_tune_epochs: 1\n")
    with pytest.raises(SpikepruneError, match="fine_tune_epochs"):
        load_prune_config(recipe, {})
    with pytest.raises(SpikepruneError, match="does not exist"):
        load_prune_config(tmp_path / "missing.yaml", {})

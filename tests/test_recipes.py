"""Every recipe in recipes/ runs: two training steps on a tiny data set in the real on-disk format,
with the width and T turned down; each SLAMP recipe then prunes its dense run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from spikeprune.data.events.datasets import CIFAR10DVS_CLASSES
from spikeprune.prune_retrain import load_prune_config, prune_run
from spikeprune.train import Trainer, load_config
from test_data import fake_cifar10, fake_cifar100
from test_event_datasets import random_events, write_aedat2
from test_image_folders import write_tree

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SETUPS = sorted({path.name.rsplit("-", 1)[0] for path in RECIPES.glob("*-dense.yaml")})
TRAINING = ("dense", "sadp", "spikenm")
# per data set: where its tiny copy goes, and what keeps a step small (2 steps of 10 examples)
SMALL = {
    "cifar10": {"model_options": {"width": 1 / 32}},
    "cifar100": {"model_options": {"width": 1 / 32}},
    "cifar10dvs": {"model_options": {"width": 1 / 32}},
    "imagenet": {"model_options": {"width": 1 / 32}, "data_options": {"size": 64}, "num_workers": 0},
}


def write_data(dataset: str, root: Path) -> Path:
    """The data set's real layout, a few examples per class; returns the --data-root."""
    if dataset == "cifar10":
        fake_cifar10(root / "cifar-10-batches-py", per_batch=4)
        return root / "cifar-10-batches-py"
    if dataset == "cifar100":
        fake_cifar100(root / "cifar-100-python", train=20)
        return root / "cifar-100-python"
    if dataset == "cifar10dvs":
        rng = np.random.default_rng(0)
        for name in CIFAR10DVS_CLASSES:
            for i in range(2):
                write_aedat2(
                    root / "CIFAR10DVS" / name / f"cifar10_{name}_{i}.aedat", random_events(rng, 200, 128, 128)
                )
        return root / "CIFAR10DVS"
    if dataset == "imagenet":
        return write_tree(root / "imagenet", train=4, val=1)
    raise AssertionError(f"no tiny data for {dataset}")


def test_recipes_cover_every_setup_and_method():
    assert len(SETUPS) == 6
    for setup in SETUPS:
        for variant in (*TRAINING, "slamp"):
            assert (RECIPES / f"{setup}-{variant}.yaml").is_file(), f"{setup}-{variant}.yaml"
    assert {yaml.safe_load((RECIPES / f"{s}-dense.yaml").read_text())["dataset"] for s in SETUPS} == set(SMALL)


@pytest.mark.parametrize("setup", SETUPS)
def test_recipe_trains_two_steps_and_prunes(setup, tmp_path):
    dataset = yaml.safe_load((RECIPES / f"{setup}-dense.yaml").read_text())["dataset"]
    root = write_data(dataset, tmp_path / "data")
    small = {**SMALL[dataset], "timesteps": 2, "epochs": 1, "batch_size": 10, "data_root": str(root),
             "progress": False, "device": "cpu"}  # fmt: skip
    runs, visited = {}, {}
    for variant in TRAINING:
        config = load_config(RECIPES / f"{setup}-{variant}.yaml", small)
        if variant == "sadp":
            config = config.model_copy(update={"data_pruning_options": {"warmup_epochs": 0, "anneal_fraction": 0}})
        runs[variant] = tmp_path / variant
        summary = Trainer(config, runs[variant]).fit()
        steps = [json.loads(line) for line in (runs[variant] / "log.jsonl").read_text().splitlines()]
        assert np.isfinite(summary["test_loss"]) and steps, variant
        visited[variant] = summary["examples_visited"]
    assert visited["dense"] == visited["spikenm"] > 10 and abs(visited["sadp"] - visited["dense"] / 2) <= 1
    assert load_config(runs["spikenm"] / "config.yaml").sparsity == "nm"
    settings = load_prune_config(RECIPES / f"{setup}-slamp.yaml", {"finetune_epochs": 1, "calibration": 1})
    values = settings.model_dump()
    pruned = prune_run(runs["dense"], tmp_path / "slamp", **{**values, "sparsity": values["sparsity"]}, device="cpu")
    assert pruned["density"] == pytest.approx(1 - settings.sparsity, abs=2e-3)


def test_a_recipe_through_the_command_line(tmp_path):
    root = write_data("cifar10", tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "spikeprune.cli", "train", "--config", str(RECIPES / "cifar10-resnet19-dense.yaml"),
         "--data-root", str(root), "--epochs", "1", "-T", "2", "--batch-size", "10", "--width", "0.03125",
         "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["optimizer"] == "sgd"


def test_the_readme_example_config_is_valid():
    config = load_config(RECIPES / "example.yaml")
    assert (config.dataset, config.data_pruning, config.prune_ratio) == ("mnist5k", "sadp", 0.5)

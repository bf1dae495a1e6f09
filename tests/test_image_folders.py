"""ImageNet-format folders: a tiny tree written here, read lazily, transformed in torch, errors named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spikeprune.data import build_dataset
from spikeprune.data.folders import decode
from spikeprune.errors import SpikepruneError
from spikeprune.train import Trainer, make_config

Image = pytest.importorskip("PIL.Image")
CLASSES = ("n01440764", "n01443537", "n01484850")


def write_tree(root: Path, train: int = 4, val: int = 2, seed: int = 0) -> Path:
    """``train/<class>/*.JPEG`` and ``val/<class>/*.JPEG`` of random images of varied sizes."""
    rng = np.random.default_rng(seed)
    for part, count in (("train", train), ("val", val)):
        for name in CLASSES:
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (40 + 9 * i, 56 - 5 * i, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i}.JPEG", quality=95)
    return root


def test_a_tree_loads_lazily_with_its_classes(tmp_path):
    write_tree(tmp_path / "imagenet")
    train, test = build_dataset("imagenet", root=tmp_path, options={"size": 32})  # finds <root>/imagenet
    assert (len(train), len(test)) == (12, 6)
    assert train.info.num_classes == 3 and train.info.input_shape == (3, 32, 32)
    assert train.targets.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    x, y, index = test[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and (int(y), index) == (2, 5)
    # the evaluation transform is the resized centre crop of the decoded file
    image = decode(test.files[5]).float() / 255
    assert abs(float(x.mean()) - float(((image - 0.45) / 0.226).mean())) < 0.5


def test_training_augmentation_is_keyed_by_seed_epoch_and_index(tmp_path):
    write_tree(tmp_path)
    train, _ = build_dataset("image_folder", root=tmp_path, seed=3, options={"size": 24})
    first = train[1][0]
    assert torch.equal(train[1][0], first)  # the same example, the same epoch: the same crop
    train.set_epoch(1)
    assert not torch.equal(train[1][0], first)  # another epoch: another crop
    again, _ = build_dataset("image_folder", root=tmp_path, seed=3, options={"size": 24})
    assert torch.equal(again[1][0], first)
    batches = [x for x, _, _ in DataLoader(again, batch_size=4, num_workers=2)]  # workers decode in parallel
    assert torch.equal(batches[0][1], first)


def test_the_trainer_runs_on_an_image_folder(tmp_path):
    write_tree(tmp_path)
    config = make_config(
        dict(dataset="image_folder", data_root=str(tmp_path), data_options={"size": 32}, model="resnet18",
             model_options={"width": 1 / 16}, timesteps=1, epochs=1, batch_size=6, num_workers=2, progress=False)
    )  # fmt: skip
    summary = Trainer(config, None).fit()
    assert summary["examples_visited"] == 12 and 0 <= summary["test_accuracy"] <= 1


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda root: (root / "train" / CLASSES[0] / "broken.JPEG").write_bytes(b"not a jpeg"), "broken.JPEG"),
        (lambda root: (root / "val" / "n99999999").mkdir(), "classes that train lacks: n99999999"),
        (lambda root: __import__("shutil").rmtree(root / "val"), "no image folders"),
    ],
)
def test_damage_is_named(tmp_path, damage, needle):
    root = write_tree(tmp_path / "tree")
    damage(root)
    with pytest.raises(SpikepruneError, match=needle):
        train, _ = build_dataset("image_folder", root=root, options={"size": 32})
        [train[i] for i in range(len(train))]


def test_a_damaged_image_in_a_worker_is_one_cli_line(tmp_path):
    root = write_tree(tmp_path / "tree")
    (root / "train" / CLASSES[1] / "bad.JPEG").write_bytes(b"\xff\xd8 truncated")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"dataset: image_folder\ndata_root: {root}\ndata_options: {{size: 32}}\nmodel: resnet18\n"
        "model_options: {width: 0.0625}\ntimesteps: 1\nepochs: 1\nbatch_size: 4\nnum_workers: 2\nprogress: false\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "spikeprune.cli", "train", "--config", str(config), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot decode image") and "bad.JPEG" in lines[0]

"""Tests for spikeprune.data: registry, IndexedDataset, keyed augmentation, built-in datasets."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from spikeprune.data import (
    DatasetInfo,
    IndexedDataset,
    build_dataset,
    dataset_info,
    list_datasets,
)
from spikeprune.data.augment import RandomCropFlip, keyed_generator
from spikeprune.data.cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from spikeprune.data.registry import clear_cache
from spikeprune.data.splits import stratified_split
from spikeprune.errors import SpikepruneError

# ---------------------------------------------------------------- helpers


def rng_states() -> tuple:
    """Snapshot of every global RNG a data loader could disturb."""
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def assert_rng_unchanged(before: tuple) -> None:
    torch_state, numpy_state, python_state = before
    assert torch.equal(torch.get_rng_state(), torch_state)
    now = np.random.get_state()
    assert now[0] == numpy_state[0] and np.array_equal(now[1], numpy_state[1]) and now[2:] == numpy_state[2:]
    assert random.getstate() == python_state


def assert_items_match_batch(ds: IndexedDataset, indices: list[int]) -> None:
    """Batched fetch (`__getitems__`) gives exactly the per-item fetches."""
    batch = ds.__getitems__(indices)
    assert len(batch) == len(indices)
    for (xb, yb, ib), i in zip(batch, indices, strict=True):
        x, y, j = ds[i]
        assert ib == j == i
        assert torch.equal(xb, x)
        assert torch.equal(yb, y)


def write_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)  # the protocol of the official CIFAR files


def fake_cifar10(folder: Path, per_batch: int = 4, test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny CIFAR-10 in the official layout; returns the raw pixels and labels written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pixels, labels = [], []
    for k in range(1, 6):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        write_pickle(
            folder / f"data_batch_{k}",
            {b"batch_label": b"fake", b"data": data, b"labels": y},
        )
        pixels.append(data)
        labels += y
    test_data = rng.integers(0, 256, size=(test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, size=test)]
    write_pickle(
        folder / "test_batch",
        {b"batch_label": b"fake", b"data": test_data, b"labels": test_labels},
    )
    return {
        "train_x": np.concatenate(pixels),
        "train_y": np.array(labels),
        "test_x": test_data,
        "test_y": np.array(test_labels),
    }


def fake_cifar100(folder: Path, train: int = 20, test: int = 10, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", train), ("test", test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        coarse = [v // 5 for v in fine]
        write_pickle(
            folder / name,
            {b"data": data, b"fine_labels": fine, b"coarse_labels": coarse},
        )
        out[f"{name}_x"], out[f"{name}_y"] = data, np.array(fine)
    return out


def unnormalise(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    return x * torch.tensor(std).view(-1, 3, 1, 1) + torch.tensor(mean).view(-1, 3, 1, 1)


class RunsShell:
    """Unpickling this calls os.system: a restricted unpickler must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- registry


def test_registry_lists_builtins() -> None:
    names = [info.name for info in list_datasets()]
    assert names == sorted(names)
    assert {"mnist5k", "mnist1d", "digits", "cifar10", "cifar100"} <= set(names)
    expected_shapes = {
        "mnist5k": (1, 28, 28),
        "mnist1d": (1, 40),
        "digits": (1, 8, 8),
        "cifar10": (3, 32, 32),
        "cifar100": (3, 32, 32),
    }
    for name, shape in expected_shapes.items():
        info = dataset_info(name)
        assert isinstance(info, DatasetInfo)
        assert info.input_shape == shape
        assert info.source and info.description
    assert dataset_info("cifar100").num_classes == 100


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(SpikepruneError) as err:
        build_dataset("imagenet22k")
    message = str(err.value)
    assert "imagenet22k" in message
    for name in ("mnist5k", "mnist1d", "digits", "cifar10", "cifar100"):
        assert name in message
    with pytest.raises(SpikepruneError, match="known datasets"):
        dataset_info("nope")


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"seed": 1.5}, {"augment": "yes"}, {"root": 3}])
def test_bad_arguments_raise_spikeprune_error(kwargs: dict) -> None:
    with pytest.raises(SpikepruneError):
        build_dataset("digits", **kwargs)


# ---------------------------------------------------------------- mnist5k


def test_mnist5k_sizes_shapes_range_and_stratification() -> None:
    train, test = build_dataset("mnist5k", seed=0)
    assert (len(train), len(test)) == (4000, 1000)
    assert train.data.shape == (4000, 1, 28, 28) and test.data.shape == (
        1000,
        1,
        28,
        28,
    )
    assert train.data.dtype == torch.float32 and train.targets.dtype == torch.int64
    assert float(train.data.min()) == 0.0 and float(train.data.max()) == 1.0
    assert torch.equal(torch.bincount(train.targets, minlength=10), torch.full((10,), 400))
    assert torch.equal(torch.bincount(test.targets, minlength=10), torch.full((10,), 100))
    assert train.info.train_size == 4000 and train.info.test_size == 1000
    assert train.augment is None and test.augment is None  # no MNIST augmentation by default


def test_mnist5k_split_is_seeded() -> None:
    a_train, a_test = build_dataset("mnist5k", seed=0)
    clear_cache()  # force a real reload: the same seed must give the same split
    b_train, b_test = build_dataset("mnist5k", seed=0)
    assert a_train.data is not b_train.data
    assert torch.equal(a_train.data, b_train.data) and torch.equal(a_test.targets, b_test.targets)
    c_train, _ = build_dataset("mnist5k", seed=1)
    assert not torch.equal(a_train.data, c_train.data)


def test_mnist5k_train_and_test_are_disjoint() -> None:
    train, test = build_dataset("mnist5k", seed=3)
    rows = {bytes(row.numpy().tobytes()) for row in train.data.reshape(len(train), -1)}
    test_rows = [bytes(row.numpy().tobytes()) for row in test.data.reshape(len(test), -1)]
    assert len(rows) == len(train)  # no duplicate images inside train either
    assert not any(row in rows for row in test_rows)


def test_mnist5k_items_carry_their_index() -> None:
    train, _ = build_dataset("mnist5k")
    for i in (0, 1, 1234, len(train) - 1):
        x, y, idx = train[i]
        assert idx == i and isinstance(idx, int)
        assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
        assert y.dtype == torch.int64 and y.dim() == 0
        assert torch.equal(x, train.data[i]) and int(y) == int(train.targets[i])
    assert train[-1][2] == len(train) - 1
    assert_items_match_batch(train, [5, 0, 3999, 17, 5])
    with pytest.raises(IndexError):
        train[len(train)]


def test_dataloader_uses_batched_fetch_and_keeps_indices() -> None:
    train, _ = build_dataset("mnist5k")
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    x, y, idx = next(iter(loader))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,) and idx.shape == (64,)
    assert torch.equal(x, train.data[idx]) and torch.equal(y, train.targets[idx])


# ---------------------------------------------------------------- mnist1d and digits


def test_mnist1d_sizes_shapes_and_no_global_rng_side_effect() -> None:
    clear_cache()  # make sure the generator really runs inside this test
    before = rng_states()
    train, test = build_dataset("mnist1d", seed=5)
    assert_rng_unchanged(before)
    assert (len(train), len(test)) == (4000, 1000)
    assert train.data.shape == (4000, 1, 40) and test.data.shape == (1000, 1, 40)
    assert train.data.dtype == torch.float32
    assert set(train.targets.unique().tolist()) == set(range(10))
    # The split is the package's fixed benchmark split: the seed does not change it.
    other_train, _ = build_dataset("mnist1d", seed=6)
    assert torch.equal(train.data, other_train.data)


def test_mnist1d_default_is_the_package_standard_set() -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    clear_cache()
    train, test = build_dataset("mnist1d", options={"train_size": 4000, "test_size": 1000})
    reference = make_dataset(get_dataset_args())
    assert np.array_equal(train.data[:, 0].numpy(), reference["x"].astype(np.float32))
    assert np.array_equal(test.targets.numpy(), reference["y_test"])


def test_mnist1d_at_any_size_is_deterministic_and_cached(tmp_path: Path) -> None:
    clear_cache()
    before = rng_states()
    options = {"train_size": 5990, "test_size": 10, "cache_dir": str(tmp_path)}
    train, test = build_dataset("mnist1d", options=options)
    assert_rng_unchanged(before)
    assert (len(train), len(test)) == (5990, 10) and train.info.train_size == 5990
    assert torch.bincount(torch.cat([train.targets, test.targets])).tolist() == [600] * 10
    files = list(tmp_path.glob("mnist1d-*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.glob(".*tmp"))
    # a fresh process (cache cleared) reads the file; regenerating gives the same numbers
    clear_cache()
    again, _ = build_dataset("mnist1d", options=options)
    assert torch.equal(again.data, train.data)
    files[0].unlink()
    clear_cache()
    regenerated, _ = build_dataset("mnist1d", options=options)
    assert torch.equal(regenerated.data, train.data) and torch.equal(regenerated.targets, train.targets)
    # another generator seed gives other signals
    clear_cache()
    other, _ = build_dataset("mnist1d", options={**options, "generator_seed": 7})
    assert not torch.equal(other.data, train.data)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"train_size": 4001}, "multiple of 10"),
        ({"train_size": 0}, "train_size must be an integer >= 1"),
        ({"test_size": 2.5}, "test_size must be an integer"),
    ],
)
def test_mnist1d_bad_sizes_are_named(options: dict, message: str) -> None:
    with pytest.raises(SpikepruneError, match=message):
        build_dataset("mnist1d", options=options)


def test_digits_sizes_shapes_and_no_global_rng_side_effect() -> None:
    clear_cache()
    before = rng_states()
    train, test = build_dataset("digits", seed=0, root="/ignored/for/embedded/datasets")
    assert_rng_unchanged(before)
    assert (len(train), len(test)) == (1437, 360)
    assert train.data.shape == (1437, 1, 8, 8) and test.data.shape == (360, 1, 8, 8)
    assert 0.0 <= float(train.data.min()) and float(train.data.max()) == 1.0
    # Stratified: each class's test share is within one example of 20%.
    counts = torch.bincount(torch.cat([train.targets, test.targets]), minlength=10)
    test_counts = torch.bincount(test.targets, minlength=10)
    assert torch.all((test_counts.double() - counts.double() * 360 / 1797).abs() < 1)


def test_stratified_split_exact_totals_with_uneven_classes() -> None:
    labels = np.array([0] * 7 + [1] * 13 + [2] * 29 + [3] * 1)
    train, test = stratified_split(labels, 11, seed=0)
    assert len(test) == 11 and len(train) == len(labels) - 11
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))


# ---------------------------------------------------------------- cifar


def test_cifar10_loads_official_format(tmp_path: Path) -> None:
    raw = fake_cifar10(tmp_path / "cifar-10-batches-py")
    train, test = build_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", augment=False)
    assert (len(train), len(test)) == (20, 10)
    assert train.data.shape == (20, 3, 32, 32) and test.data.shape == (10, 3, 32, 32)
    assert train.info.train_size == 20 and train.info.num_classes == 10
    assert torch.equal(train.targets, torch.from_numpy(raw["train_y"]))
    assert torch.equal(test.targets, torch.from_numpy(raw["test_y"]))
    expected = torch.from_numpy(raw["train_x"]).reshape(-1, 3, 32, 32).float() / 255
    assert torch.allclose(unnormalise(train.data, CIFAR10_MEAN, CIFAR10_STD), expected, atol=1e-5)
    expected_test = torch.from_numpy(raw["test_x"]).reshape(-1, 3, 32, 32).float() / 255
    assert torch.allclose(unnormalise(test.data, CIFAR10_MEAN, CIFAR10_STD), expected_test, atol=1e-5)


def test_cifar_root_can_be_parent_folder_or_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cifar10(tmp_path / "cifar-10-batches-py")
    train, _ = build_dataset("cifar10", root=tmp_path)
    assert len(train) == 20
    monkeypatch.setenv("SPIKEPRUNE_DATA", str(tmp_path))
    train_env, _ = build_dataset("cifar10")
    assert torch.equal(train.data, train_env.data)


def test_cifar100_loads_fine_labels(tmp_path: Path) -> None:
    raw = fake_cifar100(tmp_path / "cifar-100-python")
    train, test = build_dataset("cifar100", root=tmp_path / "cifar-100-python")
    assert (len(train), len(test)) == (20, 10)
    assert train.data.shape == (20, 3, 32, 32)
    assert train.info.num_classes == 100
    assert torch.equal(train.targets, torch.from_numpy(raw["train_y"]))
    expected = torch.from_numpy(raw["test_x"]).reshape(-1, 3, 32, 32).float() / 255
    assert torch.allclose(unnormalise(test.data, CIFAR100_MEAN, CIFAR100_STD), expected, atol=1e-5)


def test_cifar_missing_folder_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SpikepruneError) as err:
        build_dataset("cifar10", root=missing)
    message = str(err.value)
    assert str(missing) in message
    assert "SPIKEPRUNE_DATA" in message and "--data-root" in message
    assert "\n" not in message


def test_cifar_missing_file_names_file(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    fake_cifar10(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(SpikepruneError, match="data_batch_3") as err:
        build_dataset("cifar10", root=folder)
    assert str(folder / "data_batch_3") in str(err.value)


def test_cifar_refuses_pickles_with_other_globals(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    fake_cifar10(folder)
    marker = tmp_path / "code-was-executed"
    write_pickle(folder / "data_batch_2", {b"data": RunsShell(marker), b"labels": [0]})
    with pytest.raises(SpikepruneError, match="refusing to unpickle") as err:
        build_dataset("cifar10", root=folder)
    assert "system" in str(err.value) and "data_batch_2" in str(err.value)
    assert not marker.exists()


def test_cifar_corrupt_file_is_a_spikeprune_error(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    fake_cifar10(folder)
    (folder / "test_batch").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(SpikepruneError, match="test_batch"):
        build_dataset("cifar10", root=folder)


# ---------------------------------------------------------------- augmentation


def test_augmentation_is_keyed_by_seed_epoch_and_index(tmp_path: Path) -> None:
    fake_cifar10(tmp_path / "cifar-10-batches-py")
    before = rng_states()
    train, test = build_dataset("cifar10", root=tmp_path, seed=7)
    assert isinstance(train.augment, RandomCropFlip) and test.augment is None
    indices = list(range(len(train)))

    train.set_epoch(3)
    alone = [train[i][0] for i in indices]
    batched = [x for x, _, _ in train.__getitems__(indices[::-1])][::-1]
    for a, b in zip(alone, batched, strict=True):
        assert torch.equal(a, b)
    assert_items_match_batch(train, [4, 9, 0, 4])
    assert any(not torch.equal(a, train.data[i]) for i, a in zip(indices, alone, strict=True))  # it augments

    # A second dataset object with the same seed and epoch agrees exactly.
    again, _ = build_dataset("cifar10", root=tmp_path, seed=7)
    again.set_epoch(3)
    assert all(torch.equal(again[i][0], alone[i]) for i in indices)

    train.set_epoch(4)
    assert sum(not torch.equal(train[i][0], alone[i]) for i in indices) >= len(indices) // 2

    other_seed, _ = build_dataset("cifar10", root=tmp_path, seed=8)
    other_seed.set_epoch(3)
    assert any(not torch.equal(other_seed[i][0], alone[i]) for i in indices)

    for i in range(len(test)):  # the test set is never augmented
        assert torch.equal(test[i][0], test.data[i])
    assert_rng_unchanged(before)


def test_augment_false_disables_training_augmentation(tmp_path: Path) -> None:
    fake_cifar10(tmp_path / "cifar-10-batches-py")
    train, _ = build_dataset("cifar10", root=tmp_path, augment=False)
    assert train.augment is None
    assert torch.equal(train[3][0], train.data[3])


def test_random_crop_flip_matches_pad_crop_flip_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 32, 32, generator=gen)
    fill = (-1.0, -2.0, -3.0)
    aug = RandomCropFlip(padding=4, fill=fill)
    params = torch.tensor([[0, 0, 0], [8, 8, 1], [4, 4, 0], [4, 4, 1], [1, 7, 0], [6, 2, 1]])
    out = aug.apply(x, params)
    padded = torch.stack([F.pad(x[:, c], (4, 4, 4, 4), value=fill[c]) for c in range(3)], dim=1)
    for k, (dy, dx, flip) in enumerate(params.tolist()):
        ref = padded[k, :, dy : dy + 32, dx : dx + 32]
        if flip:
            ref = ref.flip(-1)
        assert torch.equal(out[k], ref)
    assert torch.equal(out[2], x[2])  # centre crop, no flip: unchanged


def test_generic_augmentation_callable_is_order_independent() -> None:
    def add_noise(x_batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x_batch + torch.randn(x_batch.shape, generator=generator)

    info = DatasetInfo("toy", (2,), 3, 10, 0, "toy", "test")
    ds = IndexedDataset(torch.zeros(10, 2), torch.arange(10) % 3, info, augment=add_noise, seed=1)
    ds.set_epoch(2)
    assert_items_match_batch(ds, [9, 3, 3, 0])
    expected = add_noise(torch.zeros(1, 2), keyed_generator(1, 2, 4))[0]
    assert torch.equal(ds[4][0], expected)


def test_indexed_dataset_rejects_inconsistent_tensors() -> None:
    info = DatasetInfo("toy", (2,), 3, 4, 0, "toy", "test")
    with pytest.raises(SpikepruneError):
        IndexedDataset(
            torch.zeros(4, 2, dtype=torch.float64),
            torch.zeros(4, dtype=torch.int64),
            info,
        )
    with pytest.raises(SpikepruneError):
        IndexedDataset(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64), info)
    with pytest.raises(SpikepruneError):
        IndexedDataset(torch.zeros(4, 5), torch.zeros(4, dtype=torch.int64), info)
    with pytest.raises(SpikepruneError):
        IndexedDataset(torch.zeros(4, 2), torch.full((4,), 3, dtype=torch.int64), info)


def test_random_crop_flip_params_cover_all_offsets_and_both_flips() -> None:
    aug = RandomCropFlip(padding=4)
    params = torch.tensor([aug.sample_params(keyed_generator(0, 0, i)) for i in range(3000)])
    assert set(params[:, 0].tolist()) == set(range(9)) == set(params[:, 1].tolist())
    assert 0.45 < params[:, 2].double().mean() < 0.55
    no_flip = RandomCropFlip(padding=2, flip=False)
    params = torch.tensor([no_flip.sample_params(keyed_generator(0, 0, i)) for i in range(200)])
    assert set(params[:, 0].tolist()) == set(range(5)) and params[:, 2].sum() == 0


def test_cifar_empty_folder_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(SpikepruneError, match="no CIFAR-100 files") as err:
        build_dataset("cifar100", root=tmp_path)
    assert str(tmp_path) in str(err.value) and "cifar-100-python" in str(err.value)

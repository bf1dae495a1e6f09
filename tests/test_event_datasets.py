"""The event datasets: real formats written by the tests and read back, errors, nmnist5k, training, the CLI."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from aedat4_writer import write_aedat4
from spikeprune import cli
from spikeprune.data import IndexedDataset, build_dataset, dataset_info
from spikeprune.data.cache import CACHE_FOLDER
from spikeprune.data.events import FrameSpec, make_events
from spikeprune.data.events.datasets import CIFAR10DVS, CIFAR10DVS_CLASSES, DEFAULT_TIMESTEPS, EventFolder
from spikeprune.data.registry import clear_cache
from spikeprune.errors import SpikepruneError
from spikeprune.models import build_model
from spikeprune.train import Trainer, make_config
from spikeprune.train.config import TrainConfig

# ---------------------------------------------------------------- writers of the real formats


def random_events(rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    t = np.sort(rng.integers(0, 300_000, n))
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.random(n) < 0.5)


def write_nmnist_bin(path, events: np.ndarray) -> None:
    """N-MNIST: 5 bytes per event: x, y, polarity bit 7 + time bits 22-16, time bits 15-8, time bits 7-0."""
    t = events["t"].astype(np.int64)
    raw = np.stack(
        [events["x"], events["y"], (events["p"].astype(np.int64) << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF],
        axis=1,
    ).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


AEDAT2_HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
)


def write_aedat2(path, events: np.ndarray) -> None:
    """DVS128 AEDAT 2.0 as in CIFAR10-DVS, encoding SpikingJelly's orientation (x = 127 - bits 8-14, ...)."""
    address = ((127 - events["x"].astype(np.int64)) << 8) | ((127 - events["y"].astype(np.int64)) << 1)
    address |= (~events["p"]).astype(np.int64)  # bit 0 is 0 for ON
    pairs = np.stack([address, events["t"]], axis=1).astype(">u4")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(AEDAT2_HEADER + pairs.tobytes())


def write_gesture_npy(path, events: np.ndarray) -> None:
    """tonic's DVS Gesture samples: rows (x, y, p, t in ms)."""
    rows = np.stack([events["x"], events["y"], events["p"], events["t"] // 1000], axis=1).astype(np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, rows)


def expected_frames(events: np.ndarray, sensor: tuple[int, int], size: int | None, timesteps: int) -> np.ndarray:
    """Frames straight from tonic's transforms, for comparison with what the dataset loads."""
    import tonic

    if size is not None:
        events = tonic.transforms.Downsample(sensor_size=(*sensor, 2), target_size=(size, size))(events)
        sensor = (size, size)
    return tonic.transforms.ToFrame(sensor_size=(*sensor, 2), n_time_bins=timesteps)(events).astype(np.float32)


@pytest.fixture
def nmnist_root(tmp_path):
    """NMNIST/Train/<digit>/<id>.bin (2 per digit) and NMNIST/Test/<digit>/<id>.bin (1 per digit)."""
    rng = np.random.default_rng(0)
    written = {}
    for group, count in [("Train", 2), ("Test", 1)]:
        for digit in range(10):
            for i in range(count):
                events = random_events(rng, 200, 34, 34)
                path = tmp_path / "NMNIST" / group / str(digit) / f"{i:05d}.bin"
                write_nmnist_bin(path, events)
                written[path] = (events, digit)
    return tmp_path, written


# ---------------------------------------------------------------- real formats read back


def test_nmnist_files_read_back_exactly(nmnist_root):
    root, written = nmnist_root
    train, test = build_dataset("nmnist", root=root, options={"timesteps": 3, "cache": False})
    assert len(train) == 20 and len(test) == 10
    assert train.info.input_shape == (3, 2, 34, 34) and train.info.event_frames
    files = sorted(p for p in written if p.parts[-3] == "Train")
    for i, path in enumerate(files):  # sorted by digit folder, then file name
        events, digit = written[path]
        assert int(train.targets[i]) == digit
        np.testing.assert_array_equal(train.data[i].numpy(), expected_frames(events, (34, 34), None, 3))


def test_cifar10dvs_aedat_files_and_their_seeded_stratified_split(tmp_path):
    rng = np.random.default_rng(1)
    written = {}
    for label, name in enumerate(CIFAR10DVS_CLASSES):
        for i in range(3):
            events = random_events(rng, 300, 128, 128)
            path = tmp_path / "CIFAR10DVS" / name / f"cifar10_{name}_{i}.aedat"
            write_aedat2(path, events)
            written[path] = (events, label)
    train, test = build_dataset("cifar10dvs", root=tmp_path / "CIFAR10DVS", seed=3, options={"timesteps": 2})
    assert (len(train), len(test)) == (27, 3) and train.info.input_shape == (2, 2, 48, 48)
    assert len(set(test.targets.tolist())) == 3  # stratified: three different classes held out
    # every example is one of the files, read back exactly (through the frame cache)
    expected = {lab: [] for lab in range(10)}
    for events, label in written.values():
        expected[label].append(expected_frames(events, (128, 128), 48, 2))
    for dataset in (train, test):
        for x, y, _ in (dataset[i] for i in range(len(dataset))):
            assert any(np.array_equal(x.numpy(), frames) for frames in expected[int(y)])
    again, _ = build_dataset("cifar10dvs", root=tmp_path, seed=3, options={"timesteps": 2})
    assert torch.equal(again.targets, train.targets)
    other, _ = build_dataset("cifar10dvs", root=tmp_path, seed=4, options={"timesteps": 2})
    assert not torch.equal(other.targets, train.targets)
    assert len(list((tmp_path / "CIFAR10DVS" / CACHE_FOLDER).glob("*.safetensors"))) == 1


def test_cifar10dvs_aedat4_files_read_back_exactly(tmp_path):
    """tonic's AEDAT4 re-release, written by tests/aedat4_writer.py and decoded by the aedat package (no skip)."""
    import aedat  # noqa: F401  (a dev dependency: the test fails, not skips, without it)

    rng = np.random.default_rng(5)
    written = {}
    for name in CIFAR10DVS_CLASSES:
        for i in range(2):
            events = random_events(rng, 70, 128, 128)
            events["x"][:2], events["y"][:2], events["p"][:2] = (0, 127), (127, 0), (True, False)  # sensor corners
            stem = f"cifar10_{name}_{i}"
            write_aedat4(tmp_path / "v4" / "CIFAR10DVS" / name / f"{stem}.aedat4", events, events_per_packet=30)
            write_aedat2(tmp_path / "v2" / "CIFAR10DVS" / name / f"{stem}.aedat", events)
            written[stem] = events
    for path in sorted((tmp_path / "v4" / "CIFAR10DVS").glob("*/*.aedat4")):
        np.testing.assert_array_equal(CIFAR10DVS.read(path), written[path.stem])  # x, y, t, p exactly
    options = {"timesteps": 2, "cache": False}
    train4, test4 = build_dataset("cifar10dvs", root=tmp_path / "v4", seed=3, options=options)
    train2, test2 = build_dataset("cifar10dvs", root=tmp_path / "v2", seed=3, options=options)
    assert (len(train4), len(test4)) == (18, 2) and train4.info.input_shape == (2, 2, 48, 48)
    for v4, v2 in [(train4, train2), (test4, test2)]:  # the same events give the same frames from either format
        assert torch.equal(v4.targets, v2.targets) and torch.equal(v4.data, v2.data)
    first = sorted(written)[0]  # cifar10_airplane_0, the first file of class 0
    frames = expected_frames(written[first], (128, 128), 48, 2)
    examples = [dataset[i] for dataset in (train4, test4) for i in range(len(dataset))]
    assert any(np.array_equal(x.numpy(), frames) for x, y, _ in examples if y == 0)


def test_corrupt_aedat4_files_are_named(tmp_path, monkeypatch):
    events = random_events(np.random.default_rng(6), 90, 128, 128)
    path = tmp_path / "CIFAR10DVS" / "cat" / "cat_0.aedat4"
    write_aedat4(path, events, events_per_packet=40)
    write_aedat4(tmp_path / "CIFAR10DVS" / "dog" / "dog_0.aedat4", events)
    good = path.read_bytes()
    header_end = 18 + int.from_bytes(good[14:18], "little")

    def damaged(data: bytes, needle: str) -> None:
        path.write_bytes(data)
        with pytest.raises(SpikepruneError, match=needle) as error:
            build_dataset("cifar10dvs", root=tmp_path, options={"cache": False})
        assert str(path) in str(error.value)

    damaged(good[:-5], "cat_0.aedat4 is truncated: it ends inside an AEDAT4 packet")
    damaged(good[:40], "cat_0.aedat4 is truncated: it ends inside the AEDAT4 header")
    damaged(good[:header_end], r"cat_0.aedat4 holds no events \(no event packets after the AEDAT4 header\)")
    damaged(b"#!AER-DAT2.0\r\n" + good[14:], "cat_0.aedat4 is not an AEDAT4 file")
    damaged(b"", "cat_0.aedat4 is not an AEDAT4 file")
    # a byte that is not UTF-8 here (in the XML description) makes aedat 2.3.0 abort the whole process
    bad = good.index(b'<node name="0"') + 1
    damaged(good[:bad] + b"\xfa" + good[bad + 1 :], "cat_0.aedat4 has a damaged AEDAT4 header")
    # the IOHeader's vtable entry for dataTablePosition pointing past the header makes aedat panic
    table = int.from_bytes(good[18:22], "little")
    vtable = table - int.from_bytes(good[18 + table : 22 + table], "little", signed=True)
    entry = 18 + vtable + 4 + 2 * 1  # after the vtable's two u16 sizes, the u16 offset of field 1
    damaged(good[: entry + 1] + b"\xff" + good[entry + 2 :], r"could not be read as AEDAT4 \(PanicException")
    damaged(good[:header_end] + b"\x07" + good[header_end + 1 :], r"could not be read as AEDAT4 \(.*unknown stream id")
    # a packet is a u32 stream id, a u32 size, then the flatbuffer: u32 size, u32 root offset, "EVTS"
    assert good[header_end + 16 : header_end + 20] == b"EVTS"
    damaged(good[: header_end + 16] + b"FRME" + good[header_end + 20 :], "cat_0.aedat4 could not be read as AEDAT4")
    path.write_bytes(good)
    monkeypatch.setitem(sys.modules, "aedat", None)  # as if the aedat package were not installed
    with pytest.raises(SpikepruneError, match="cat_0.aedat4 is an AEDAT4 file; reading it needs the aedat package"):
        build_dataset("cifar10dvs", root=tmp_path, options={"cache": False})


def test_dvsgesture_npy_files_read_back(tmp_path):
    rng = np.random.default_rng(2)
    written = []
    for group, user in [("ibmGestureTrain", "user01_fluorescent"), ("ibmGestureTest", "user24_led")]:
        for label in range(11):
            events = random_events(rng, 150, 128, 128)
            events["t"] -= events["t"] % 1000  # the release stores milliseconds
            write_gesture_npy(tmp_path / "DVSGesture" / group / user / f"{label}.npy", events)
            written.append((group, label, events))
    train, test = build_dataset("dvsgesture", root=tmp_path, options={"timesteps": 2, "size": 32})
    assert (len(train), len(test)) == (11, 11) and train.info.num_classes == 11
    by_label = {label: i for i, label in enumerate(train.targets.tolist())}
    for group, label, events in written:
        if group == "ibmGestureTrain":
            np.testing.assert_array_equal(
                train.data[by_label[label]].numpy(), expected_frames(events, (128, 128), 32, 2)
            )


def test_frame_cache_of_a_real_dataset(nmnist_root, monkeypatch):
    root, written = nmnist_root
    reads = []
    original = EventFolder.read
    monkeypatch.setattr(EventFolder, "read", lambda self, path: reads.append(path) or original(self, path))
    clear_cache()
    first, _ = build_dataset("nmnist", root=root, options={"timesteps": 2})
    assert len(reads) == 30
    clear_cache()
    again, _ = build_dataset("nmnist", root=root, options={"timesteps": 2})
    assert len(reads) == 30  # nothing read: frames came from the cache
    assert torch.equal(first.data, again.data) and torch.equal(first.targets, again.targets)
    clear_cache()
    build_dataset("nmnist", root=root, options={"timesteps": 3})
    assert len(reads) == 60  # new parameters: rebuilt
    path = next(iter(written))
    events, _ = written[path]
    write_nmnist_bin(path, events[:-5])  # a replaced file changes the key
    clear_cache()
    changed, _ = build_dataset("nmnist", root=root, options={"timesteps": 2})
    assert len(reads) == 80  # the 20 Train files were read again, the Test group came from the cache
    assert not torch.equal(changed.data, first.data)
    cache_files = list((root / "NMNIST" / CACHE_FOLDER).glob("*.safetensors"))
    assert len(cache_files) == 5  # (T=2, T=3, T=2 with the new file) x train + test, less the shared test


# ---------------------------------------------------------------- errors name the file and the fix


def test_missing_folder_says_where_files_go(tmp_path):
    with pytest.raises(
        SpikepruneError, match=r"N-MNIST folder not found: .*nowhere.*NMNIST/Train/<digit 0-9>/<id>\.bin"
    ):
        build_dataset("nmnist", root=tmp_path / "nowhere")
    (tmp_path / "NMNIST" / "Train").mkdir(parents=True)
    with pytest.raises(SpikepruneError, match=r"no sample files \(\.bin\) found under .*Train"):
        build_dataset("nmnist", root=tmp_path)
    with pytest.raises(SpikepruneError, match=r"CIFAR10-DVS folder not found.*CIFAR10DVS/<class: airplane"):
        build_dataset("cifar10dvs", root=tmp_path / "nowhere")
    with pytest.raises(SpikepruneError, match=r"does not take option\(s\) 'colour'; its options: timesteps"):
        build_dataset("dvsgesture", root=tmp_path, options={"colour": 1})


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-2]), "is truncated or not an N-MNIST file"),
        (lambda p: p.write_bytes(b""), "holds no events"),
        (lambda p: p.write_bytes(bytes([200, 3, 0, 0, 1])), r"outside the 34x34 sensor"),
    ],
)
def test_corrupt_nmnist_file_is_named(nmnist_root, damage, needle):
    root, written = nmnist_root
    path = sorted(written)[4]
    damage(path)
    with pytest.raises(SpikepruneError, match=needle) as error:
        build_dataset("nmnist", root=root, options={"cache": False})
    assert str(path) in str(error.value)


def test_corrupt_aedat_and_npy_files_are_named(tmp_path):
    events = random_events(np.random.default_rng(3), 50, 128, 128)
    good = tmp_path / "CIFAR10DVS" / "cat" / "cat_0.aedat"
    write_aedat2(good, events)
    write_aedat2(tmp_path / "CIFAR10DVS" / "dog" / "dog_0.aedat", events)
    good.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(SpikepruneError, match="cat_0.aedat is truncated"):
        build_dataset("cifar10dvs", root=tmp_path, options={"cache": False})
    good.write_bytes(b"\x00\x01garbage without a header")
    with pytest.raises(SpikepruneError, match="cat_0.aedat could not be read as AEDAT"):
        build_dataset("cifar10dvs", root=tmp_path, options={"cache": False})
    good.write_bytes(AEDAT2_HEADER.replace(b"2.0", b"3.1"))
    with pytest.raises(SpikepruneError, match=r"cat_0.aedat is AEDAT 3.1, expected AEDAT 2.0"):
        build_dataset("cifar10dvs", root=tmp_path, options={"cache": False})

    npy = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led" / "3.npy"
    write_gesture_npy(npy, events)
    write_gesture_npy(tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led" / "3.npy", events)
    npy.write_bytes(npy.read_bytes()[:-11])
    with pytest.raises(SpikepruneError, match="3.npy is truncated or not a .npy array"):
        build_dataset("dvsgesture", root=tmp_path, options={"cache": False})
    np.save(npy, np.zeros((4, 3)))
    with pytest.raises(SpikepruneError, match=r"3.npy holds a float64 array of shape \(4, 3\)"):
        build_dataset("dvsgesture", root=tmp_path, options={"cache": False})


def test_cli_prints_one_line_for_a_missing_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        sys, "argv", ["spikeprune", "train", "--dataset", "dvsgesture", "--data-root", str(tmp_path / "none")]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: DVS128 Gesture folder not found") and err.count("\n") == 1
    assert "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label 0-10>.npy" in err


def test_cli_lists_event_datasets(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["spikeprune", "datasets"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    for line in ["nmnist5k   Tx2x34x34", "cifar10dvs Tx2x48x48", "dvsgesture Tx2x32x32", "nmnist     Tx2x34x34"]:
        assert line in out
    assert "CIFAR10DVS/<class: airplane ... truck>/<name>.aedat" in out and "data_options: timesteps" in out


# ---------------------------------------------------------------- nmnist5k


def test_nmnist5k_matches_mnist5k_and_is_deterministic():
    assert DEFAULT_TIMESTEPS == TrainConfig().timesteps
    info = dataset_info("nmnist5k")
    assert info.event_frames and info.input_shape == (DEFAULT_TIMESTEPS, 2, 34, 34)
    train, test = build_dataset("nmnist5k")
    digits_train, digits_test = build_dataset("mnist5k")
    assert torch.equal(train.targets, digits_train.targets) and torch.equal(test.targets, digits_test.targets)
    assert train.data.shape == (4000, DEFAULT_TIMESTEPS, 2, 34, 34)
    assert (train.data >= 0).all() and train.data.sum(dim=(1, 2, 3, 4)).min() > 500  # every digit makes events
    from spikeprune.data.events.emulator import SaccadeEmulator

    first = digits_train.data[0, 0].numpy()[None]
    events = SaccadeEmulator().convert(first)[0]
    np.testing.assert_array_equal(train.data[0].numpy(), FrameSpec((34, 34), DEFAULT_TIMESTEPS).frames(events))


def test_nmnist5k_at_ten_steps_bins_the_same_events_into_more_frames():
    train4, _ = build_dataset("nmnist5k")
    train10, test10 = build_dataset("nmnist5k", options={"timesteps": 10})
    assert train10.data.shape == (4000, 10, 2, 34, 34) and train10.info.input_shape == (10, 2, 34, 34)
    assert torch.equal(train10.data[:64].sum(1), train4.data[:64].sum(1))  # every event lands in one bin
    model = build_model("vggsnn", input_shape=(10, 2, 34, 34), timesteps=10, encoder="frames", width=1 / 16)
    assert model(test10.data[:4]).shape == (4, 10)


def test_tiny_training_run_on_nmnist5k(tmp_path):
    """End to end: the trainer builds a frames model and learns (a few steps: BN statistics still settle)."""
    train, test = build_dataset("nmnist5k")
    small_train = IndexedDataset(train.data[:600], train.targets[:600], train.info)
    small_test = IndexedDataset(test.data[:100], test.targets[:100], test.info)
    config = make_config(
        dict(
            dataset="nmnist5k",
            model="scnn",
            model_options={"channels": [4, 8], "hidden": 16},
            epochs=2,
            batch_size=50,
            lr=1e-2,
            progress=False,
        )
    )
    trainer = Trainer(config, tmp_path / "run", train_set=small_train, test_set=small_test)
    assert trainer.model.options.encoder == "frames" and trainer.model.step_shape == (2, 34, 34)
    summary = trainer.fit()
    first, last = trainer.history
    assert last["train_loss"] < first["train_loss"] and last["train_accuracy"] > 0.3  # chance is 0.1
    assert 0.0 <= summary["test_accuracy"] <= 1.0


def test_trainer_refuses_another_encoder_for_event_frames():
    config = make_config(dict(dataset="nmnist5k", model_options={"encoder": "rate"}, epochs=0, progress=False))
    with pytest.raises(SpikepruneError, match="encoder 'frames', not 'rate'"):
        Trainer(config)


def test_without_tonic_event_data_names_the_extra(monkeypatch, tmp_path):
    from spikeprune.data.events.stream import tonic

    for name in ("tonic", "tonic.io", "tonic.functional", "tonic.transforms"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(SpikepruneError, match=r"pip install 'spikeprune\[events\]'"):
        tonic("tonic.io")
    with pytest.raises(SpikepruneError, match="needs tonic"):
        FrameSpec((34, 34), 2).frames(random_events(np.random.default_rng(0), 10, 34, 34))

"""Event streams, frame integration, the frame cache, the saccade emulator and models on event frames."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeprune.data.cache import cache_path, cached_arrays
from spikeprune.data.events import EVENT_DTYPE, EventFileError, FrameSpec, SaccadeEmulator, check_events, make_events
from spikeprune.data.events.frames import frame_spec
from spikeprune.errors import SpikepruneError
from spikeprune.models import build_model


def events_of(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A stream from (x, y, t, p) rows."""
    x, y, t, p = (np.array(column) for column in zip(*rows, strict=True))
    return make_events(x, y, t, p)


# Seven events on a 3x2 sensor (width 3, height 2).
HAND_EVENTS = [(0, 0, 0, 1), (1, 0, 10, 0), (1, 0, 20, 0), (2, 1, 49, 1), (2, 1, 50, 1), (0, 1, 99, 0), (1, 1, 101, 1)]


# ---------------------------------------------------------------- frames, by hand


def test_time_bins_by_hand():
    # t0 = 0, t1 = 101, T = 2: bin width w = 101 // 2 = 50 -> bins [0, 50) and [50, 100);
    # the event at t = 101 falls in no bin (tonic's n_time_bins convention).
    frames = FrameSpec((3, 2), timesteps=2, bin_by="time").frames(events_of(HAND_EVENTS))
    expected = np.zeros((2, 2, 2, 3), dtype=np.float32)  # [T, polarity, y, x]
    expected[0, 1, 0, 0] = 1  # t=0 ON at (x0, y0)
    expected[0, 0, 0, 1] = 2  # t=10, 20 OFF at (x1, y0)
    expected[0, 1, 1, 2] = 1  # t=49 ON at (x2, y1)
    expected[1, 1, 1, 2] = 1  # t=50 ON at (x2, y1)
    expected[1, 0, 1, 0] = 1  # t=99 OFF at (x0, y1)
    assert frames.dtype == np.float32
    np.testing.assert_array_equal(frames, expected)


def test_count_bins_by_hand():
    # 7 events, T = 3: 7 // 3 = 2 events per bin, in time order; the 7th falls in no bin.
    frames = FrameSpec((3, 2), timesteps=3, bin_by="count").frames(events_of(HAND_EVENTS))
    expected = np.zeros((3, 2, 2, 3), dtype=np.float32)
    expected[0, 1, 0, 0] = expected[0, 0, 0, 1] = 1  # events 0, 1
    expected[1, 0, 0, 1] = expected[1, 1, 1, 2] = 1  # events 2, 3
    expected[2, 1, 1, 2] = expected[2, 0, 1, 0] = 1  # events 4, 5
    np.testing.assert_array_equal(frames, expected)


def test_downsample_by_hand():
    # 4x4 -> 2x2: coordinates halve and floor, so the four events land on two pixels.
    events = events_of([(0, 0, 0, 1), (1, 1, 1, 1), (3, 2, 2, 1), (2, 3, 3, 1)])
    frames = FrameSpec((4, 4), timesteps=1, bin_by="count", size=(2, 2)).frames(events)
    np.testing.assert_array_equal(frames[0, 1], [[2, 0], [0, 2]])
    assert frames[0, 0].sum() == 0


def test_denoise_by_hand():
    # tonic's Denoise keeps an event when a 4-neighbour fired less than filter_time before it.
    events = events_of([(5, 5, 10_000, 1), (5, 6, 10_100, 1), (0, 0, 10_200, 1), (9, 9, 20_000, 1)])
    frames = FrameSpec((10, 10), timesteps=1, bin_by="count", denoise_us=1000).frames(events)
    assert frames.sum() == 1 and frames[0, 1, 6, 5] == 1


def test_empty_stream_gives_empty_frames():
    frames = FrameSpec((3, 2), timesteps=4).frames(np.zeros(0, dtype=EVENT_DTYPE))
    assert frames.shape == (4, 2, 2, 3) and not frames.any()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    timesteps=st.integers(1, 6),
    bin_by=st.sampled_from(["time", "count"]),
    seed=st.integers(0, 2**16),
)
def test_frames_match_tonic_and_conserve_binned_events(n, timesteps, bin_by, seed):
    import tonic

    rng = np.random.default_rng(seed)
    events = make_events(
        rng.integers(0, 5, n), rng.integers(0, 4, n), np.sort(rng.integers(0, 1000, n)), rng.random(n) < 0.5
    )
    frames = FrameSpec((5, 4), timesteps=timesteps, bin_by=bin_by).frames(events)
    key = "n_time_bins" if bin_by == "time" else "n_event_bins"
    reference = tonic.transforms.ToFrame(sensor_size=(5, 4, 2), **{key: timesteps})(events)
    np.testing.assert_array_equal(frames, reference)
    if bin_by == "count":
        assert frames.sum() == n - n % timesteps


def test_frame_options_are_checked():
    assert frame_spec((128, 128), timesteps=4, size=48).shape == (4, 2, 48, 48)
    assert frame_spec((128, 128), timesteps=4, size=[64, 32]).shape == (4, 2, 32, 64)
    for bad in [dict(timesteps=0), dict(timesteps=4, bin_by="space"), dict(timesteps=4, size=200)]:
        with pytest.raises(SpikepruneError):
            frame_spec((128, 128), **bad)
    with pytest.raises(SpikepruneError, match="size must be"):
        frame_spec((128, 128), timesteps=4, size="big")


def test_check_events_names_the_source_and_sorts():
    with pytest.raises(EventFileError, match=r"bad\.bin: event 1 lies at \(x=7, y=0\), outside the 3x2 sensor"):
        check_events(events_of([(0, 0, 0, 1), (7, 0, 1, 1)]), (3, 2), "bad.bin")
    with pytest.raises(EventFileError, match="empty.bin holds no events"):
        check_events(np.zeros(0, dtype=EVENT_DTYPE), (3, 2), "empty.bin")
    shuffled = check_events(events_of([(0, 0, 5, 1), (1, 0, 2, 0)]), (3, 2), "x")
    assert shuffled["t"].tolist() == [2, 5]


# ---------------------------------------------------------------- cache


def test_cache_returns_identical_arrays_and_rebuilds_on_new_parameters(tmp_path):
    builds = []

    def build(value):
        def run():
            builds.append(value)
            return {"frames": np.full((2, 3), value, dtype=np.float32), "labels": np.arange(2)}

        return run

    parts = {"dataset": "toy", "frames": {"timesteps": 4}}
    first = cached_arrays(tmp_path, "toy", parts, build(1.5))
    again = cached_arrays(tmp_path, "toy", parts, build(9.0))
    assert builds == [1.5]
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
        assert first[name].dtype == again[name].dtype
    changed = cached_arrays(tmp_path, "toy", {"dataset": "toy", "frames": {"timesteps": 8}}, build(2.0))
    assert builds == [1.5, 2.0] and changed["frames"][0, 0] == 2.0
    # a damaged cache file is rebuilt, not trusted
    path = cache_path(tmp_path, "toy", parts)
    path.write_bytes(path.read_bytes()[:20])
    assert cached_arrays(tmp_path, "toy", parts, build(3.0))["frames"][0, 0] == 3.0
    assert builds == [1.5, 2.0, 3.0]
    assert not list(tmp_path.glob(".*.tmp"))


def test_cache_unwritable_folder_warns_and_still_returns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="could not write the data cache"):
        arrays = cached_arrays(blocker / "cache", "toy", {"k": 1}, lambda: {"a": np.ones(2)})
    np.testing.assert_array_equal(arrays["a"], np.ones(2))


def test_two_processes_writing_the_same_key(tmp_path):
    """Both writers finish, the file is complete and no temporary file is left behind."""
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import numpy as np
        from spikeprune.data.cache import save_arrays, cache_path
        parts = {{"dataset": "race"}}
        frames = np.arange(6_000_000, dtype=np.float32).reshape(1000, 6000)
        Path({str(tmp_path)!r}, "ready-" + sys.argv[1]).touch()
        while not Path({str(go)!r}).exists():
            time.sleep(0.001)
        for _ in range(3):
            save_arrays(cache_path(Path({str(tmp_path)!r}), "race", parts), {{"frames": frames}}, parts)
        """
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], stderr=subprocess.PIPE, text=True) for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()  # both writers start together
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    arrays = cached_arrays(tmp_path, "race", {"dataset": "race"}, lambda: pytest.fail("cache was not used"))
    np.testing.assert_array_equal(arrays["frames"].ravel(), np.arange(6_000_000, dtype=np.float32))
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- emulator


def bar_image() -> np.ndarray:
    """A bright vertical bar, columns 12-15, on black."""
    image = np.zeros((1, 28, 28), dtype=np.float32)
    image[0, 2:26, 12:16] = 1.0
    return image


def test_emulator_is_deterministic_and_chunk_invariant():
    rng = np.random.default_rng(0)
    images = rng.random((3, 28, 28)).astype(np.float32) * (rng.random((3, 28, 28)) > 0.7)
    emulator = SaccadeEmulator(noise_hz=50.0)
    once = emulator.convert(images, seed=3)
    twice = emulator.convert(images, seed=3)
    chunked = emulator.convert(images[:1], seed=3) + emulator.convert(images[1:], seed=3, first_index=1)
    for a, b, c in zip(once, twice, chunked, strict=True):
        assert a.dtype == EVENT_DTYPE and len(a) > 100
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        assert (np.diff(a["t"]) >= 0).all()
        assert a["x"].max() < 34 and a["y"].max() < 34 and a["t"].max() <= emulator.duration_us
    other_seed = emulator.convert(images, seed=4)
    assert not all(len(a) == len(b) and (a == b).all() for a, b in zip(once, other_seed, strict=True))


def test_emulator_polarity_follows_the_motion():
    """Moving right (saccade 1: dx +3.5), ON events lead on the bar's right edge; moving left (saccade 3), its left."""
    emulator = SaccadeEmulator()
    events = emulator.convert(bar_image())[0]
    first = events[events["t"] <= emulator.saccade_us]
    third = events[events["t"] > 2 * emulator.saccade_us]
    for part, sign in [(first, 1), (third, -1)]:
        on, off = part[part["p"]], part[~part["p"]]
        assert len(on) > 20 and len(off) > 20
        # the bar spans about 4 columns: ON and OFF sit on opposite edges
        assert sign * (on["x"].mean() - off["x"].mean()) > 2


def test_emulator_refractory_period_and_silence():
    emulator = SaccadeEmulator(refractory_us=2_500, threshold=0.1)
    events = emulator.convert(bar_image())[0]
    pixel = events["y"].astype(np.int64) * 34 + events["x"]
    order = np.lexsort((events["t"], pixel))
    same = pixel[order][1:] == pixel[order][:-1]
    gaps = np.diff(events["t"][order])[same]
    assert len(gaps) > 100 and gaps.min() >= 2_500
    # a uniform grey image that covers the whole 20x20 sensor throughout the saccades: nothing changes
    grey = SaccadeEmulator(sensor_size=(20, 20), threshold=0.1).convert(np.full((2, 28, 28), 0.5))
    assert [len(s) for s in grey] == [0, 0]


def test_emulator_rejects_bad_settings():
    with pytest.raises(SpikepruneError, match="refractory_us"):
        SaccadeEmulator(refractory_us=50_000)
    with pytest.raises(SpikepruneError, match="threshold"):
        SaccadeEmulator(threshold=0)
    with pytest.raises(SpikepruneError, match=r"images \[N, H, W\]"):
        SaccadeEmulator().convert(np.zeros((28, 28)))


# ---------------------------------------------------------------- models on event frames


def test_models_take_event_frames_batch_first_or_time_first():
    torch.manual_seed(0)
    frames_model = build_model("scnn", input_shape=(3, 2, 34, 34), encoder="frames", timesteps=3).eval()
    time_first_model = build_model("scnn", input_shape=(2, 34, 34), timesteps=3).eval()
    time_first_model.load_state_dict(frames_model.state_dict())
    x = torch.rand(5, 3, 2, 34, 34)  # [B, T, 2, H, W], as a data loader stacks event examples
    logits = frames_model(x)
    assert logits.shape == (5, 10)
    torch.testing.assert_close(logits, time_first_model(x.transpose(0, 1)), rtol=0, atol=1e-6)
    logits.sum().backward()


@pytest.mark.parametrize("size", [48, 64])
def test_vgg11_on_cifar10dvs_sized_frames(size):
    model = build_model("vgg11", input_shape=(2, 2, size, size), encoder="frames", timesteps=2)
    assert model(torch.rand(2, 2, 2, size, size)).shape == (2, 10)


def test_timesteps_must_match_the_frames():
    with pytest.raises(SpikepruneError, match=r"T equal to timesteps=4"):
        build_model("scnn", input_shape=(8, 2, 34, 34), encoder="frames", timesteps=4)
    model = build_model("scnn", input_shape=(4, 2, 34, 34), encoder="frames", timesteps=4)
    with pytest.raises(SpikepruneError, match=r"\[B, T=4, \.\.\.\]"):
        model(torch.rand(2, 3, 2, 34, 34))
    with pytest.raises(SpikepruneError, match=r"expects input \[B, 4, 2, 34, 34\], got"):
        model(torch.rand(2, 34, 34))
    with pytest.raises(SpikepruneError, match="T=5 steps but was built with timesteps=4"):
        build_model("scnn", input_shape=(2, 34, 34), timesteps=4)(torch.rand(5, 2, 2, 34, 34))

"""Event streams to frames ``[T, 2, H, W]``: optional denoising and downsampling, then binning.

The work is done by tonic's functional transforms (``Denoise``, ``Downsample``, ``ToFrame``), so
frames here are exactly what ``tonic.transforms.ToFrame`` gives for the same stream:

- ``bin_by="time"`` (tonic's ``n_time_bins``): with ``t0``/``t1`` the first/last timestamps and
  ``w = (t1 - t0) // T`` (integer microseconds), bin ``i`` counts events with
  ``t0 + i·w <= t < t0 + (i + 1)·w``. Events at or after ``t0 + T·w`` fall in no bin: always the
  last event(s), at ``t1``, and any in the final ``(t1 - t0) % T`` microseconds before it.
- ``bin_by="count"`` (tonic's ``n_event_bins``): with ``n`` events, bin ``i`` counts events
  ``i·(n // T)`` to ``(i + 1)·(n // T) - 1`` in time order; the last ``n % T`` events fall in no bin.

Channel 0 counts OFF events (``p = 0``), channel 1 ON events; the value of a pixel is its number
of events in the bin. Downsampling to ``size`` scales coordinates by ``size / sensor`` and floors
them (tonic's ``Downsample``), so neighbouring pixels' events add up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from spikeprune.data.events.stream import tonic
from spikeprune.errors import SpikepruneError

BIN_MODES = ("time", "count")


@dataclass(frozen=True)
class FrameSpec:
    """How a stream from a ``sensor_size`` (width, height) sensor becomes ``timesteps`` frames.

    Every field is part of the cache key of the frames (see ``cache.py``).
    """

    sensor_size: tuple[int, int]
    timesteps: int
    bin_by: Literal["time", "count"] = "time"
    size: tuple[int, int] | None = None  # (width, height) after downsampling; None keeps the sensor's
    denoise_us: int | None = None  # tonic Denoise filter_time: drop events with no neighbour this recent

    def __post_init__(self) -> None:
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int) or self.timesteps < 1:
            raise SpikepruneError(f"timesteps must be a positive int, got {self.timesteps!r}")
        if self.bin_by not in BIN_MODES:
            raise SpikepruneError(f"bin_by must be one of {', '.join(BIN_MODES)}, got {self.bin_by!r}")
        if self.size is not None and not all(
            1 <= s <= full for s, full in zip(self.size, self.sensor_size, strict=True)
        ):
            raise SpikepruneError(
                f"frame size {self.size} must be positive and at most the sensor size {self.sensor_size} "
                "(width, height)"
            )
        if self.denoise_us is not None and self.denoise_us <= 0:
            raise SpikepruneError(f"denoise_us must be a positive number of microseconds, got {self.denoise_us!r}")

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self.size if self.size is not None else self.sensor_size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape of the frames of one stream: (T, 2, height, width)."""
        width, height = self.frame_size
        return (self.timesteps, 2, height, width)

    def params(self) -> dict[str, Any]:
        """Every parameter, JSON-ready (for cache keys)."""
        return asdict(self)

    def frames(self, events: np.ndarray) -> np.ndarray:
        """Frames float32 [T, 2, H, W] of one time-ordered stream (``EVENT_DTYPE``)."""
        functional, transforms = tonic("tonic.functional"), tonic("tonic.transforms")  # imported late: slow

        if self.denoise_us is not None and len(events):
            events = functional.denoise_numpy(events, filter_time=self.denoise_us)
        width, height = self.frame_size
        if self.size is not None and self.size != self.sensor_size:
            events = transforms.Downsample(sensor_size=(*self.sensor_size, 2), target_size=self.size)(events)
        if len(events) == 0:  # tonic cannot bin an empty stream; it has no events in any bin
            return np.zeros(self.shape, dtype=np.float32)
        bins = {"n_time_bins": self.timesteps} if self.bin_by == "time" else {"n_event_bins": self.timesteps}
        counts = functional.to_frame_numpy(events, sensor_size=(width, height, 2), **bins)
        return counts.astype(np.float32)


def frame_spec(
    sensor_size: tuple[int, int],
    *,
    timesteps: int,
    bin_by: str = "time",
    size: int | tuple[int, int] | list[int] | None = None,
    denoise_us: int | None = None,
) -> FrameSpec:
    """A ``FrameSpec`` from user options: ``size`` may be one int (square) or [width, height]."""
    if size is not None:
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) for s in size):
            size = (int(size[0]), int(size[1]))
        else:
            raise SpikepruneError(f"size must be an int or [width, height], got {size!r}")
    if denoise_us is not None and (isinstance(denoise_us, bool) or not isinstance(denoise_us, (int, float))):
        raise SpikepruneError(f"denoise_us must be a number of microseconds, got {denoise_us!r}")
    return FrameSpec(tuple(sensor_size), timesteps, bin_by, size, denoise_us)  # type: ignore[arg-type]

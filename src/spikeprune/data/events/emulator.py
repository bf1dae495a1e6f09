"""A DVS emulator that turns static images into event streams the way N-MNIST was recorded.

N-MNIST (Orchard et al., 2015) was recorded by an ATIS event camera on a pan-tilt unit that made
three saccades of about 100 ms each, along a triangle, in front of a monitor showing each MNIST
digit. Here the image moves instead of the camera, along the same triangle (the displacements
that tonic's ``NMNIST`` stabilisation removes: (+3.5, +7), (+3.5, -7), (-7, 0) pixels).

Each pixel keeps the log intensity at which it last fired. At every simulation step the moving
image is resampled at its sub-pixel position (bilinear interpolation), and a pixel whose log
intensity has moved ``k`` contrast thresholds away from its reference emits ``k`` events: ON for
an increase, OFF for a decrease, spread evenly over the step. A pixel is blind for a refractory
period after each event, so it emits at most ``step / refractory`` events per step; crossings
beyond that are lost (its reference jumps to the current level), as in a real pixel. Optional
background activity adds Poisson noise events at a fixed rate per pixel.

Everything is vectorised over the images of a batch; the only randomness is the noise, drawn
from a generator keyed by (seed, image index), so an image's events do not depend on the batch
it was converted in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spikeprune.data.events.stream import make_events
from spikeprune.errors import SpikepruneError

# Vertices of the saccade triangle, (dx, dy) in pixels: start, after saccade 1, 2 and 3.
SACCADE_PATH = np.array([(0.0, 0.0), (3.5, 7.0), (7.0, 0.0), (0.0, 0.0)])


@dataclass(frozen=True)
class SaccadeEmulator:
    """Emulate an event camera making N-MNIST's three saccades over a static image.

    Attributes:
        sensor_size: (width, height) of the sensor; the image is centred on it.
        saccade_us: duration of each of the three saccades, in microseconds.
        steps_per_saccade: simulation steps per saccade (the image moves < 1 pixel per step).
        threshold: contrast threshold C on the change of log intensity.
        log_eps: offset in ``log(I + log_eps)``: keeps black (I = 0) finite and sets how strongly
            dark pixels respond (a real sensor has a similar dark-current floor).
        refractory_us: minimum time between two events of one pixel.
        noise_hz: background-activity rate per pixel (both polarities together); 0 for none.
    """

    sensor_size: tuple[int, int] = (34, 34)
    saccade_us: int = 100_000
    steps_per_saccade: int = 10
    threshold: float = 0.3
    log_eps: float = 0.2
    refractory_us: int = 1_000
    noise_hz: float = 0.0

    def __post_init__(self) -> None:
        width, height = self.sensor_size
        checks = {
            "sensor_size": width >= 1 and height >= 1,
            "saccade_us": self.saccade_us >= self.steps_per_saccade >= 1,
            "threshold": self.threshold > 0,
            "log_eps": self.log_eps > 0,
            "refractory_us": 1 <= self.refractory_us <= self.step_us,
            "noise_hz": self.noise_hz >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise SpikepruneError(
                f"SaccadeEmulator: invalid {', '.join(f'{name}={getattr(self, name)!r}' for name in bad)}; sizes, "
                "times and threshold must be positive and refractory_us at most saccade_us / steps_per_saccade"
            )

    @property
    def step_us(self) -> int:
        return self.saccade_us // self.steps_per_saccade

    @property
    def duration_us(self) -> int:
        return 3 * self.steps_per_saccade * self.step_us

    def displacements(self) -> np.ndarray:
        """(dx, dy) of the image at each step boundary, shape [3 * steps_per_saccade + 1, 2]."""
        fractions = np.arange(self.steps_per_saccade) / self.steps_per_saccade
        legs = [
            start + fractions[:, None] * (end - start)
            for start, end in zip(SACCADE_PATH[:-1], SACCADE_PATH[1:], strict=True)
        ]
        return np.concatenate([*legs, SACCADE_PATH[-1:]])

    def convert(self, images: np.ndarray, *, seed: int = 0, first_index: int = 0) -> list[np.ndarray]:
        """Event streams (``EVENT_DTYPE``, time-ordered) of ``images`` [N, H, W] with intensities in [0, 1].

        ``first_index`` is the dataset index of ``images[0]``: it keys the noise of each image, so
        converting a dataset in chunks gives the same events as converting it at once.
        """
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 3:
            raise SpikepruneError(f"SaccadeEmulator.convert needs images [N, H, W], got shape {images.shape}")
        image, x, y, t, on = self._emit(images)
        order = np.argsort(image * (self.duration_us + 1) + t, kind="stable")
        events = make_events(x[order], y[order], t[order], on[order])
        bounds = np.searchsorted(image[order], np.arange(len(images) + 1))
        streams = [events[bounds[i] : bounds[i + 1]] for i in range(len(images))]
        if self.noise_hz > 0:
            streams = [self._add_noise(s, seed, first_index + i) for i, s in enumerate(streams)]
        return streams

    def _canvas(self, images: np.ndarray, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Zero-padded images and, per step and axis, the canvas coordinate of sensor pixel 0.

        Sensor pixel u sees image coordinate ``u - base - shift``, where ``base`` centres the image
        on the sensor over the whole path; on the canvas (image placed at ``pad``) that is
        ``u + origin`` with ``origin = pad - base - shift``.
        """
        image_size = np.array(images.shape[:0:-1], dtype=np.float64)  # (width, height)
        sensor = np.array(self.sensor_size, dtype=np.float64)
        base = (sensor - image_size) / 2 - (shifts.max(0) + shifts.min(0)) / 2
        positions = base + shifts  # image top-left on the sensor, per step, (x, y)
        pad = int(math.ceil(max(positions.max(), (sensor - image_size - positions).max(), 0.0))) + 1
        canvas = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
        return canvas, pad - positions

    def _render(self, canvas: np.ndarray, origin: np.ndarray) -> np.ndarray:
        """Bilinear sample of the canvas on the sensor grid shifted by ``origin`` (x, y)."""
        width, height = self.sensor_size
        (kx, ky), (ax, ay) = np.floor(origin).astype(int), (origin - np.floor(origin)).astype(np.float32)
        rows = canvas[:, ky : ky + height + 1, kx : kx + width + 1]
        top = (1 - ax) * rows[:, :-1, :-1] + ax * rows[:, :-1, 1:]
        bottom = (1 - ax) * rows[:, 1:, :-1] + ax * rows[:, 1:, 1:]
        return (1 - ay) * top + ay * bottom

    def _emit(self, images: np.ndarray) -> tuple[np.ndarray, ...]:
        """Columns (image index, x, y, t, polarity) of all events of all images, unsorted."""
        shifts = self.displacements()
        canvas, origins = self._canvas(images, shifts)
        width, height = self.sensor_size
        step, threshold = self.step_us, np.float32(self.threshold)
        most = np.float32(self.step_us // self.refractory_us)
        eps = np.float32(self.log_eps)
        reference = np.log(self._render(canvas, origins[0]) + eps).ravel()
        cells, times, polarities = [], [], []  # per step: flat (image, pixel) index, time, polarity
        for k in range(1, len(origins)):
            level = np.log(self._render(canvas, origins[k]) + eps).ravel()
            change = level - reference
            crossings = np.floor(np.abs(change) / threshold)
            counts = np.minimum(crossings, most)
            reference = np.where(crossings > most, level, reference + np.copysign(counts, change) * threshold)
            cell = np.flatnonzero(counts)
            if cell.size == 0:
                continue
            n = counts[cell].astype(np.int64)
            rank = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)  # 0..n-1 within each burst
            n_each = np.repeat(n, n)
            cells.append(np.repeat(cell, n))
            times.append((k - 1) * step + ((rank + 1) * step) // n_each)
            polarities.append(np.repeat(change[cell] > 0, n))
        if not cells:
            return tuple(np.zeros(0, dtype=dtype) for dtype in (np.int64, np.int64, np.int64, np.int64, bool))
        cell = np.concatenate(cells)
        image, pixel = np.divmod(cell, width * height)
        y, x = np.divmod(pixel, width)
        return image, x, y, np.concatenate(times), np.concatenate(polarities)

    def _add_noise(self, events: np.ndarray, seed: int, index: int) -> np.ndarray:
        """Background activity: Poisson events uniform over pixels, time and polarity."""
        rng = np.random.default_rng([seed, index])
        width, height = self.sensor_size
        count = rng.poisson(self.noise_hz * width * height * self.duration_us * 1e-6)
        noise = make_events(
            rng.integers(0, width, count),
            rng.integers(0, height, count),
            rng.integers(0, self.duration_us + 1, count),
            rng.integers(0, 2, count).astype(bool),
        )
        merged = np.concatenate([events, noise])
        return merged[np.argsort(merged["t"], kind="stable")]

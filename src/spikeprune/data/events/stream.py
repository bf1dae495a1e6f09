"""Event streams: numpy structured arrays with fields ``x, y, t, p``, tonic's convention.

``x`` is the column and ``y`` the row on the sensor, ``t`` the time in microseconds and ``p`` the
polarity (True/1 = ON, a brightness increase; False/0 = OFF). The dtype is tonic's
``tonic.io.events_struct``, so streams pass straight into tonic's transforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeprune.errors import SpikepruneError

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])


class EventFileError(SpikepruneError):
    """An event file that cannot be read: truncated, corrupt or in another format."""


def make_events(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A stream of ``EVENT_DTYPE`` from four equally long arrays."""
    events = np.empty(len(t), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def as_events(array: np.ndarray, source: str | Path) -> np.ndarray:
    """Any structured array with fields x, y, t, p (any order, integer or bool types) as ``EVENT_DTYPE``.

    Polarity is ON where ``p > 0``, so both the 0/1 and the -1/+1 conventions map correctly.
    """
    names = array.dtype.names or ()
    missing = [field for field in "xytp" if field not in names]
    if missing:
        raise EventFileError(f"{source}: events have fields {names}, missing {', '.join(missing)}")
    return make_events(array["x"], array["y"], array["t"], array["p"] > 0)


def check_coordinates(x: np.ndarray, y: np.ndarray, sensor_size: tuple[int, int], source: str | Path) -> None:
    """Raise ``EventFileError`` naming ``source`` if any event lies outside the (width, height) sensor."""
    width, height = sensor_size
    bad = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    if bad.any():
        first = int(np.argmax(bad))
        raise EventFileError(
            f"{source}: event {first} lies at (x={x[first]:g}, y={y[first]:g}), outside the {width}x{height} "
            "sensor; the file is corrupt or from another dataset, replace it with the original"
        )


def check_events(events: np.ndarray, sensor_size: tuple[int, int], source: str | Path) -> np.ndarray:
    """Validate a stream read from ``source`` for a ``(width, height)`` sensor; return it time-ordered.

    Coordinates outside the sensor, negative times or polarities other than 0/1 mean the file is
    corrupt or belongs to another dataset; the error names the file. Recordings are time-ordered;
    a stream that is not (a concatenation, a re-saved copy) is stably sorted, since time binning
    needs it.
    """
    if events.size == 0:
        raise EventFileError(f"{source} holds no events (empty or truncated file); replace it with the original")
    check_coordinates(events["x"], events["y"], sensor_size, source)
    if (events["t"] < 0).any():
        raise EventFileError(f"{source}: negative timestamps; the file is corrupt, replace it with the original")
    t = events["t"]
    if (t[1:] < t[:-1]).any():
        events = events[np.argsort(t, kind="stable")]
    return events


def tonic(module: str = "tonic"):
    """Import ``module`` of tonic, the event-camera library (an extra: ``pip install 'spikeprune[events]'``)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpikepruneError(
            "event-camera data (nmnist5k, nmnist, dvsgesture, cifar10dvs) needs tonic: pip install 'spikeprune[events]'"
        ) from None

"""Readers for the event-file formats of the real datasets, on top of ``tonic.io``.

Each reader returns a validated, time-ordered ``EVENT_DTYPE`` stream, or raises
``EventFileError`` naming the file: tonic's readers silently drop the bytes of a truncated last
event and fail with assorted exceptions on other damage, so sizes and contents are checked here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from spikeprune.data.events.stream import (
    EVENT_DTYPE,
    EventFileError,
    as_events,
    check_coordinates,
    check_events,
    make_events,
    tonic,
)
from spikeprune.errors import SpikepruneError

NMNIST_EVENT_BYTES = 5
AEDAT2_EVENT_BYTES = 8  # big-endian uint32 address, uint32 timestamp
DVS128_SIZE = (128, 128)
AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"


def read_nmnist_bin(path: Path, sensor_size: tuple[int, int] = (34, 34)) -> np.ndarray:
    """An N-MNIST ``.bin`` file: 5 bytes per event (x, y, polarity bit + 23-bit time), read by tonic."""
    read_mnist_file = tonic("tonic.io").read_mnist_file

    size = _size(path)
    if size % NMNIST_EVENT_BYTES:
        raise EventFileError(
            f"{path} is truncated or not an N-MNIST file: {size} bytes is not a whole number of "
            f"{NMNIST_EVENT_BYTES}-byte events; replace it with the original"
        )
    events = _call_reader(read_mnist_file, path, "N-MNIST .bin", str(path), dtype=EVENT_DTYPE)
    return check_events(events, sensor_size, path)


def read_aedat2_dvs128(path: Path) -> np.ndarray:
    """A DVS128 AEDAT 2.0 file (the original CIFAR10-DVS release), header and events read by tonic.

    Addresses decode as in SpikingJelly's CIFAR10-DVS reader, so frames match what most CIFAR10-DVS
    code sees: ``x = 127 - address[8:15]``, ``y = 127 - address[1:8]``, ON where bit 0 is 0.
    """
    io = tonic("tonic.io")
    get_aer_events_from_file, read_aedat_header_from_file = io.get_aer_events_from_file, io.read_aedat_header_from_file

    size = _size(path)
    version, start = _call_reader(read_aedat_header_from_file, path, "AEDAT", str(path))[:2]
    if not 2 <= version < 3:
        raise EventFileError(
            f"{path} is AEDAT {version}, expected AEDAT 2.0 (the original CIFAR10-DVS release); "
            "replace it with the original file"
        )
    if (size - start) % AEDAT2_EVENT_BYTES:
        raise EventFileError(
            f"{path} is truncated: {size - start} bytes of events is not a whole number of "
            f"{AEDAT2_EVENT_BYTES}-byte events; replace it with the original"
        )
    raw = _call_reader(get_aer_events_from_file, path, "AEDAT 2.0", str(path), version, start)
    address = raw["address"].astype(np.int64)
    events = make_events(
        127 - ((address >> 8) & 0x7F),
        127 - ((address >> 1) & 0x7F),
        raw["timeStamp"].astype(np.int64),
        (address & 1) == 0,
    )
    return check_events(events, DVS128_SIZE, path)


def read_aedat4(path: Path) -> np.ndarray:
    """An AEDAT4 file (tonic's re-release of CIFAR10-DVS), read by ``tonic.io.read_aedat4``.

    The magic line and the header are checked here first: the ``aedat`` decoder (2.3.0) panics on some
    damaged headers, and aborts the whole process on some whose XML description is not UTF-8.
    """
    try:
        import aedat  # noqa: F401  (tonic's AEDAT4 reader needs it)
    except ImportError:
        raise SpikepruneError(
            f"{path} is an AEDAT4 file; reading it needs the aedat package: pip install aedat"
        ) from None
    tonic_read_aedat4 = tonic("tonic.io").read_aedat4

    _check_aedat4_header(path)
    try:
        raw = tonic_read_aedat4(str(path))
    except BaseException as error:  # the decoder's panics are pyo3's PanicException, a BaseException
        if not isinstance(error, Exception) and type(error).__name__ != "PanicException":
            raise
        raise EventFileError(_aedat4_problem(path, error)) from None
    raw = raw.copy()
    raw.dtype.names = ("t", "x", "y", "p")  # the decoder's field order, named as tonic's CIFAR10DVS does
    return check_events(as_events(raw, path), DVS128_SIZE, path)


def _check_aedat4_header(path: Path) -> None:
    """The magic line, a whole header, and an IOHeader whose XML description (field 2) is UTF-8."""
    try:
        with path.open("rb") as file:
            magic = file.read(len(AEDAT4_MAGIC))
            length = int.from_bytes(file.read(4).ljust(4, b"\xff"), "little")
            header = file.read(length)
    except OSError as error:
        raise EventFileError(f"cannot read event file {path}: {error}") from None
    if magic != AEDAT4_MAGIC:
        raise EventFileError(
            f"{path} is not an AEDAT4 file: it does not start with {AEDAT4_MAGIC!r} (empty, truncated or "
            "in another format); replace it with the original"
        )
    if len(header) < length:
        raise EventFileError(f"{path} is truncated: it ends inside the AEDAT4 header; replace it with the original")

    def field(fmt: str, offset: int) -> int:
        if not 0 <= offset <= len(header) - struct.calcsize(fmt):
            raise ValueError(f"offset {offset} outside the {len(header)}-byte header")
        return struct.unpack_from(fmt, header, offset)[0]

    try:  # flatbuffer: root table offset; the table's vtable (its size, the table's size, a u16 per field)
        table = field("<I", 0)
        vtable = table - field("<i", table)
        slot = field("<H", vtable + 8) if field("<H", vtable) >= 10 else 0
        if slot:
            start = table + slot + field("<I", table + slot)
            size = field("<I", start)
            if start + 4 + size > len(header):
                raise ValueError(f"the description runs past the {len(header)}-byte header")
            header[start + 4 : start + 4 + size].decode("utf-8")
    except ValueError as error:  # a UnicodeDecodeError too
        raise EventFileError(f"{path} has a damaged AEDAT4 header ({error}); replace it with the original") from None


def _aedat4_problem(path: Path, error: BaseException) -> str:
    detail = f"{type(error).__name__}: {error}"
    if "failed to fill whole buffer" in detail:  # the decoder met the end of the file inside a packet
        return f"{path} is truncated: it ends inside an AEDAT4 packet ({detail}); replace it with the original"
    if "at least one array to concatenate" in detail:  # tonic found no packet of the event stream
        return f"{path} holds no events (no event packets after the AEDAT4 header); replace it with the original"
    return (
        f"{path} could not be read as AEDAT4 ({detail}); the file is damaged or in another format, "
        "replace it with the original"
    )


def read_gesture_npy(path: Path) -> np.ndarray:
    """A sample of tonic's DVS128 Gesture release: ``.npy`` rows (x, y, p, t in ms), read without pickle."""
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise EventFileError(
            f"{path} is truncated or not a .npy array ({error}); replace it with the original"
        ) from None
    if rows.ndim != 2 or rows.shape[1] != 4 or not np.issubdtype(rows.dtype, np.number):
        raise EventFileError(
            f"{path} holds a {rows.dtype} array of shape {rows.shape}; DVS Gesture samples are numeric rows "
            "(x, y, p, t in ms); replace it with the original"
        )
    if not np.isfinite(rows).all():
        raise EventFileError(f"{path} holds NaN or infinite values; replace it with the original")
    check_coordinates(rows[:, 0], rows[:, 1], DVS128_SIZE, path)  # before the cast to int16 could wrap them
    events = make_events(rows[:, 0], rows[:, 1], np.round(rows[:, 3] * 1000), rows[:, 2] > 0)
    return check_events(events, DVS128_SIZE, path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        raise EventFileError(f"cannot read event file {path}: {error}") from None


def _call_reader(reader, path: Path, kind: str, *args, **kwargs):
    """Run a tonic reader, turning whatever it raises on a damaged file into one clear error."""
    try:
        return reader(*args, **kwargs)
    except Exception as error:
        raise EventFileError(
            f"{path} could not be read as {kind} ({type(error).__name__}: {error}); "
            "the file is damaged or in another format, replace it with the original"
        ) from None

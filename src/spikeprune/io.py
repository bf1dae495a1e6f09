"""Atomic file writes, and one clear line when the file system refuses one.

Readers see the old file or the new one, never half of one: every write goes to a temporary file in
the same folder (``.<name>.<random>.tmp``), is flushed to disk, and replaces the target with
``os.replace``. A write that fails (a full disk, a read-only file system) removes its temporary file
and leaves the target as it was; :func:`writing` turns the ``OSError`` into a
:class:`~spikeprune.errors.SpikepruneError` that names the file, the cause and the fix.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spikeprune.errors import SpikepruneError

TEMP_SUFFIX = ".tmp"

_FIXES = {
    errno.ENOSPC: "the disk is full; free some space and run the command again (nothing already written was lost)",
    errno.EDQUOT: "the disk quota is used up; free some space and run the command again",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.EACCES: "permission denied; choose a location you can write",
    errno.EPERM: "permission denied; choose a location you can write",
    errno.EISDIR: "it is a folder; give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "a file of that name is in the way; choose another path",
}


def describe_os_error(error: OSError) -> str:
    """The cause and the fix of a failed write, in words."""
    return _FIXES.get(error.errno or -1, error.strerror or str(error))


@contextmanager
def writing(path: Path | str, what: str = "") -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into one clear ``SpikepruneError``."""
    try:
        yield
    except OSError as error:
        label = f"{what} {path}" if what else str(path)
        raise SpikepruneError(f"cannot write {label}: {describe_os_error(error)}") from None


def _write(handle, data: bytes, target: Path) -> None:
    """The one place file contents are written, for ``target`` (tests replace it to inject faults)."""
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            _write(handle, data, path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files a killed writer left in ``folder`` (call only while no writer runs)."""
    removed = []
    for path in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed

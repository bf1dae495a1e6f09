"""One writer per run folder, and a clean folder after a crash.

A run folder is locked with an exclusive ``flock`` on its ``.lock`` file while a process trains,
prunes into or profiles it. The operating system releases the lock when the process ends in any way
(an exception, Ctrl-C, ``kill -9``), so a crashed run never leaves a stale lock behind. The lock file
holds the owner's process id and command, so a second writer is refused with one line that names
the process holding the folder. The lock is re-entrant within a process (``prune`` writes its
initial weights, then trains into the same folder).

While holding the lock, the owner removes what a killed writer left: temporary files of the atomic
writer, and checkpoint tensor files that ``checkpoint.json`` no longer names.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spikeprune.errors import SpikepruneError
from spikeprune.io import remove_stale_temporaries, writing

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; runs are not protected there
    fcntl = None

LOCK_NAME = ".lock"
_HELD: dict[Path, tuple[int, int]] = {}  # folder -> (file descriptor, depth)


def lock_run(folder: Path | str, command: str | None = None) -> None:
    """Take the folder's exclusive lock (creating the folder), or raise naming the process that holds it."""
    folder = Path(folder).resolve()
    if folder in _HELD:
        fd, depth = _HELD[folder]
        _HELD[folder] = (fd, depth + 1)
        return
    if folder.exists() and not folder.is_dir():
        raise SpikepruneError(f"{folder} is a file, not a run folder; choose another --out")
    with writing(folder, "run folder"):
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SpikepruneError(
                f"run folder {folder} is in use by process {holder}; wait for it to finish, or choose another --out"
            ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} ({command or ' '.join(sys.argv)})\n".encode())
    _HELD[folder] = (fd, 1)


def unlock_run(folder: Path | str) -> None:
    folder = Path(folder).resolve()
    if folder not in _HELD:
        return
    fd, depth = _HELD[folder]
    if depth > 1:
        _HELD[folder] = (fd, depth - 1)
        return
    del _HELD[folder]
    os.close(fd)  # closing the descriptor releases the flock


def clean_run(folder: Path, keep: set[str]) -> None:
    """Remove temporary files and the checkpoint tensor files not in ``keep`` (the lock must be held)."""
    remove_stale_temporaries(folder)
    for path in Path(folder).glob("checkpoint-*.safetensors"):
        if path.name not in keep:
            path.unlink(missing_ok=True)

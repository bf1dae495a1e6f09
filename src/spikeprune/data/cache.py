"""On-disk cache of generated or converted arrays, keyed by everything that determines them.

Turning thousands of event files into frames, or generating 40,000 MNIST-1D signals, takes a while;
the result depends only on the dataset, the exact files (path, size, modification time) and the
transform's or generator's parameters, so a hash of those names the cache file. Changing any of
them (another T, size, binning, a replaced file) gives another key and the arrays are rebuilt; the
old file stays until the user deletes it.

Files are safetensors (plain arrays, no pickle) written with the atomic writer (a temporary file in
the same folder moved into place with ``os.replace``): readers see a whole file or none, and two
processes writing the same key at once both succeed, the last rename winning with identical
content. A cache file that cannot be read (truncated by a crash of another tool, disk full) is
treated as missing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from spikeprune.io import atomic_write_bytes

CACHE_FOLDER = ".spikeprune-cache"
FORMAT_VERSION = 1  # bump when the conversion code changes what it produces for the same key


def file_identity(paths: Iterable[Path], root: Path) -> list[tuple[str, int, int]]:
    """(path relative to root, size, modification time in ns) of each file, in the given order."""
    identity = []
    for path in paths:
        stat = path.stat()
        identity.append((path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns))
    return identity


def cache_key(parts: dict[str, Any]) -> str:
    """SHA-256 (hex, 24 characters) of the JSON of ``parts`` (sorted keys) and the format version."""
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_path(directory: Path, name: str, parts: dict[str, Any]) -> Path:
    return Path(directory) / f"{name}-{cache_key(parts)}.safetensors"


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path``, or None when it is missing or unreadable."""
    from safetensors.numpy import load_file

    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception:  # any damage (truncation, garbage) means: rebuild
        return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray], parts: dict[str, Any]) -> None:
    """Write ``arrays`` atomically; ``parts`` go into the file's metadata for people who inspect it."""
    from safetensors.numpy import save

    metadata = {"spikeprune_cache": json.dumps(parts, sort_keys=True, default=list)}
    atomic_write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata))


def cached_arrays(
    directory: Path | None, name: str, parts: dict[str, Any], build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays for key ``parts``: from ``directory`` when cached there, else ``build()`` and store them.

    ``directory=None`` disables the cache. A folder that cannot be written (a read-only dataset
    copy) costs a warning, not the run: pass ``cache_dir`` to put the cache elsewhere.
    """
    if directory is None:
        return build()
    path = cache_path(directory, name, parts)
    arrays = load_arrays(path)
    if arrays is not None:
        return arrays
    arrays = build()
    try:
        save_arrays(path, arrays, parts)
    except OSError as error:
        warnings.warn(
            f"could not write the data cache {path} ({error}); the arrays will be rebuilt next time. "
            "Pass the dataset option cache_dir=<writable folder> to keep them",
            stacklevel=2,
        )
    return arrays

"""Unpickling that can only build numpy arrays, for data files users download.

A pickle can call any importable function while it loads, so a tampered "dataset"
file could run code. The CIFAR python files only need numpy's array-rebuilding
functions; every other global is refused before anything is called.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from spikeprune.errors import SpikepruneError


def _numpy_internal(name: str, modules: tuple[str, ...]) -> Any:
    """`name` from the first of `modules` that imports (numpy 2 renamed numpy.core to numpy._core)."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray = ("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = ("numpy._core.numeric", "numpy.core.numeric")
    reconstruct = _numpy_internal("_reconstruct", multiarray)
    frombuffer = _numpy_internal("_frombuffer", numeric)
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }
    for module in multiarray:
        if reconstruct is not None:
            allowed[(module, "_reconstruct")] = reconstruct
    for module in numeric:  # arrays pickled with protocol 5
        if frombuffer is not None:
            allowed[(module, "_frombuffer")] = frombuffer
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler whose `find_class` admits only what numpy arrays are rebuilt from."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise SpikepruneError(
                f"refusing to unpickle {module}.{name} from {self._path}: this data file should only hold "
                "numpy arrays; delete it and download the dataset again from its official source"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise SpikepruneError(
            f"refusing to unpickle a persistent reference from {self._path}: this data file should only "
            "hold numpy arrays; delete it and download the dataset again from its official source"
        )


# What a corrupt or truncated pickle can raise while loading.
_CORRUPT_FILE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    UnicodeError,
    MemoryError,  # a damaged header asking numpy for an absurd array
)


def load_numpy_pickle(path: Path) -> Any:
    """Unpickle `path` allowing only numpy arrays and plain Python containers/values."""
    try:
        with open(path, "rb") as handle:
            return NumpyOnlyUnpickler(handle, path).load()
    except SpikepruneError:
        raise
    except _CORRUPT_FILE_ERRORS as exc:
        raise SpikepruneError(
            f"could not read {path} ({type(exc).__name__}: {exc}); delete it and download the dataset again"
        ) from None

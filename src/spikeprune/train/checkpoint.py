"""Checkpoints: tensors in safetensors, everything else in JSON; atomic, verified, no pickle.

A run folder holds ``checkpoint.json`` (the metadata, naming the tensor file and its SHA-256) and
one ``checkpoint-e<epoch>.safetensors``. A new checkpoint writes its tensor file under a new name
first, then replaces the JSON atomically, then removes the old tensor file: a crash at any point
leaves a consistent pair behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from spikeprune.errors import SpikepruneError
from spikeprune.io import atomic_write_json

META_NAME = "checkpoint.json"
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_state(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested state into ``tensors`` (keyed by path); return the JSON rest."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {"__dict__": [[k, split_state(v, f"{prefix}/{k}", tensors)] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        kind = "__list__" if isinstance(state, list) else "__tuple__"
        return {kind: [split_state(v, f"{prefix}/{i}", tensors) for i, v in enumerate(state)]}
    return state


def join_state(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state` (dict keys keep their types: ints stay ints)."""
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__dict__" in value:
            return {k: join_state(v, tensors) for k, v in value["__dict__"]}
        if "__list__" in value:
            return [join_state(v, tensors) for v in value["__list__"]]
        if "__tuple__" in value:
            return tuple(join_state(v, tensors) for v in value["__tuple__"])
    return value


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors ``save_file`` through a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(run_dir: Path, epoch: int, states: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Save named states (model, optimizer, ...) and JSON metadata for ``epoch``."""
    run_dir = Path(run_dir)
    tensors: dict[str, torch.Tensor] = {}
    layout = {name: split_state(state, name, tensors) for name, state in states.items()}
    tensor_file = run_dir / f"checkpoint-e{epoch}.safetensors"
    _atomic_save_tensors(tensors, tensor_file)
    previous = _read_meta(run_dir).get("tensor_file") if (run_dir / META_NAME).exists() else None
    atomic_write_json(
        run_dir / META_NAME,
        {
            "format_version": FORMAT_VERSION,
            "epoch": epoch,
            "tensor_file": tensor_file.name,
            "sha256": _sha256(tensor_file),
            "layout": layout,
            "meta": meta,
        },
    )
    if previous and previous != tensor_file.name:
        (run_dir / previous).unlink(missing_ok=True)
    return tensor_file


def _read_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / META_NAME
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpikepruneError(
            f"no checkpoint in {run_dir} (expected {META_NAME}); pass the folder a 'spikeprune train --out' run wrote"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SpikepruneError(f"checkpoint metadata {path} is corrupt ({error}); restore it or retrain") from None
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        raise SpikepruneError(f"checkpoint metadata {path} has an unknown format; it was not written by this version")
    return record


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / META_NAME).is_file()


def load_checkpoint(run_dir: Path) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Return ``(epoch, states, meta)``; verifies the tensor file's hash before reading it."""
    run_dir = Path(run_dir)
    record = _read_meta(run_dir)
    tensor_file = run_dir / record["tensor_file"]
    if not tensor_file.is_file():
        raise SpikepruneError(f"checkpoint tensors {tensor_file} are missing; restore the file or retrain")
    if _sha256(tensor_file) != record["sha256"]:
        raise SpikepruneError(
            f"checkpoint tensors {tensor_file} are corrupt (hash mismatch); restore the file or retrain"
        )
    try:
        tensors = load_file(tensor_file)
    except (SafetensorError, OSError) as error:
        raise SpikepruneError(
            f"checkpoint tensors {tensor_file} cannot be read ({error}); restore the file or retrain"
        ) from None
    states = {name: join_state(value, tensors) for name, value in record["layout"].items()}
    return int(record["epoch"]), states, record["meta"]


def save_tensor_groups(path: Path, groups: dict[str, dict[str, torch.Tensor]]) -> None:
    """Save named groups of tensors (e.g. ``model`` and ``mask``) to one safetensors file, atomically."""
    flat = {
        f"{group}/{key}": t.detach().cpu().contiguous().clone() for group, ts in groups.items() for key, t in ts.items()
    }
    _atomic_save_tensors(flat, Path(path))


def load_tensor_groups(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise SpikepruneError(f"initial weights {path} are missing; restore the file or redo the pruning step")
    try:
        flat = load_file(path)
    except (SafetensorError, OSError) as error:
        raise SpikepruneError(f"initial weights {path} cannot be read ({error}); redo the pruning step") from None
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = tensor
    return groups

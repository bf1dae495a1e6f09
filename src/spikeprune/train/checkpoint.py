"""Checkpoints: tensors in safetensors, everything else in JSON; atomic, verified, no pickle.

A run folder holds ``checkpoint.json`` (the metadata, naming the tensor file and its SHA-256, and
carrying a SHA-256 of itself) and one ``checkpoint-e<epoch>[-s<step>].safetensors``. A new checkpoint
writes its tensor file under a new name first, then replaces the JSON atomically, then removes the
old tensor file: a crash (or a full disk) at any point leaves a consistent pair behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from spikeprune.errors import SpikepruneError
from spikeprune.io import atomic_write_bytes, atomic_write_json, writing

META_NAME = "checkpoint.json"
FORMAT_VERSION = 2  # 2: the metadata carries its own SHA-256


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
    """safetensors bytes through the atomic writer (a full disk is an ``OSError`` there, never half a file)."""
    atomic_write_bytes(path, save(tensors))


def _meta_digest(record: dict[str, Any]) -> str:
    """SHA-256 of the metadata's canonical JSON, without the digest itself."""
    body = {k: v for k, v in record.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_checkpoint(
    run_dir: Path, epoch: int, states: dict[str, Any], meta: dict[str, Any], step: int | None = None
) -> Path:
    """Save named states (model, optimizer, ...) and JSON metadata after ``epoch`` epochs.

    ``step`` marks a checkpoint inside an epoch (its tensor file is ``checkpoint-e<epoch>-s<step>``).
    The metadata carries a SHA-256 of itself, so an edited or damaged ``checkpoint.json`` is refused.
    """
    run_dir = Path(run_dir)
    tensors: dict[str, torch.Tensor] = {}
    layout = {name: split_state(state, name, tensors) for name, state in states.items()}
    tensor_file = run_dir / (f"checkpoint-e{epoch}" + (f"-s{step}" if step is not None else "") + ".safetensors")
    with writing(tensor_file, "checkpoint"):
        _atomic_save_tensors(tensors, tensor_file)
    previous = _read_meta(run_dir).get("tensor_file") if (run_dir / META_NAME).exists() else None
    record = {
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "tensor_file": tensor_file.name,
        "sha256": _sha256(tensor_file),
        "layout": layout,
        "meta": meta,
    }
    record["meta_sha256"] = _meta_digest(record)
    try:
        with writing(run_dir / META_NAME, "checkpoint metadata"):
            atomic_write_json(run_dir / META_NAME, record)
    except SpikepruneError:
        if tensor_file.name != previous:
            tensor_file.unlink(missing_ok=True)  # the previous checkpoint stays whole and in use
        raise
    if previous and previous != tensor_file.name:
        (run_dir / previous).unlink(missing_ok=True)
    return tensor_file


REQUIRED = {"format_version": int, "epoch": int, "tensor_file": str, "sha256": str, "layout": dict, "meta": dict}


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
    if not isinstance(record, dict) or record.get("format_version") not in (1, FORMAT_VERSION):
        raise SpikepruneError(f"checkpoint metadata {path} has an unknown format; it was not written by this version")
    broken = [key for key, kind in REQUIRED.items() if not isinstance(record.get(key), kind)]
    if broken:
        raise SpikepruneError(
            f"checkpoint metadata {path} lacks or mangles {', '.join(broken)}; restore the file or retrain"
        )
    if record["format_version"] >= 2 and record.get("meta_sha256") != _meta_digest(record):
        raise SpikepruneError(
            f"checkpoint metadata {path} was modified or damaged (its hash does not match); restore it or retrain"
        )
    return record


def checkpoint_files(run_dir: Path) -> set[str]:
    """The tensor file the run's checkpoint names (empty when there is none)."""
    return {_read_meta(Path(run_dir))["tensor_file"]} if has_checkpoint(run_dir) else set()


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / META_NAME).is_file()


def load_checkpoint(run_dir: Path) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Return ``(epoch, states, meta)``; verifies the metadata's and the tensor file's hashes first."""
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
    try:
        states = {name: join_state(value, tensors) for name, value in record["layout"].items()}
    except (KeyError, TypeError, ValueError) as error:
        raise SpikepruneError(
            f"checkpoint {run_dir / META_NAME} does not match its tensors ({error}); restore it or retrain"
        ) from None
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

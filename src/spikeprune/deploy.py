"""Weights that ship: a pruned model as plain safetensors or in a compressed sparse layout, and back.

``save(model, path, spec, encoding=..., nm=...)`` folds the masks (pruned weights become exact
zeros) and writes two files:

* ``path`` (``.safetensors``): the tensors;
* ``path`` with ``.json``: a sidecar that says how to rebuild the model (architecture, input shape,
  classes, options: T and the neuron constants among them) and, per synaptic layer, its shape,
  density, N:M pattern and how it is stored, plus the SHA-256 of the tensor file.

Encodings:

* ``safetensors``: every tensor dense, as the model holds it; any tool that reads safetensors
  reads the weights, zeros included;
* ``compressed``: each synaptic weight in the smallest of three layouts: dense; N:M (the N kept
  values of every block of M and their in-block indices, ``uint8``; for layers that meet the
  declared pattern); CSR of the weight's ``(out, in·kernel)`` view (``int32`` indices). Everything
  else (biases, norms) stays dense.

``load(path)`` rebuilds a runnable model from either file, with the same outputs (tested).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as tensors_from_bytes
from safetensors.torch import save as tensors_to_bytes
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.io import atomic_write_bytes, atomic_write_json
from spikeprune.models import build_model
from spikeprune.snn.neurons import SpikingNeuron
from spikeprune.sparsity.masks import finalize, prunable_layers
from spikeprune.sparsity.nm import compress_nm, decompress_nm, input_dim, nm_blocks

FORMAT = "spikeprune-deploy"
VERSION = 1
ENCODINGS = ("safetensors", "compressed")


def sidecar_path(path: Path | str) -> Path:
    return Path(path).with_suffix(".json")


def _layer_record(weight: Tensor, nm: tuple[int, int] | None) -> dict[str, Any]:
    nonzeros = int(torch.count_nonzero(weight))
    record: dict[str, Any] = {
        "shape": list(weight.shape),
        "nonzeros": nonzeros,
        "density": nonzeros / weight.numel(),
        "pattern": "unstructured" if nonzeros < weight.numel() else "dense",
    }
    if nm is not None and input_dim(weight) % nm[1] == 0:
        if int(torch.count_nonzero(nm_blocks(weight, nm[1]), dim=-1).max()) <= nm[0]:
            record.update(pattern="N:M", nm=list(nm))
    return record


def _neurons(model: nn.Module) -> dict[str, dict[str, Any]]:
    out = {}
    for name, neuron in model.named_modules():
        if isinstance(neuron, SpikingNeuron):
            leak = neuron.leak()
            out[name] = {
                "type": type(neuron).__name__,
                "tau": None if leak is None else 1.0 / float(leak),
                "v_threshold": float(neuron.v_threshold) if not isinstance(neuron.v_threshold, Tensor) else None,
                "v_reset": neuron.v_reset,
                "decay_input": neuron.decay_input,
            }
    return out


def _encode(name: str, weight: Tensor, record: dict[str, Any]) -> tuple[dict[str, Tensor], str]:
    """The smallest of dense, N:M and CSR for one weight."""
    options: dict[str, dict[str, Tensor]] = {"dense": {f"{name}.weight": weight}}
    if record["pattern"] == "N:M":
        n, m = record["nm"]
        values, indices = compress_nm(weight, n, m)
        options["nm"] = {f"{name}.weight/nm_values": values, f"{name}.weight/nm_indices": indices}
    if record["pattern"] != "dense":
        flat = weight.reshape(weight.shape[0], -1)
        rows, columns = flat.nonzero(as_tuple=True)  # row-major order: CSR's
        counts = torch.bincount(rows, minlength=flat.shape[0])
        options["csr"] = {
            f"{name}.weight/csr_rows": torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32),
            f"{name}.weight/csr_columns": columns.to(torch.int32),
            f"{name}.weight/csr_values": flat[rows, columns],
        }
    size = {kind: sum(t.numel() * t.element_size() for t in tensors.values()) for kind, tensors in options.items()}
    best = min(size, key=size.get)
    return options[best], best


def save(
    model: nn.Module,
    path: Path | str,
    spec: dict[str, Any],
    *,
    encoding: str = "safetensors",
    nm: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Write ``model`` (not changed; a folded copy is written) to ``path`` and its sidecar; returns the sidecar.

    ``spec`` rebuilds the model: ``{"model", "input_shape", "num_classes", "options"}``, as
    :func:`spikeprune.train.trainer.model_spec` gives it. ``nm=(N, M)`` declares the N:M pattern.
    """
    if encoding not in ENCODINGS:
        raise SpikepruneError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")
    model = finalize(copy.deepcopy(model)).cpu().eval()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    layers: dict[str, dict[str, Any]] = {}
    for name, module in prunable_layers(model):
        record = _layer_record(module.weight.detach(), nm)
        record["stored_as"] = "dense"
        if encoding == "compressed":
            tensors, record["stored_as"] = _encode(name, state.pop(f"{name}.weight"), record)
            state.update(tensors)
        layers[name] = record
    data = tensors_to_bytes(state)
    path = Path(path)
    atomic_write_bytes(path, data)
    sidecar = {
        "format": FORMAT,
        "version": VERSION,
        "encoding": encoding,
        "architecture": {**spec, "input_shape": list(spec["input_shape"] or model.input_shape)},
        "timesteps": int(getattr(model, "timesteps", 1)),
        "neurons": _neurons(model),
        "layers": layers,
        "tensor_file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    atomic_write_json(sidecar_path(path), sidecar)
    return sidecar


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    meta_path = sidecar_path(path)
    try:
        sidecar = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise SpikepruneError(f"{meta_path} is missing: it says how to rebuild the model; export again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SpikepruneError(f"{meta_path} is not valid JSON ({error}); export again") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT or sidecar.get("version") != VERSION:
        raise SpikepruneError(f"{meta_path} is not a spikeprune export sidecar (format {FORMAT} v{VERSION})")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpikepruneError(f"{path} is missing; export again") from None
    if hashlib.sha256(data).hexdigest() != sidecar.get("sha256"):
        raise SpikepruneError(f"{path} does not match its sidecar (hash mismatch); export again")
    try:
        return sidecar, tensors_from_bytes(data)
    except SafetensorError as error:
        raise SpikepruneError(f"{path} cannot be read ({error}); export again") from None


def _decode(name: str, record: dict[str, Any], tensors: dict[str, Tensor]) -> Tensor:
    shape = tuple(record["shape"])
    kind = record["stored_as"]
    if kind == "dense":
        return tensors.pop(f"{name}.weight")
    if kind == "nm":
        values, indices = tensors.pop(f"{name}.weight/nm_values"), tensors.pop(f"{name}.weight/nm_indices")
        return decompress_nm(values, indices, shape, record["nm"][1])
    rows, columns = tensors.pop(f"{name}.weight/csr_rows"), tensors.pop(f"{name}.weight/csr_columns")
    values = tensors.pop(f"{name}.weight/csr_values")
    flat = torch.zeros(shape[0], int(torch.tensor(shape[1:]).prod()), dtype=values.dtype)
    row_of = torch.repeat_interleave(torch.arange(shape[0]), rows.long().diff())
    flat[row_of, columns.long()] = values
    return flat.reshape(shape)


def load(path: Path | str) -> nn.Module:
    """A runnable model (eval mode) from a file written by :func:`save`, in either encoding."""
    path = Path(path)
    sidecar, tensors = _read(path)
    arch = sidecar["architecture"]
    model = build_model(arch["model"], tuple(arch["input_shape"]), arch["num_classes"], **arch["options"])
    state = dict(tensors)
    for name, record in sidecar["layers"].items():
        state[f"{name}.weight"] = _decode(name, record, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise SpikepruneError(f"{path} does not fit its architecture ({first}); export again") from None
    return model.eval()

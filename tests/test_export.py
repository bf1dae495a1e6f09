"""NIR export round trip (nirtorch), `spikeprune export`, and NeuroBench-style static figures."""

from __future__ import annotations

import contextlib
import copy
import io
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch
from safetensors.torch import load_file as safetensors_load
from torch import nn
from torch.utils.data import TensorDataset

from spikeprune.cli import export
from spikeprune.errors import SpikepruneError
from spikeprune.interop import TimeWrapper, adapt
from spikeprune.interop.nir import batch_flatten, export_nir, read_nir, run_nir
from spikeprune.metrics import neurobench, profile
from spikeprune.models import build_model
from spikeprune.snn import PerStep
from spikeprune.sparsity import attach_masks, effective_weight, finalize, global_magnitude, masks_of, prunable_layers
from spikeprune.sparsity.nm import magnitude_nm_mask
from spikeprune.train import Trainer, load_trained, make_config

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")

T = 4


def trained_statistics(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Give BatchNorm non-trivial running statistics, so that folding it is really tested."""
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(32, *shape) * 3)
    return model.eval()


def pruned(name: str, shape: tuple[int, ...], nm: bool, **options) -> nn.Module:
    torch.manual_seed(0)
    model = trained_statistics(build_model(name, input_shape=shape, timesteps=T, **options), shape)
    layers = prunable_layers(model)
    weights = {n: effective_weight(m) for n, m in layers}
    if nm:
        masks = {n: magnitude_nm_mask(w, 2, 4) for n, w in weights.items() if w.shape[1] % 4 == 0}
    else:
        masks = global_magnitude(weights, 0.7)
    attach_masks(model, masks)
    return model


@pytest.mark.parametrize(
    "name,shape,nm,options",
    [
        ("mlp", (1, 8, 8), False, {"hidden": (32, 32)}),
        ("scnn1d", (1, 40), True, {"channels": 8, "hidden": 16}),
        ("mlp", (1, 8, 8), True, {"hidden": (32,), "neuron": "if"}),
    ],
)
def test_nir_round_trip_gives_the_same_outputs(name, shape, nm, options, tmp_path):
    model = pruned(name, shape, nm, **options)
    masks = masks_of(model)
    path = tmp_path / "model.nir"
    graph = export_nir(model, path, nm=(2, 4) if nm else None)
    assert masks_of(model).keys() == masks.keys()  # the model itself keeps its masks

    # masks folded: zeros in the weight arrays exactly where the mask is 0; pattern in the metadata
    read = nir.read(path)
    nodes = {key.replace("_", "."): node for key, node in read.nodes.items()}
    for layer, mask in masks.items():
        node = nodes[layer]
        weight = np.asarray(node.weight)
        assert np.array_equal(weight == 0, mask.numpy() == 0)
        assert node.metadata["nonzeros"] == int(mask.sum())
        assert node.metadata["density"] == pytest.approx(float(mask.mean()))
        assert node.metadata["sparsity_pattern"] == ("N:M" if nm else "unstructured")
        if nm:
            assert (node.metadata["nm_n"], node.metadata["nm_m"]) == (2, 4)
    assert float(read.metadata["dt"]) == pytest.approx(1e-4) and int(read.metadata["timesteps"]) == T
    assert {type(node).__name__ for node in graph.nodes.values()} >= {"Input", "Output", "Affine"}

    # nirtorch reads it back into a torch module that, stepped T times, gives the same logits
    module = read_nir(path)
    torch.manual_seed(2)
    x = torch.rand(64, *shape) * 3
    with torch.no_grad():
        expected = model(x)
    got = run_nir(module, x, T)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert expected.std() > 0  # the network is not silent


# every built-in model, at a small size (the readers check the structure, not the scale)
EVERY_MODEL = [
    ("mlp", (1, 8, 8), {"hidden": (32, 32)}),
    ("scnn", (1, 12, 12), {"channels": (4, 8), "hidden": 16}),
    ("scnn1d", (1, 40), {"channels": 8, "hidden": 16}),
    ("convnet6", (1, 12, 12), {"width": 1 / 32}),
    ("vggsnn", (2, 16, 16), {"width": 1 / 32}),
    ("vgg11", (3, 32, 32), {"width": 1 / 16}),
    ("vgg16", (3, 32, 32), {"width": 1 / 16}),
    ("resnet18", (3, 16, 16), {"width": 1 / 16}),
    ("resnet19", (3, 16, 16), {"width": 1 / 16}),
    ("resnet34", (3, 32, 32), {"width": 1 / 16}),
]


def test_every_builtin_model_is_listed():
    from spikeprune.models import list_models

    assert {name for name, _, _ in EVERY_MODEL} == {info.name for info in list_models()}


def _norse_through_nirtorch(graph):
    """The workaround docs/export.md gives for Norse: its own node converter, in nirtorch's interpreter."""
    import nirtorch
    from norse.torch.utils.import_nir import _import_norse_module

    convert = partial(_import_norse_module, dt=1e-4)
    kinds = (nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.LIF, nir.IF, nir.SumPool2d)
    return nirtorch.nir_to_torch(graph, {kind: convert for kind in kinds})


def _step(module, x: torch.Tensor, steps: int, stateful: bool) -> torch.Tensor:
    outputs, state = [], None
    with torch.no_grad():
        for _ in range(steps):
            if stateful:
                out, state = module(x, state)
            else:
                out = module(x)
            outputs.append(out[0] if isinstance(out, tuple) else out)
    return torch.stack(outputs).mean(0)


@pytest.mark.parametrize("name,shape,options", EVERY_MODEL, ids=[case[0] for case in EVERY_MODEL])
def test_every_builtin_model_exports_and_other_frameworks_read_it_on_a_batch(name, shape, options, tmp_path):
    """Our reader, snnTorch's import_from_nir and Norse give the model's own outputs on a batch."""
    snn_import = pytest.importorskip("snntorch.import_nir")
    snn_utils = pytest.importorskip("snntorch.utils")
    norse = pytest.importorskip("norse.torch")
    model = pruned(name, shape, nm=False, **options)
    with torch.no_grad():  # a model that fires in every layer, so the readers are really compared
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                module.weight_orig.mul_(2.0)
    path = tmp_path / "model.nir"
    export_nir(model, path)
    graph = nir.read(path)
    torch.manual_seed(3)
    x = torch.rand(8, *shape) * 3
    with torch.no_grad():
        expected = model(x)
    assert expected.std() > 0
    torch.testing.assert_close(run_nir(read_nir(graph), x, T), expected, rtol=1e-5, atol=1e-5)
    with contextlib.redirect_stdout(io.StringIO()):  # snnTorch prints how it rescales each LIF
        snntorch_module = batch_flatten(snn_import.import_from_nir(graph))
    snn_utils.reset(snntorch_module)
    torch.testing.assert_close(_step(snntorch_module, x, T, stateful=False), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        _step(batch_flatten(_norse_through_nirtorch(graph)), x, T, stateful=True), expected, rtol=1e-5, atol=1e-5
    )
    if name != "scnn1d" and not name.startswith("resnet"):  # Norse's own from_nir: chains of Conv2d only
        norse_module = batch_flatten(norse.from_nir(graph, dt=1e-4))
        torch.testing.assert_close(_step(norse_module, x, T, stateful=True), expected, rtol=1e-5, atol=1e-5)


def test_event_frame_models_export_one_frame_per_step():
    model = pruned("vggsnn", (T, 2, 16, 16), nm=False, width=1 / 32, encoder="frames")
    graph = export_nir(model)
    assert list(graph.nodes["input"].input_type["input"]) == [2, 16, 16]
    frames = (torch.rand(4, T, 2, 16, 16) < 0.3).float()  # dataset batches: [B, T, 2, H, W]
    with torch.no_grad():
        expected = model(frames)
    torch.testing.assert_close(run_nir(read_nir(graph), frames.transpose(0, 1)), expected, rtol=1e-5, atol=1e-5)


def test_nir_export_names_what_it_cannot_represent(tmp_path):
    from spikeprune.models import SNNOptions, SpikingNetwork

    class PoolsValues(SpikingNetwork):  # max pooling right after a conv: over real values, not spikes
        def __init__(self):
            options = SNNOptions(timesteps=2)
            super().__init__(options, (1, 8, 8), 10)
            self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2))
            self.body = nn.Sequential(options.neuron_module(4), PerStep(nn.Flatten(), nn.Linear(64, 10)))

    with pytest.raises(SpikepruneError, match="stem_1.*its input is not spikes"):
        export_nir(PoolsValues())
    with pytest.raises(SpikepruneError, match="soft"):
        export_nir(build_model("mlp", input_shape=(1, 8, 8), v_reset=None))
    with pytest.raises(SpikepruneError, match="spikeprune models"):
        export_nir(nn.Linear(3, 3))
    with pytest.raises(SpikepruneError, match="does not exist"):
        export_nir(build_model("mlp", input_shape=(1, 8, 8)), tmp_path / "missing" / "m.nir")


def test_cli_export_of_a_spikenm_run(tmp_path):
    run = tmp_path / "run"
    settings = dict(dataset="digits", model="mlp", model_options={"hidden": [32]}, timesteps=2, epochs=1)
    Trainer(make_config({**settings, "sparsity": "nm", "nm": "2:4", "progress": False}), run).fit()
    out = tmp_path / "model.nir"
    command = [sys.executable, "-m", "spikeprune.cli", "export", "--checkpoint", str(run), "--format", "nir"]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2:4 N:M" in done.stdout and out.is_file()
    graph = nir.read(out)
    patterns = [node.metadata["sparsity_pattern"] for node in graph.nodes.values() if "weights" in node.metadata]
    assert patterns == ["N:M", "N:M"]
    model = finalize(load_trained(run, device="cpu").model).eval()
    x = torch.rand(16, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(run_nir(read_nir(out), x, 2), model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(SpikepruneError, match="unknown export format 'onnx'"):
        export(checkpoint=run, format="onnx", out=None)


def snntorch_model() -> nn.Module:
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), snn.Leaky(beta=0.9, init_hidden=True), nn.Linear(32, 10))
    return TimeWrapper(adapt(net), T, input_shape=(1, 8, 8))


@pytest.mark.parametrize("which", ["spikeprune", "snntorch"])
def test_neurobench_figures_equal_the_profile_after_finalize(which):
    model = snntorch_model() if which == "snntorch" else build_model("mlp", input_shape=(1, 8, 8), hidden=(32, 32))
    attach_masks(model, global_magnitude({n: effective_weight(m) for n, m in prunable_layers(model)}, 0.6))
    finalize(model)
    data = TensorDataset(torch.rand(8, 1, 8, 8), torch.zeros(8, dtype=torch.long))
    totals = profile(model, data).totals
    sparsity = neurobench.connection_sparsity(model)
    assert sparsity == pytest.approx(1.0 - totals["density"], abs=1e-12)
    assert sparsity == pytest.approx(0.6, abs=1e-3)
    assert neurobench.footprint(model) == totals["footprint_dense_bytes"]


# ----------------------------------------------------------------------------------- weights that ship
@pytest.mark.parametrize("nm", [False, True])
def test_deploy_round_trip_in_both_encodings(nm, tmp_path):
    from spikeprune import deploy

    model = pruned("convnet6", (1, 12, 12), nm, width=1 / 8)
    spec = {"model": "convnet6", "input_shape": (1, 12, 12), "num_classes": 10, "options": {"timesteps": T,
            "width": 1 / 8}}  # fmt: skip
    x = torch.rand(8, 1, 12, 12) * 3
    with torch.no_grad():
        expected = model(x)
    sizes = {}
    for encoding in ("safetensors", "compressed"):
        path = tmp_path / f"{encoding}.safetensors"
        sidecar = deploy.save(model, path, spec, encoding=encoding, nm=(2, 4) if nm else None)
        assert masks_of(model)  # the model keeps its masks
        loaded = deploy.load(path)
        with torch.no_grad():
            assert torch.equal(loaded(x), expected)
        sizes[encoding] = path.stat().st_size
        stored = {record["stored_as"] for record in sidecar["layers"].values()}
        if encoding == "safetensors":
            assert stored == {"dense"}
            zeros = {n: (m.weight == 0) for n, m in prunable_layers(finalize(copy.deepcopy(model)))}
            tensors = safetensors_load(path)
            assert all(torch.equal(tensors[f"{n}.weight"] == 0, z) for n, z in zeros.items())  # exact zeros
        else:
            assert ("nm" if nm else "csr") in stored
        layer = sidecar["layers"]["body.1.0"]
        assert layer["pattern"] == ("N:M" if nm else "unstructured") and 0 < layer["density"] < 1
        assert sidecar["timesteps"] == T and sidecar["neurons"]
    assert sizes["compressed"] < 0.7 * sizes["safetensors"]


def test_deploy_refuses_damaged_files(tmp_path):
    from spikeprune import deploy

    model = build_model("mlp", input_shape=(1, 8, 8), hidden=(16,), timesteps=2)
    spec = {"model": "mlp", "input_shape": (1, 8, 8), "num_classes": 10, "options": {"timesteps": 2,
            "hidden": [16]}}  # fmt: skip
    path = tmp_path / "m.safetensors"
    deploy.save(model, path, spec)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SpikepruneError, match="hash mismatch"):
        deploy.load(path)
    deploy.sidecar_path(path).unlink()
    with pytest.raises(SpikepruneError, match="is missing"):
        deploy.load(path)


def test_cli_exports_weights_that_ship(tmp_path):
    from spikeprune import deploy

    run = tmp_path / "run"
    settings = dict(dataset="digits", model="mlp", model_options={"hidden": [32]}, timesteps=2, epochs=1)
    Trainer(make_config({**settings, "sparsity": "nm", "nm": "2:4", "progress": False}), run).fit()
    reference = finalize(load_trained(run, device="cpu").model).eval()
    x = torch.rand(16, 1, 8, 8)
    for kind in ("safetensors", "compressed"):
        command = [sys.executable, "-m", "spikeprune.cli", "export", "--checkpoint", str(run), "--format", kind]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        path = run / ("model.safetensors" if kind == "safetensors" else "model-compressed.safetensors")
        assert path.is_file() and deploy.sidecar_path(path).is_file() and "2:4 N:M" in done.stdout
        with torch.no_grad():
            assert torch.equal(deploy.load(path)(x), reference(x))

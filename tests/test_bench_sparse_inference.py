"""bench/sparse_inference.py --quick, and the sparse runner's outputs on every built-in model."""

import json

import pytest
import torch
from torch import nn

from spikeprune.errors import SpikepruneError
from spikeprune.inference import SparseRunner
from spikeprune.models import build_model
from spikeprune.sparsity import attach_masks, effective_weight, finalize, global_magnitude, prunable_layers
from spikeprune.sparsity.nm import magnitude_nm_mask

pytest.importorskip("numba")

MODELS = [
    ("mlp", (1, 8, 8), {"hidden": (32, 32)}),
    ("scnn", (1, 12, 12), {"channels": (4, 8), "hidden": 16}),
    ("scnn1d", (1, 40), {"channels": 8, "hidden": 16}),
    ("convnet6", (1, 12, 12), {"width": 1 / 32}),
    ("vggsnn", (3, 2, 16, 16), {"width": 1 / 32, "encoder": "frames"}),
    ("vgg11", (3, 32, 32), {"width": 1 / 16}),
    ("resnet18", (3, 16, 16), {"width": 1 / 16}),
    ("resnet19", (3, 16, 16), {"width": 1 / 16}),
    ("resnet34", (3, 32, 32), {"width": 1 / 16}),
]


@pytest.mark.parametrize("name,shape,options", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("nm", [False, True], ids=["unstructured", "2:4"])
def test_sparse_runner_gives_the_dense_models_outputs(name, shape, options, nm):
    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, timesteps=3, **options).train()
    with torch.no_grad():  # non-trivial BatchNorm statistics, and every layer firing
        for _ in range(3):
            model(torch.rand(16, *shape) * 3)
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                module.weight.mul_(2.0)
    weights = {n: effective_weight(m) for n, m in prunable_layers(model)}
    if nm:
        attach_masks(model, {n: magnitude_nm_mask(w, 2, 4) for n, w in weights.items() if w.shape[1] % 4 == 0})
    else:
        attach_masks(model, global_magnitude(weights, 0.9))
    model = finalize(model).eval()
    x = torch.rand(6, *shape) * 3 if options.get("encoder") != "frames" else (torch.rand(6, *shape) < 0.3).float()
    with torch.no_grad():
        expected = model(x)
    runner = SparseRunner(model, threads=2)
    got = runner(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # same spikes; sums only in another order
    torch.testing.assert_close(runner(x[:1]), got[:1], rtol=0, atol=0)  # one sample: the same kernels, no threads
    assert expected.std() > 0
    assert sum(runner.work().values()) < 0.6 * sum(m.weight.numel() for _, m in prunable_layers(model))


def test_sparse_runner_refuses_what_it_cannot_run():
    with pytest.raises(SpikepruneError, match="rate"):
        SparseRunner(build_model("mlp", input_shape=(1, 4, 4), hidden=(8,), encoder="rate"))


def test_sparse_inference_quick(tmp_path, bench_script):
    bench_script("sparse_inference").main(["--quick", "--out-dir", str(tmp_path)])
    rows = json.loads((tmp_path / "sparse_inference.json").read_text())["rows"]
    assert [r["case"] for r in rows] == ["dense weights", "SLAMP 90%", "SLAMP 95%", "SLAMP 98%", "2:4"]
    for row in rows:
        assert row["same_predictions"] and row["max_logit_difference"] < 1e-4
        assert row["latency_speedup"] > 0 and row["throughput_speedup"] > 0
    assert abs(rows[2]["density"] - 0.05) < 0.01

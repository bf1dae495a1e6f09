"""Metrics: exact SynOps against brute-force loops, the recorder, profile(), energy, density and footprint."""

import itertools
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from spikeprune.errors import SpikepruneError
from spikeprune.metrics import (
    FP16_45NM,
    FP32_45NM,
    INT8_45NM,
    count_ops,
    csr_footprint,
    dense_footprint,
    dense_ops,
    dense_synops,
    density_report,
    effective_ops,
    energy_model,
    is_spiking,
    nm_footprint,
    profile,
    record_activity,
)
from spikeprune.models import build_model

# ----------------------------------------------------------------------------- brute force


def _brute_conv(x, w, stride, pad_left, out_size, dilation, groups):
    """Count (x != 0, w != 0) pairs reaching an output with explicit loops over every index."""
    n_batch, channels, *size = x.shape
    out_channels, per_group, *kernel = w.shape
    xs, ws = (x != 0).tolist(), (w != 0).tolist()
    out_per_group = out_channels // groups
    count = 0
    for n, o in itertools.product(range(n_batch), range(out_channels)):
        group = o // out_per_group
        for pos in itertools.product(*(range(s) for s in out_size)):
            for c in range(per_group):
                channel = group * per_group + c
                for k in itertools.product(*(range(s) for s in kernel)):
                    where = [
                        p * st - pl + kk * d
                        for p, st, pl, kk, d in zip(pos, stride, pad_left, k, dilation, strict=True)
                    ]
                    if not all(0 <= i < s for i, s in zip(where, size, strict=True)):
                        continue
                    xv, wv = xs[n][channel], ws[o][c]
                    for i in where:
                        xv = xv[i]
                    for kk in k:
                        wv = wv[kk]
                    count += bool(xv) and bool(wv)
    return count


def _brute_linear(x, w):
    rows = (x.reshape(-1, x.shape[-1]) != 0).tolist()
    ws = (w != 0).tolist()
    return sum(row[i] and wrow[i] for row in rows for wrow in ws for i in range(len(row)))


def _geometry(layer, x):
    """Explicit left padding and output size for a conv layer on x (handles 'same'/'valid')."""
    kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    size = x.shape[2:]
    if layer.padding == "same":
        pad = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
        return pad, tuple(size)
    pad = (0,) * len(kernel) if layer.padding == "valid" else layer.padding
    out = tuple(
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, p, d, k, st in zip(size, pad, dilation, kernel, stride, strict=True)
    )
    return pad, out


def _brute(layer, x):
    """(effective, dense SynOps, dense ops) by loops."""
    w = layer.weight.detach()
    ones_w, ones_x = torch.ones_like(w), torch.ones_like(x)
    if isinstance(layer, nn.Linear):
        return _brute_linear(x, w), _brute_linear(x, ones_w), _brute_linear(ones_x, ones_w)
    pad, out = _geometry(layer, x)
    args = (layer.stride, pad, out, layer.dilation, layer.groups)
    return (
        _brute_conv(x, w, *args),
        _brute_conv(x, ones_w, *args),
        _brute_conv(ones_x, ones_w, *args),
    )


def _random_case(seed):
    """A tiny random layer with a random mask, plus a spike input and a real input with zeros."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    kind = ("linear", "conv1d", "conv2d")[seed % 3]
    batch = rng.randint(1, 2)
    if kind == "linear":
        layer = nn.Linear(rng.randint(1, 7), rng.randint(1, 5), bias=rng.random() < 0.5)
        shape = (batch, rng.randint(1, 3), layer.in_features) if rng.random() < 0.3 else (batch, layer.in_features)
    else:
        dims = 1 if kind == "conv1d" else 2
        groups = rng.choice([1, 1, 2, 3])
        c_in, c_out = groups * rng.randint(1, 2), groups * rng.randint(1, 2)
        kernel = tuple(rng.randint(1, 3) for _ in range(dims))
        dilation = tuple(rng.randint(1, 2) for _ in range(dims))
        size = tuple(rng.randint(3, 6) if dims == 2 else rng.randint(3, 9) for _ in range(dims))
        mode = rng.choice(["int", "int", "int", "same", "valid"])
        stride = (1,) * dims if mode == "same" else tuple(rng.randint(1, 3) for _ in range(dims))
        padding = mode if mode != "int" else tuple(rng.randint(0, 2) for _ in range(dims))
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        layer = conv(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
        pads = padding if mode == "int" else (0,) * dims  # keep the output non-empty
        size = tuple(max(s, d * (k - 1) + 1 - 2 * p) for s, d, k, p in zip(size, dilation, kernel, pads, strict=True))
        shape = (batch, c_in, *size)
    with torch.no_grad():
        layer.weight.mul_((torch.rand_like(layer.weight) > rng.uniform(0.2, 0.8)).float())
    spikes = (torch.rand(shape) < rng.uniform(0.1, 0.6)).float()
    real = torch.randn(shape) * (torch.rand(shape) > 0.3).float()
    return layer, spikes, real


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("seed", range(36))
def test_counts_equal_brute_force(seed):
    layer, spikes, real = _random_case(seed)
    for x in (spikes, real):
        effective, dense_syn, dense = _brute(layer, x)
        assert effective_ops(layer, x) == effective
        assert dense_synops(layer, x) == dense_syn
        assert dense_ops(layer, x) == dense
        counts = count_ops(layer, x)
        assert (counts.effective_synops, counts.dense_synops, counts.dense_ops) == (effective, dense_syn, dense)
        assert counts.inputs == x.numel() and counts.nonzero_inputs == int((x != 0).sum())


def test_ac_mac_classification():
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, padding=1)
    spikes = (torch.rand(2, 2, 5, 5) < 0.5).float()
    signed = spikes - (torch.rand(2, 2, 5, 5) < 0.3).float()  # values in {-1, 0, 1}
    real = torch.rand(2, 2, 5, 5) * spikes
    for x, spiking in ((spikes, True), (signed, True), (real, False)):
        assert is_spiking(x) is spiking
        counts = count_ops(layer, x)
        assert counts.effective_synops > 0
        assert (counts.acs, counts.macs) == ((counts.effective_synops, 0) if spiking else (0, counts.effective_synops))


def test_linear_synops_drop_exactly_with_zeroed_weights():
    torch.manual_seed(0)
    layer = nn.Linear(40, 12, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(12, 40) + 0.1)  # no accidental zeros
    x = (torch.rand(16, 40) < 0.3).float()
    active = int(x.sum())
    assert count_ops(layer, x).acs == active * 12
    with torch.no_grad():
        layer.weight[:4] = 0  # 4 of 12 output units silenced: they stop receiving every spike
    counts = count_ops(layer, x)
    assert counts.acs == active * 8 and counts.dense_synops == active * 12
    with torch.no_grad():
        layer.weight[:, ::2] = 0  # and every other input column
    assert count_ops(layer, x).acs == int(x[:, 1::2].sum()) * 8


def test_parametrized_weight_is_the_one_counted():
    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    torch.manual_seed(0)
    layer = nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        layer.weight.add_(1.0)  # no zeros before masking
    mask = torch.zeros(4, 6)
    mask[0] = 1
    parametrize.register_parametrization(layer, "weight", Mask(mask))
    x = torch.ones(3, 6)
    assert count_ops(layer, x).acs == 3 * 6 == effective_ops(layer, x)
    report = density_report(nn.Sequential(layer))
    assert report.layers[0].nonzeros == 6 and report.density == pytest.approx(0.25)
    # dense footprint counts original + mask (NeuroBench); compressed replaces both by the CSR weight
    assert dense_footprint(layer) == 2 * 24 * 4
    assert report.footprint_compressed_bytes == csr_footprint(layer.weight) == 6 * 4 + 6 * 4 + 5 * 4


def test_user_mistakes_raise_spikeprune_errors():
    with pytest.raises(SpikepruneError, match="padding_mode"):
        count_ops(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), torch.ones(1, 1, 4, 4))
    with pytest.raises(SpikepruneError, match="expects input"):
        count_ops(nn.Conv2d(2, 1, 3), torch.ones(1, 3, 4, 4))
    with pytest.raises(SpikepruneError, match="expects input"):
        effective_ops(nn.Linear(3, 2), torch.ones(2, 4))
    with pytest.raises(SpikepruneError, match="not a synaptic layer"):
        count_ops(nn.ReLU(), torch.ones(2))
    with pytest.raises(SpikepruneError, match="batch_size"):
        profile(nn.Linear(2, 2), [torch.ones(2)], batch_size=0)
    with pytest.raises(SpikepruneError, match="no samples"):
        profile(nn.Linear(2, 2), [])
    with pytest.raises(SpikepruneError, match="nm_patterns"):
        density_report(nn.Sequential(nn.Linear(4, 2)), {"nope": (2, 4)})


# ----------------------------------------------------------------------------- recorder


def test_recorder_sums_calls_and_removes_hooks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Sequential(nn.Conv1d(1, 2, 3, padding=1)))
    a, b = torch.randn(3, 5), torch.randn(2, 5)
    with record_activity(model) as rec:
        for x in (a, b):
            model[2](model[1](model[0](x)).unsqueeze(1))
            rec.add_samples(x.shape[0])
    assert rec.samples == 5
    linear = rec.layers["0"]
    assert linear == count_ops(model[0], a) + count_ops(model[0], b)
    assert linear.calls == 2 and rec.layers["2.0"].calls == 2
    assert all(not m._forward_hooks for m in model.modules())
    model[0](a)  # runs hook-free, counts unchanged
    assert rec.layers["0"].calls == 2
    with pytest.raises(RuntimeError), record_activity(model):
        raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in model.modules())


# ----------------------------------------------------------------------------- profile


def _scnn_and_data(batches=3, batch=4, seed=0):
    torch.manual_seed(seed)
    model = build_model("scnn", timesteps=2, tdbn_alpha=8.0)  # large BN gain: the untrained net spikes
    x = torch.rand(batches * batch, 1, 28, 28)
    y = torch.randint(0, 10, (batches * batch,))
    data = torch.utils.data.TensorDataset(x, y, torch.arange(len(y)))
    return model, data, x


def test_profile_matches_an_independent_count():
    model, data, x = _scnn_and_data()
    report = profile(model, data, batch_size=4)
    t = report.totals
    assert t["samples"] == 12 and 0 <= t["accuracy"] <= 1
    layers = {layer.name: layer for layer in report.layers}
    assert list(layers) == ["stem.0", "body.1.1", "body.3.2", "body.5.0"]

    # second conv, from spikes recorded by the neuron itself, counted with F.conv2d here
    conv, neuron = model.body[1][1], model.body[0]
    neuron.record = True
    ones = torch.ones_like(conv.weight, dtype=torch.float64)
    effective = dense_syn = 0.0
    with torch.no_grad():
        for batch in x.split(4):
            model.eval()(batch)
            spikes = F.max_pool2d(neuron.records["spikes"].flatten(0, 1), 2).double()
            effective += F.conv2d(spikes, (conv.weight != 0).double(), padding=1).sum().item()
            dense_syn += F.conv2d(spikes, ones, padding=1).sum().item()
    neuron.record = False
    second = layers["body.1.1"]
    assert effective > 0
    assert second.acs == effective / 12 and second.macs == 0
    assert second.dense_synops == dense_syn / 12
    assert second.dense_ops == 2 * 64 * 32 * (12 * 3 + 2 * 2) ** 2  # T · out channels · taps inside 14x14

    # the stem sees the real image once per sample (direct encoding): MACs, counted once
    stem = layers["stem.0"]
    assert stem.acs == 0 and stem.macs == 32 * (26 * 3 + 2 * 2) ** 2  # no zero pixels; border taps fall off
    assert stem.macs == effective_ops(model.stem[0], x) / 12

    for key in ("acs", "macs", "effective_synops", "dense_synops", "dense_ops", "energy_pj"):
        assert t[key] == pytest.approx(sum(getattr(layer, key) for layer in report.layers))
    assert t["energy_pj"] == pytest.approx(t["acs"] * 0.9 + t["macs"] * 4.6)
    assert t["density"] == 1.0 and all(layer.density == 1.0 for layer in report.layers)
    assert t["effective_synops"] == t["dense_synops"]  # dense weights: nothing to skip
    assert 0 < t["mean_firing_rate"] < 1
    first = report.neurons[0]
    assert (first.name, first.neurons, first.timesteps) == ("body.0", 32 * 28 * 28, 2)


def test_profile_after_zeroing_weights():
    model, data, _ = _scnn_and_data(batches=2)
    before = {layer.name: layer for layer in profile(model, data, batch_size=4).layers}
    classifier = model.body[5][0]
    with torch.no_grad():
        classifier.weight[:5] = 0  # half the output units: no effect on any spike
    report = profile(model, data, batch_size=4)
    after = {layer.name: layer for layer in report.layers}
    assert report.totals["density"] < 1 and after["body.5.0"].density == 0.5
    assert after["body.5.0"].effective_synops == before["body.5.0"].effective_synops / 2
    for name in before:
        assert after[name].dense_synops == before[name].dense_synops
        if name != "body.5.0":
            assert after[name].effective_synops == before[name].effective_synops
    assert report.totals["effective_synops"] < report.totals["dense_synops"]


def test_profile_report_outputs(tmp_path):
    model, data, _ = _scnn_and_data(batches=2)
    was_training = model.training
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    report = profile(model, loader, batches=2, energy=INT8_45NM)
    assert model.training == was_training and report.totals["samples"] == 6
    assert report.energy_model == "int8_45nm" and "compute only" in report.note
    path = report.save_json(tmp_path / "profile.json")
    saved = json.loads(path.read_text())
    assert saved == report.to_dict() and saved["layers"][1]["weight_shape"] == [64, 32, 3, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]  # no temp file left behind
    text = report.table()
    lines = text.splitlines()
    assert all(name in text for name in ("stem.0", "body.1.1", "body.0", "compute only", "int8_45nm"))
    assert len({len(line) for line in lines[1:3]}) == 1  # header underline matches the header


# ----------------------------------------------------------------------------- energy, density, footprint


def test_energy_presets():
    assert (FP32_45NM.e_ac_pj, FP32_45NM.e_mac_pj) == (0.9, 4.6)
    assert (FP16_45NM.e_ac_pj, FP16_45NM.e_mac_pj) == (0.4, 1.5)
    assert (INT8_45NM.e_ac_pj, INT8_45NM.e_mac_pj) == (0.03, 0.23)
    assert FP32_45NM.energy_pj(10, 2) == pytest.approx(9 + 9.2)
    assert energy_model("FP16_45nm") is FP16_45NM
    with pytest.raises(SpikepruneError, match="unknown energy model"):
        energy_model("fp64")


def test_csr_and_nm_footprints_by_hand():
    w = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 4.0, 5.0]])
    assert csr_footprint(w) == 5 * 4 + 5 * 4 + 4 * 4  # values, int32 columns, 3+1 row pointers
    assert csr_footprint(w.half()) == 5 * 2 + 5 * 4 + 4 * 4

    linear = torch.tensor([[1.0, 0, 2, 0, 0, 0, 3, 4], [0, 5, 0, 6, 7, 0, 0, 0]])  # 2:4 along the input
    # 2 rows · 2 blocks · 2 kept = 8 values (32 B) + 8 · 2-bit indices (2 B)
    assert nm_footprint(linear, 2, 4) == 34
    # 1:8 needs ceil(log2 8) = 3 bits: 2 rows · 1 block · 1 kept → 8 B + ceil(6/8) = 1 B
    with pytest.raises(SpikepruneError, match="more than N=1"):
        nm_footprint(linear, 1, 8)
    assert nm_footprint(linear, 1, 8, check=False) == 9

    # conv: blocks run along C at each kernel position, not along the flattened (C, kh, kw)
    conv = torch.zeros(4, 8, 3, 3, dtype=torch.float16)
    conv[:, 0::4] = 1  # channels 0, 4
    conv[:, 1::4] = 1  # channels 1, 5 → exactly 2 of every 4 channels at every position
    assert nm_footprint(conv, 2, 4) == 4 * 9 * 2 * 2 * 2 + math.ceil(4 * 9 * 2 * 2 * 2 / 8)
    corner = torch.zeros(4, 8, 3, 3)
    corner[:, :, 0, 0] = 1  # 2:4 along the flattened (C, kh, kw) order, but 4 of 4 channels at (0, 0)
    assert torch.count_nonzero(corner.reshape(4, -1, 4), dim=-1).max() == 1
    with pytest.raises(SpikepruneError, match="4 non-zeros"):
        nm_footprint(corner, 2, 4)
    with pytest.raises(SpikepruneError, match="divisible"):
        nm_footprint(torch.ones(2, 6), 2, 4)
    with pytest.raises(SpikepruneError, match="1 <= N <= M"):
        nm_footprint(linear, 5, 4)


def test_density_report_and_footprints():
    torch.manual_seed(0)
    model = build_model("scnn", timesteps=2)
    tensors = [*model.parameters(), *model.buffers()]
    dense = sum(t.numel() * t.element_size() for t in tensors)
    assert dense_footprint(model) == dense
    report = density_report(model)
    assert report.density == 1.0 and report.footprint_compressed_bytes == dense  # CSR never beats dense here
    assert report.params == sum(p.numel() for p in model.parameters())

    fc = model.body[3][2]
    with torch.no_grad():
        fc.weight[:, 4:] = 0  # 4 of 3136 inputs kept: CSR wins
        model.body[1][1].weight[:, 2::4] = 0
        model.body[1][1].weight[:, 3::4] = 0  # 2:4 along the channels
    patterns = {"body.1.1": (2, 4)}
    report = density_report(model, patterns)
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["body.3.2"].nonzeros == 128 * 4
    assert by_name["body.3.2"].compressed_bytes == by_name["body.3.2"].csr_bytes == 512 * 8 + 129 * 4
    assert by_name["body.1.1"].compressed_bytes == nm_footprint(model.body[1][1].weight, 2, 4)
    assert by_name["body.1.1"].density == 0.5 and by_name["stem.0"].compressed_bytes == 288 * 4
    weights = sum(layer.dense_bytes for layer in report.layers)
    compressed = sum(layer.compressed_bytes for layer in report.layers)
    assert report.footprint_compressed_bytes == dense - weights + compressed
    assert report.nonzero_params == sum(int(torch.count_nonzero(p)) for p in model.parameters())

"""Models, encoders and norms: shapes, the direct-encoding shortcut, registry errors, the benchmark script."""

import pytest
import torch
from torch import nn

from spikeprune.errors import SpikepruneError
from spikeprune.models import build_model, list_models
from spikeprune.snn import LatencyEncoder, PerStep, RateEncoder, TdBatchNorm

DEEP = ("convnet6", "vggsnn", "vgg11", "vgg16", "resnet18", "resnet19", "resnet34")


@pytest.mark.parametrize("name", [info.name for info in list_models()])
def test_every_model_trains_a_step(name):
    torch.manual_seed(0)
    info = {i.name: i for i in list_models()}[name]
    width = {"width": 0.25} if name in DEEP else {}  # the full-width nets only cost time here
    model = build_model(name, timesteps=2, num_classes=7, **width)
    x = torch.randn(2, *info.default_input_shape)
    logits = model(x)
    assert logits.shape == (2, 7)
    logits.sum().backward()
    synapses = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    assert synapses and all(m.weight.grad is not None for m in synapses)


def test_direct_stem_shortcut_equals_running_the_stem_every_step():
    torch.manual_seed(0)
    model = build_model("scnn", timesteps=3).eval()
    x = torch.rand(4, 1, 28, 28)
    sequence = x.unsqueeze(0).repeat(3, 1, 1, 1, 1)
    torch.testing.assert_close(model(x), model(sequence), rtol=0, atol=1e-6)


def test_event_frames_go_in_directly():
    model = build_model("vgg11", timesteps=5, input_shape=(2, 48, 48))
    assert model(torch.rand(5, 3, 2, 48, 48)).shape == (3, 10)


def test_wrong_input_shape_is_named():
    with pytest.raises(SpikepruneError, match=r"expects input \[B, 1, 28, 28\]"):
        build_model("scnn")(torch.rand(28, 28))


def test_registry_errors():
    with pytest.raises(SpikepruneError, match="unknown model"):
        build_model("alexnet")
    with pytest.raises(SpikepruneError, match="does not take"):
        build_model("vgg11", hidden=5)
    with pytest.raises(SpikepruneError, match="unknown norm"):
        build_model("scnn", norm="layernorm")


def test_mpbn_model_runs():
    model = build_model("scnn", timesteps=2, norm="mpbn")
    model(torch.rand(2, 1, 28, 28)).sum().backward()


def test_encoders():
    x = torch.tensor([[0.0, 0.5, 1.0]])
    torch.manual_seed(0)
    rate = RateEncoder(2000)(x)
    assert set(rate.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(rate.mean(0), x, atol=0.04, rtol=0)
    latency = LatencyEncoder(5)(x)
    assert latency.sum(0).tolist() == [[0.0, 1.0, 1.0]]
    assert latency[:, 0, 2].argmax() == 0 and latency[:, 0, 1].argmax() == 2


def test_tdbn_normalises_over_time_and_batch():
    torch.manual_seed(0)
    norm = TdBatchNorm(3, alpha=0.5, v_threshold=2.0)
    x = torch.randn(4, 8, 3, 5, 5) * 3 + 1
    y = norm(x)
    per_channel = y.transpose(0, 2).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(1, unbiased=False), torch.full((3,), 1.0), atol=1e-3, rtol=0)


def test_per_step_folds_time():
    layer = nn.Linear(3, 2)
    x = torch.randn(4, 5, 3)
    torch.testing.assert_close(PerStep(layer)(x), layer(x))


def _channels(model):
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_convnet6_and_vggsnn_follow_the_papers_layouts():
    convnet6 = build_model("convnet6", timesteps=2)
    assert _channels(convnet6) == [256] * 6
    fcs = [m for m in convnet6.modules() if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(256 * 8 * 8, 2048), (2048, 10)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in convnet6.modules()) == 2
    vggsnn = build_model("vggsnn", timesteps=2, input_shape=(2, 48, 48))
    assert _channels(vggsnn) == [64, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.AvgPool2d) for m in vggsnn.modules()) == 4
    (classifier,) = [m for m in vggsnn.modules() if isinstance(m, nn.Linear)]
    assert classifier.in_features == 512 * 3 * 3  # 48 -> 3 after four pools, as TET's VGGSNN


@pytest.mark.parametrize("name", DEEP)
def test_width_scales_every_channel_count(name):
    full = build_model(name, timesteps=1)
    half = build_model(name, timesteps=1, width=0.5)
    assert _channels(half) == [max(1, round(c / 2)) for c in _channels(full)]
    hidden = [m.out_features for m in full.modules() if isinstance(m, nn.Linear)][:-1]
    assert [m.out_features for m in half.modules() if isinstance(m, nn.Linear)][:-1] == [h // 2 for h in hidden]


@pytest.mark.parametrize("name", ["convnet6", "vggsnn"])
def test_deep_models_take_event_frames_and_static_images(name):
    torch.manual_seed(0)
    frames = build_model(name, timesteps=3, input_shape=(3, 2, 34, 34), encoder="frames", width=1 / 16)
    logits = frames(torch.rand(2, 3, 2, 34, 34))  # dataset batches [B, T, C, H, W]
    assert logits.shape == (2, 10)
    static = build_model(name, timesteps=3, input_shape=(1, 28, 28), width=1 / 16, neuron="plif", norm="mpbn")
    static(torch.rand(2, 1, 28, 28)).sum().backward()


@pytest.mark.parametrize("width", [0, -1, "wide", True])
def test_bad_width_is_named(width):
    with pytest.raises(SpikepruneError, match="width must be"):
        build_model("vggsnn", width=width)


def test_inputs_too_small_for_the_pools_are_named():
    with pytest.raises(SpikepruneError, match="at least 16x16"):
        build_model("vggsnn", input_shape=(2, 8, 8))
    with pytest.raises(SpikepruneError, match="at least 32x32"):
        build_model("vgg11", input_shape=(1, 8, 8))

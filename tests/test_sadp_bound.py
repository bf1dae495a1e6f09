"""SADP's spike-aware score is an upper bound on the exact per-example gradient norm it covers."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from spikeprune.datapruning import probe_kernels
from spikeprune.datapruning.probe import SpikeProbe, delta_norm, spike_aware_score
from spikeprune.models import build_model
from spikeprune.snn import LIF, PerStep, build_surrogate


class PooledNet(nn.Module):
    """conv → LIF → global average pool → linear readout (the VGG/ResNet head shape)."""

    def __init__(self, timesteps: int, backend: str = "fused") -> None:
        super().__init__()
        self.timesteps = timesteps
        self.conv = PerStep(nn.Conv2d(2, 6, 3, padding=1, bias=True))
        self.neuron = LIF(backend=backend)
        self.head = PerStep(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))

    def forward(self, x):
        seq = x.unsqueeze(0).expand(self.timesteps, *x.shape)
        return self.head(self.neuron(self.conv(seq))).mean(0)


def _loop_copy(model):
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if hasattr(module, "backend"):
            module.backend = "loop"
    return twin


def _exact_norms(model, probe_names, x, y):
    """Per-example ‖∇ℓ‖ over the readout (W, b) and the probed synapse (W, b), with torch.func."""
    modules = dict(model.named_modules())
    keys = []
    for name in (probe_names["readout"], probe_names["synapse"]):
        for pname, _ in modules[name].named_parameters():
            keys.append(f"{name}.{pname}" if name else pname)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(chosen, xi, yi):
        merged = {**params, **chosen}
        logits = functional_call(model, (merged, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    grads = vmap(grad(loss), in_dims=(None, 0, 0))({k: params[k] for k in keys}, x, y)
    return torch.sqrt(sum(g.flatten(1).square().sum(1) for g in grads.values()))


CASES = {
    "mlp-stem-hard": dict(name="mlp", hidden=(24,), norm="none"),
    "mlp-deep-soft": dict(name="mlp", hidden=(20, 16), norm="none", v_reset=None),
    "mlp-detach": dict(name="mlp", hidden=(20, 16), norm="none", detach_reset=True),
    "mlp-if": dict(name="mlp", hidden=(20, 16), norm="none", neuron="if"),
    "mlp-plif-sigmoid": dict(name="mlp", hidden=(20, 16), norm="none", neuron="plif", surrogate="sigmoid"),
    "scnn-bn-eval": dict(name="scnn", channels=(4, 6), hidden=16, tdbn_alpha=3.0),
    "scnn1d-bn-eval": dict(name="scnn1d", channels=6, hidden=12, tdbn_alpha=3.0, v_reset=None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_score_bounds_exact_gradient_norm(case):
    options = dict(CASES[case])
    name = options.pop("name")
    torch.manual_seed(0)
    shape = {"mlp": (1, 6, 6), "scnn": (1, 8, 8), "scnn1d": (1, 12)}[name]
    model = build_model(name, input_shape=shape, num_classes=5, timesteps=4, **options).eval()
    with torch.no_grad():  # make the hidden layers fire a fair amount
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                module.weight.mul_(3.0)
    x = torch.rand(64, *shape) * 2
    y = torch.randint(0, 5, (64,))
    exact_model = _loop_copy(model)
    probe = SpikeProbe(model)
    logits = model(x)
    extras = probe.collect()
    score = spike_aware_score(logits.detach(), y, extras)
    exact = _exact_norms(exact_model, probe.names, x, y)
    assert torch.all(score >= exact * (1 - 1e-5)), (score - exact).min()
    assert (exact > 0).float().mean() > 0.5  # the test is not vacuous
    # the readout part alone is exact: with the synapse term removed the score drops below the norm
    readout_only = delta_norm(logits.detach(), y) * torch.sqrt(extras["sadp_rr"])
    assert torch.all(readout_only <= exact * (1 + 1e-5))


def test_pooled_readout_bound():
    torch.manual_seed(1)
    model = PooledNet(timesteps=3)
    with torch.no_grad():
        model.conv[0].weight.mul_(4.0)
    x = torch.rand(48, 2, 5, 5)
    y = torch.randint(0, 5, (48,))
    exact_model = PooledNet(timesteps=3, backend="loop")
    exact_model.load_state_dict(model.state_dict())
    probe = SpikeProbe(model)
    logits = model(x)
    score = spike_aware_score(logits.detach(), y, probe.collect())
    exact = _exact_norms(exact_model, probe.names, x, y)
    assert torch.all(score >= exact * (1 - 1e-5))
    assert probe.pooled


def test_probe_skips_evaluation_and_rejects_mpbn():
    from spikeprune.errors import SpikepruneError

    model = build_model("mlp", input_shape=(1, 4, 4), hidden=(8,), timesteps=2)
    probe = SpikeProbe(model)
    with torch.no_grad():
        model(torch.rand(3, 1, 4, 4))
    assert probe.collect() == {}
    with pytest.raises(SpikepruneError, match="MPBN"):
        SpikeProbe(build_model("scnn", timesteps=2, norm="mpbn"))


def test_probe_hooks_run_on_one_thread_and_give_the_threads_back(monkeypatch):
    monkeypatch.setattr(probe_kernels, "usable", lambda *args: False)  # the tensor path (GPUs, no numba)
    model = build_model("mlp", input_shape=(1, 4, 4), hidden=(8,), timesteps=2)
    probe = SpikeProbe(model)
    surrogate, seen = probe.neuron.surrogate, []
    real = surrogate.derivative

    def spy(*args, **kwargs):  # called by the neuron hook (the forward itself does not need σ')
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(surrogate, "derivative", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model(torch.rand(3, 1, 4, 4))
        assert seen == [1] and torch.get_num_threads() == 2
        assert set(probe.collect()) >= {"sadp_q", "sadp_rr"}
    finally:
        torch.set_num_threads(before)


class ConvNormNet(nn.Module):
    """conv (with bias) → BatchNorm2d (no affine) → LIF → average pool → readout: the batch-variance and
    conv-bias terms of the synapse bound, in training mode."""

    def __init__(self, timesteps: int) -> None:
        super().__init__()
        self.timesteps = timesteps
        self.conv = PerStep(nn.Conv2d(2, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6, affine=False))
        self.neuron = LIF(v_reset=None, surrogate=build_surrogate("triangle"))
        self.head = PerStep(nn.AvgPool2d(5), nn.Flatten(), nn.Linear(6, 5))

    def forward(self, x):
        seq = x.unsqueeze(0).expand(self.timesteps, *x.shape)
        return self.head(self.neuron(self.conv(seq))).mean(0)


PATHS = {  # model, input shape, options
    "scnn1d-atan-hard": ("scnn1d", (1, 12), dict(channels=6, hidden=12, timesteps=4)),
    "scnn-sigmoid-soft": (
        "scnn",
        (1, 8, 8),
        dict(channels=(4, 6), hidden=16, timesteps=3, surrogate="sigmoid", v_reset=None),
    ),
    "mlp-triangle-detach": (
        "mlp",
        (1, 6, 6),
        dict(hidden=(20, 16), norm="none", surrogate="triangle", detach_reset=True, timesteps=4),
    ),
    "mlp-soft-detach": (
        "mlp",
        (1, 6, 6),
        dict(hidden=(20,), norm="none", v_reset=None, detach_reset=True, timesteps=2),
    ),
    "conv-bias-bn": (ConvNormNet, (2, 5, 5), {}),
    "spiking-readout": (None, (1, 6, 6), {}),
}


@pytest.mark.parametrize("case", list(PATHS))
def test_compiled_probe_matches_the_tensor_path(case, monkeypatch):
    """On CPU the probe's reductions run as numba kernels; they must give what the tensor path gives
    (which runs on GPUs and without numba), in training mode (batch statistics) and for every reset."""
    pytest.importorskip("numba")
    torch.manual_seed(0)
    name, shape, options = PATHS[case]
    if name is None:
        model = _our_net({"v_reset": None})
    elif isinstance(name, str):
        model = build_model(name, input_shape=shape, num_classes=5, **options)
    else:
        model = name(timesteps=3)
    model.train()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                module.weight.mul_(3.0)
    x = torch.rand(32, *shape) * 2
    probe = SpikeProbe(model)
    calls = []
    for name in ("neuron_bound", "synapse_norms", "batch_norm_scale", "readout_terms"):
        real = getattr(probe_kernels, name)
        monkeypatch.setattr(probe_kernels, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    model(x)
    compiled = probe.collect()
    assert "neuron_bound" in calls and "synapse_norms" in calls
    assert ("batch_norm_scale" in calls) == (case in ("scnn1d-atan-hard", "scnn-sigmoid-soft", "conv-bias-bn"))
    monkeypatch.setattr(probe_kernels, "usable", lambda *args: False)
    model(x)
    tensor = probe.collect()
    assert compiled.keys() == tensor.keys()
    for key in compiled:
        torch.testing.assert_close(compiled[key], tensor[key], rtol=1e-4, atol=1e-6, msg=key)
    assert compiled.get("sadp_q", compiled.get("sadp_w")).abs().sum() > 0  # not vacuous


# ---------------------------------------------------------------- spiking readouts (snnTorch's output=True shape)
def _per_example_norms(model, names, x, y):
    """Exact per-example ‖∇ℓ‖ over the readout Linear (W, b) and the hidden synapse, one example at a time."""
    modules = dict(model.named_modules())
    params = [p for name in (names["readout"], names["synapse"]) for p in modules[name].parameters()]
    norms = []
    for xi, yi in zip(x, y, strict=True):
        loss = F.cross_entropy(model(xi.unsqueeze(0)), yi.unsqueeze(0))
        grads = torch.autograd.grad(loss, params)
        norms.append(torch.sqrt(sum(g.square().sum() for g in grads)))
    return torch.stack(norms)


def _our_net(neuron_options, pooled=False):
    from spikeprune.interop import TimeWrapper

    if pooled:
        body = [PerStep(nn.Conv2d(1, 6, 3, padding=1)), LIF(**neuron_options), PerStep(nn.AvgPool2d(2), nn.Flatten())]
        features = 6 * 3 * 3
    else:
        body = [PerStep(nn.Flatten(), nn.Linear(36, 20)), LIF(**neuron_options)]
        features = 20
    net = nn.Sequential(*body, PerStep(nn.Linear(features, 5)), LIF(**neuron_options))
    return TimeWrapper(net, timesteps=4, input_shape=(1, 6, 6))


def _snntorch_net(reset):
    snn = pytest.importorskip("snntorch")
    from spikeprune.interop import adapt

    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(36, 20),
        snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism=reset),
        nn.Linear(20, 5),
        snn.Leaky(beta=0.7, init_hidden=True, reset_mechanism=reset, output=True),
    )
    return adapt(net)


SPIKING_READOUTS = {
    "lif-hard-rate": lambda: _our_net({"backend": "loop"}),
    "lif-soft-rate": lambda: _our_net({"backend": "loop", "v_reset": None}),
    "lif-detach-rate": lambda: _our_net({"backend": "loop", "detach_reset": True}),
    "lif-pooled-rate": lambda: _our_net({"backend": "loop"}, pooled=True),
    "lif-hard-membrane": lambda: _our_net({"backend": "loop"}),
    "snntorch-subtract-rate": lambda: _snntorch_net("subtract"),
    "snntorch-zero-rate": lambda: _snntorch_net("zero"),
    "snntorch-subtract-membrane": lambda: _snntorch_net("subtract"),
    "snntorch-none-membrane": lambda: _snntorch_net("none"),
}


@pytest.mark.parametrize("case", list(SPIKING_READOUTS))
def test_spiking_readout_score_bounds_exact_gradient_norm(case):
    from spikeprune.interop import TimeWrapper

    torch.manual_seed(0)
    model = SPIKING_READOUTS[case]()
    readout = "membrane" if case.endswith("membrane") else "output"
    if not isinstance(model, TimeWrapper):
        model = TimeWrapper(model, timesteps=4, input_shape=(1, 6, 6), readout=readout)
    elif readout == "membrane":
        model = TimeWrapper(model.model, timesteps=4, input_shape=(1, 6, 6), readout=readout)
    with torch.no_grad():  # make every layer fire a fair amount
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.mul_(3.0)
    x, y = torch.rand(40, 1, 6, 6) * 2, torch.randint(0, 5, (40,))
    probe = SpikeProbe(model)
    assert probe.spiking_readout
    logits = model(x)
    extras = probe.collect()
    score = spike_aware_score(logits.detach(), y, extras)
    probe.remove()
    exact = _per_example_norms(model, probe.names, x, y)
    assert (exact > 0).float().mean() > 0.5  # not vacuous
    assert torch.all(score >= exact * (1 - 1e-4)), (score - exact).min()
    # the readout part is exact: with the hidden synapse's term removed, the score is the readout's own norm
    readout_only = spike_aware_score(logits.detach(), y, {**extras, "sadp_w": torch.zeros_like(extras["sadp_w"])})
    modules = dict(model.named_modules())
    params = list(modules[probe.names["readout"]].parameters())
    for i in range(8):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        norm = torch.sqrt(sum(g.square().sum() for g in torch.autograd.grad(loss, params)))
        torch.testing.assert_close(readout_only[i], norm, rtol=1e-4, atol=1e-6)


def test_spiking_readout_needs_a_hidden_layer_and_a_linear_before_the_output():
    from spikeprune.errors import SpikepruneError
    from spikeprune.interop import TimeWrapper

    shallow = TimeWrapper(nn.Sequential(PerStep(nn.Flatten(), nn.Linear(36, 5)), LIF()), 2, input_shape=(1, 6, 6))
    with pytest.raises(SpikepruneError, match="no spiking layer before the readout"):
        SpikeProbe(shallow)
    conv_out = nn.Sequential(PerStep(nn.Conv2d(1, 4, 3)), LIF(), PerStep(nn.Conv2d(4, 5, 4)), LIF())
    with pytest.raises(SpikepruneError, match="nn.Linear readout"):
        SpikeProbe(TimeWrapper(conv_out, 2, input_shape=(1, 6, 6)))

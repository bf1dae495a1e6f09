"""SADP's spike-aware score is an upper bound on the exact per-example gradient norm it covers."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from spikeprune.datapruning.probe import SpikeProbe, delta_norm, spike_aware_score
from spikeprune.models import build_model
from spikeprune.snn import LIF, PerStep


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

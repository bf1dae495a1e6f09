"""SpikingJelly and snnTorch models through every spikeprune path (interop adapters)."""

from __future__ import annotations

import copy
import itertools
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from spikeprune.data import IndexedDataset, build_dataset
from spikeprune.datapruning import SADP
from spikeprune.errors import SpikepruneError
from spikeprune.interop import ForeignNeuron, FrameworkSurrogate, TimeSequential, TimeWrapper, adapt
from spikeprune.metrics import effective_ops, profile
from spikeprune.snn import LIF, ATan, SpikingNeuron
from spikeprune.sparsity import FixedMasks, finalize, prune_model
from spikeprune.sparsity.nm import validate_nm
from spikeprune.sparsity.spikenm import SpikeNM
from spikeprune.train import Trainer, make_config

sj_layer = pytest.importorskip("spikingjelly.activation_based.layer")
from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402

snn = pytest.importorskip("snntorch")
from snntorch import utils as snn_utils  # noqa: E402

T = 4
SHAPE = (1, 8, 8)
README = Path(__file__).resolve().parents[1] / "README.md"


# ----------------------------------------------------------------------------------- models
def sj_multistep() -> nn.Module:
    """SpikingJelly multi-step CNN: conv-BN-LIF (EID needs the neuron right after the synapse's BN)."""
    return nn.Sequential(
        sj_layer.Conv2d(1, 8, 3, padding=1, bias=False, step_mode="m"),
        sj_layer.BatchNorm2d(8, step_mode="m"),
        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m"),
        sj_layer.MaxPool2d(2, step_mode="m"),
        sj_layer.Flatten(step_mode="m"),
        sj_layer.Linear(8 * 4 * 4, 32, bias=False, step_mode="m"),
        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m"),
        sj_layer.Linear(32, 10, step_mode="m"),
    )


def sj_singlestep() -> nn.Module:
    """SpikingJelly single-step MLP with plain torch layers, written for a per-step loop."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan()),
        nn.Linear(32, 32),
        neuron.ParametricLIFNode(init_tau=2.0, v_reset=None),
        nn.Linear(32, 16),
        neuron.IFNode(surrogate_function=surrogate.Sigmoid()),
        nn.Linear(16, 10),
    )


def snn_model() -> nn.Module:
    """snnTorch MLP with init_hidden neurons (Leaky and Synaptic)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        snn.Leaky(beta=0.8, init_hidden=True),
        nn.Linear(32, 32),
        snn.Synaptic(alpha=0.7, beta=0.8, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(32, 10),
    )


BUILDERS = {"sj-multistep": sj_multistep, "sj-singlestep": sj_singlestep, "snntorch": snn_model}


def reference(name: str, net: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """How each framework's own user runs the original model on [T, B, ...]."""
    if name == "sj-multistep":
        out = net(x_seq)
        functional.reset_net(net)
        return out
    reset = functional.reset_net if name == "sj-singlestep" else snn_utils.reset
    reset(net)
    out = torch.stack([net(x) for x in x_seq])
    reset(net)
    return out


def wrapped(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TimeWrapper(adapt(BUILDERS[name]()), T, input_shape=SHAPE)


@pytest.fixture(scope="module")
def digits():
    train, test = build_dataset("digits")
    return (
        IndexedDataset(train.data[:256], train.targets[:256], train.info),
        IndexedDataset(test.data[:128], test.targets[:128], test.info),
    )


def batches_of(dataset, count: int = 2) -> list[torch.Tensor]:
    return [x for x, _, _ in itertools.islice(DataLoader(dataset, batch_size=64), count)]


def config(**overrides):
    return make_config({"dataset": "digits", "epochs": 1, "batch_size": 64, "lr": 2e-3, "progress": False, **overrides})


# ----------------------------------------------------------------------------------- adapters
@pytest.mark.parametrize("name", BUILDERS)
def test_adapted_model_computes_exactly_what_the_original_does(name):
    torch.manual_seed(0)
    original = BUILDERS[name]().eval()
    adapted = adapt(copy.deepcopy(original))
    assert isinstance(adapted, TimeSequential)
    x1 = (torch.rand(T, 5, *SHAPE) * 2).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    expected = reference(name, original, x1)
    got = adapted(x2)
    assert torch.equal(got, expected)
    grad = torch.randn_like(got)
    (expected * grad).sum().backward()
    (got * grad).sum().backward()
    # same gradients (time folded into the batch changes the summation order of the matmuls: rounding only)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-7)
    # no state survives a call: a second call (also of a deep copy) gives the same result
    assert torch.equal(adapted(x2), got)
    assert torch.equal(copy.deepcopy(adapted)(x2), got)


@pytest.mark.parametrize("name", BUILDERS)
def test_state_dict_keys_do_not_change(name):
    torch.manual_seed(0)
    original = BUILDERS[name]()
    adapted = adapt(copy.deepcopy(original))
    assert list(adapted.state_dict()) == list(original.state_dict())
    torch.manual_seed(1)
    other = BUILDERS[name]()
    adapted.load_state_dict(other.state_dict())  # the original model's checkpoint loads into the adapted one
    original.load_state_dict(adapted.state_dict())  # and back
    for key, value in other.state_dict().items():
        assert torch.equal(original.state_dict()[key], value)


def test_spikingjelly_membrane_and_surrogate_match_spikeprunes_lif():
    torch.manual_seed(0)
    adapter = adapt(neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m"))
    ours = LIF(tau=2.0, surrogate=ATan())
    adapter.record = ours.record = True
    x = torch.randn(T, 6, 20) * 2
    assert torch.equal(adapter(x), ours(x))
    torch.testing.assert_close(adapter.records["membrane"], ours.records["membrane"], rtol=0, atol=1e-6)
    dist = torch.linspace(-2, 2, 41)
    torch.testing.assert_close(adapter.surrogate.derivative(dist), ours.surrogate.derivative(dist))
    for function in (surrogate.ATan(alpha=3.0), surrogate.Sigmoid(alpha=5.0), surrogate.Erf()):
        # the closed forms (ATan, Sigmoid) and autograd through SpikingJelly's own function agree
        adapter.neuron.surrogate_function = function
        fast, exact = adapter.surrogate, FrameworkSurrogate(function)
        assert isinstance(fast, FrameworkSurrogate) == isinstance(function, surrogate.Erf)
        torch.testing.assert_close(fast.derivative(dist), exact.derivative(dist))
    assert adapter.decay == ours.decay == 0.5 and adapter.decay_input and adapter.v_reset == 0.0
    assert isinstance(adapter, SpikingNeuron) and adapter.norm is None


def test_snntorch_membrane_is_the_potential_that_fired():
    torch.manual_seed(0)
    leaky = snn.Leaky(beta=0.8, threshold=1.0, spike_grad=snn.surrogate.atan(alpha=2.0), init_hidden=True)
    adapter = adapt(leaky)
    adapter.record = True
    x = torch.randn(T, 6, 20) * 2
    spikes = adapter(x)
    h = adapter.records["membrane"]
    assert torch.equal(spikes, (h > 1.0).float())  # snnTorch fires on h − θ > 0
    mem, previous = torch.zeros(6, 20), torch.zeros(6, 20)  # subtract reset, one step late, not decayed
    for t in range(T):
        mem = 0.8 * mem + x[t] - previous
        previous = (mem > 1.0).float()
        torch.testing.assert_close(h[t], mem)
    dist = torch.linspace(-2, 2, 41)
    torch.testing.assert_close(adapter.surrogate.derivative(dist), ATan().derivative(dist))
    assert adapter.decay == pytest.approx(0.8) and not adapter.decay_input and adapter.detach_reset
    assert adapter.v_reset is None and adapt(snn.Leaky(beta=0.5, reset_mechanism="zero")).v_reset == 0.0


def test_unknown_neurons_and_layouts_are_named():
    with pytest.raises(SpikepruneError, match=r"snntorch\._neurons\.alpha\.Alpha.*supported neurons: .*LIFNode"):
        adapt(nn.Sequential(nn.Linear(4, 4), snn.Alpha(alpha=0.9, beta=0.8)))
    with pytest.raises(SpikepruneError, match=r"QIFNode.*'1'"):
        adapt(nn.Sequential(nn.Linear(4, 4), neuron.QIFNode()))
    with pytest.raises(SpikepruneError, match="no SpikingJelly or snnTorch neuron"):
        adapt(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(SpikepruneError, match="reset_delay"):
        adapt(snn.Leaky(beta=0.5, reset_delay=False))

    with pytest.raises(SpikepruneError, match=r"TimeWrapper expects input \[B, 1, 8, 8\]"):
        wrapped("snntorch")(torch.zeros(3, 64))


def test_multistep_layers_called_from_custom_code_are_folded():
    from spikeprune.interop import TimeFolded

    class Custom(nn.Module):  # a multi-step synapse called from forward code, not from an nn.Sequential
        def __init__(self) -> None:
            super().__init__()
            self.fc = sj_layer.Linear(4, 4, step_mode="m")
            self.lif = neuron.LIFNode(step_mode="m")

        def forward(self, x):
            return self.lif(self.fc(x))

    torch.manual_seed(0)
    net = Custom()
    original = copy.deepcopy(net)
    x = torch.rand(3, 5, 4) * 3
    expected = original(x)
    adapted = adapt(net)
    assert isinstance(adapted.fc, TimeFolded) and list(adapted.state_dict()) == list(original.state_dict())
    seen = []
    adapted.fc.layer.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    torch.testing.assert_close(adapted(x), expected)
    assert seen == [torch.Size([15, 4])]  # hooks see [T·B, ...], as everywhere else


# ----------------------------------------------------------------------------------- profile
def test_profile_counts_match_a_brute_force_count(digits):
    _, test = digits
    model = wrapped("sj-multistep").eval()
    with torch.no_grad():  # untrained: strengthen the stem so that the hidden layers see spikes
        model.model[0].weight.mul_(4)
    report = profile(model, test, batch_size=64)
    totals: dict[str, int] = {}  # brute force: the reference count of every call, summed
    spikes: dict[str, int] = {}

    def count(name: str, module: nn.Module):
        def hook(m, inputs, output):
            if isinstance(m, ForeignNeuron):
                spikes[name] = spikes.get(name, 0) + int(output.sum())
            else:
                totals[name] = totals.get(name, 0) + effective_ops(m, inputs[0])

        return module.register_forward_hook(hook)

    handles = [
        count(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear | ForeignNeuron)
    ]
    with torch.no_grad():
        for x, _, _ in DataLoader(test, batch_size=64):
            model(x)
    for handle in handles:
        handle.remove()
    assert {layer.name: layer.effective_synops * len(test) for layer in report.layers} == pytest.approx(totals)
    assert report.layers[0].macs > 0 and report.layers[1].acs > 0  # real-valued stem, spiking hidden input
    assert {n.name: n.spikes_per_sample * len(test) for n in report.neurons} == pytest.approx(spikes)
    assert report.timesteps == T and [n.timesteps for n in report.neurons] == [T, T]


# ----------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", BUILDERS)
def test_sadp_trains_foreign_models(name, digits):
    train, test = digits
    model = wrapped(name)
    pruner = SADP(prune_ratio=0.5, epochs=3)
    trainer = Trainer(config(epochs=3), None, model=model, train_set=train, test_set=test, data_pruner=pruner)
    summary = trainer.fit()
    assert summary["examples_visited"] < 3 * len(train)
    assert [r["examples_visited"] for r in trainer.history][1] == 128  # the pruned epoch: (1 − r)·N
    assert torch.isfinite(pruner.scores).all() and (pruner.scores > 0).all()
    assert all(r["scoring_seconds"] > 0 for r in trainer.history)  # the probe ran on the adapted neurons


@pytest.mark.parametrize("name,method", [("sj-multistep", "slamp"), ("sj-singlestep", "lamp"), ("snntorch", "global")])
def test_unstructured_pruning_and_retraining(name, method, digits):
    train, test = digits
    model = wrapped(name)
    Trainer(config(), None, model=model, train_set=train, test_set=test).fit()
    masks, factors = prune_model(model, method, 0.8, batches=batches_of(train))
    total = sum(mask.numel() for mask in masks.values())
    assert sum(int(mask.sum()) for mask in masks.values()) == round(0.2 * total)  # exact target
    if method == "slamp":
        assert all(f >= 1.0 for f in factors.values()) and max(factors.values()) > 1.0
    Trainer(config(), None, model=model, train_set=train, test_set=test, sparsifier=FixedMasks(masks)).fit()
    finalize(model)
    modules = dict(model.named_modules())
    for layer_name, mask in masks.items():
        assert torch.all(modules[layer_name].weight[mask == 0] == 0)
    assert profile(model, test).totals["density"] < 0.25


def test_nm_magnitude_one_shot_with_retraining(digits):
    train, test = digits
    model = wrapped("snntorch")
    masks, _ = prune_model(model, "nm-magnitude", nm="2:4", batches=batches_of(train))
    Trainer(config(), None, model=model, train_set=train, test_set=test, sparsifier=FixedMasks(masks)).fit()
    finalize(model)
    assert set(validate_nm(model, 2, 4, list(masks)).values()) == {2}


@pytest.mark.parametrize("name", ["sj-multistep", "snntorch"])
def test_spikenm_with_eid_reads_the_adapters(name, digits):
    train, test = digits
    model = wrapped(name)
    sparsifier = SpikeNM(2, 4, eid_weight=0.1, eid_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 1-channel stem conv stays dense (input dim not a multiple of 4)
        trainer = Trainer(config(), None, model=model, train_set=train, test_set=test, sparsifier=sparsifier)
    trainer.fit()
    with_neuron = [n for n, _ in sparsifier.layers][:-1]  # every N:M layer but the readout has a neuron after it
    assert sorted(sparsifier.credits) == sorted(with_neuron)
    for credit in sparsifier.credits.values():
        assert torch.isfinite(credit).all() and credit.sum() > 0
    finalize(model)
    assert max(validate_nm(model, 2, 4, [n for n, _ in sparsifier.layers]).values()) <= 2


# ----------------------------------------------------------------------------------- README
def readme_examples() -> dict[str, str]:
    """Code blocks of the README that follow an ``<!-- example: NAME -->`` marker."""
    pattern = re.compile(r"<!-- example: ([\w-]+) -->\s*```python\n(.*?)```", re.S)
    return dict(pattern.findall(README.read_text()))


def test_every_python_block_of_the_readme_is_a_tested_example():
    blocks = re.findall(r"```python\n", README.read_text())
    assert len(blocks) == len(readme_examples()) == 4


@pytest.mark.parametrize("name", ["python", "own-loop", "spikingjelly", "snntorch"])
def test_readme_examples_run(name, tmp_path, monkeypatch, capsys):
    code = readme_examples()[name]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{name}", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    if name == "own-loop":
        assert "epoch 1: trained on 718 of 1437 examples" in printed
        return
    assert (tmp_path / "runs").is_dir()
    if name != "python":
        assert "Synaptic layers" in printed  # the profile table was printed

"""SpikingJelly's own model zoo (ResNet, SEW-ResNet, VGG) through adapt: train, SADP, SLAMP, N:M, profile.

Their forward code calls multi-step layers directly (not through an nn.Sequential); ``adapt`` folds
time where those layers run. The zoo modules import torchvision only for
``load_state_dict_from_url``; a stand-in for that one name is put in ``sys.modules`` (torchvision
itself is never installed).
"""

from __future__ import annotations

import copy
import sys
import types

import pytest
import torch
from torch import nn

from spikeprune.data import DatasetInfo, IndexedDataset
from spikeprune.errors import SpikepruneError
from spikeprune.interop import TimeFolded, TimeWrapper, adapt
from spikeprune.metrics import profile
from spikeprune.sparsity import FixedMasks, finalize, prune_model
from spikeprune.sparsity.nm import validate_nm
from spikeprune.sparsity.spikenm import SpikeNM
from spikeprune.train import Trainer, make_config

pytest.importorskip("spikingjelly.activation_based.layer")


@pytest.fixture(scope="module")
def zoo():
    if "torchvision" not in sys.modules:  # a stand-in for the one name the zoo imports from torchvision
        torchvision = types.ModuleType("torchvision")
        torchvision.models = types.ModuleType("torchvision.models")
        torchvision.models.utils = types.ModuleType("torchvision.models.utils")

        def load_state_dict_from_url(*args, **kwargs):
            raise RuntimeError("pretrained weights are not downloaded in the tests")

        torchvision.models.utils.load_state_dict_from_url = load_state_dict_from_url
        sys.modules.update(
            {"torchvision": torchvision, "torchvision.models": torchvision.models,
             "torchvision.models.utils": torchvision.models.utils}
        )  # fmt: skip
    from spikingjelly.activation_based import functional, neuron, surrogate
    from spikingjelly.activation_based.model import sew_resnet, spiking_resnet, spiking_vgg

    def build(name: str) -> nn.Module:
        builder = {
            "spiking_resnet18": spiking_resnet.spiking_resnet18,
            "sew_resnet18": lambda **kw: sew_resnet.sew_resnet18(cnf="ADD", **kw),
            "spiking_vgg11_bn": spiking_vgg.spiking_vgg11_bn,
        }[name]
        torch.manual_seed(0)
        net = builder(spiking_neuron=neuron.LIFNode, surrogate_function=surrogate.ATan(), detach_reset=True,
                      num_classes=10)  # fmt: skip
        functional.set_step_mode(net, "m")
        return net

    return build, functional


T, SHAPE = 2, (3, 32, 32)


def tiny_data(count: int = 32) -> IndexedDataset:
    torch.manual_seed(1)
    info = DatasetInfo("toy", SHAPE, 10, count, count, "random colour images", "this test")
    return IndexedDataset(torch.rand(count, *SHAPE), torch.randint(0, 10, (count,)), info)


SETTINGS = {"dataset": "digits", "epochs": 1, "batch_size": 16, "lr": 1e-3, "progress": False}


@pytest.mark.parametrize("name", ["spiking_resnet18", "sew_resnet18", "spiking_vgg11_bn"])
def test_zoo_models_adapt_with_the_same_function_and_keys(zoo, name):
    build, functional = zoo
    net = build(name)
    original = copy.deepcopy(net).eval()
    keys = list(net.state_dict())
    model = TimeWrapper(adapt(net), timesteps=T, input_shape=SHAPE).eval()
    assert any(isinstance(m, TimeFolded) for m in model.modules())  # layers called from custom forward code
    assert list(model.model.state_dict()) == keys  # pretrained SpikingJelly weights still load
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        expected = original(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)
        functional.reset_net(original)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    report = profile(model, tiny_data(8), batch_size=8)
    assert report.totals["effective_synops"] > 0 and len(report.layers) >= 10
    if name == "spiking_vgg11_bn":  # its 120M-weight classifier is only pruned here: 2:4 by magnitude
        masks, _ = prune_model(model, "nm-magnitude", nm="2:4")
        finalize(model)
        assert set(validate_nm(model, 2, 4, list(masks)).values()) == {2}


@pytest.mark.parametrize("name", ["spiking_resnet18", "sew_resnet18"])
def test_zoo_resnets_train_with_sadp_then_prune_with_slamp_and_2_4(zoo, name):
    build, _ = zoo
    model = TimeWrapper(adapt(build(name)), timesteps=T, input_shape=SHAPE)
    data = tiny_data()
    sadp = make_config(
        {
            **SETTINGS,
            "epochs": 2,
            "data_pruning": "sadp",
            "prune_ratio": 0.5,
            "data_pruning_options": {"anneal_fraction": 0},
        }
    )
    trainer = Trainer(sadp, None, model=model, train_set=data, test_set=data)
    trainer.fit()
    assert [r["examples_visited"] for r in trainer.history] == [32, 16]  # warm-up, then half
    batches = [data.data[:16]]
    masks, factors = prune_model(model, "slamp", 0.8, batches=batches)
    assert factors and all(f >= 1.0 - 1e-9 for f in factors.values())
    assert "model.conv1.layer" in masks  # the stem conv, called from the ResNet's own forward
    Trainer(make_config(SETTINGS), None, model=model, train_set=data, test_set=data, sparsifier=FixedMasks(masks)).fit()
    finalize(model)
    kept = sum(int((module.weight != 0).sum()) for module in model.modules() if isinstance(module, nn.Conv2d))
    total = sum(module.weight.numel() for module in model.modules() if isinstance(module, nn.Conv2d))
    assert kept / total < 0.3
    nm_model = TimeWrapper(adapt(build(name)), timesteps=T, input_shape=SHAPE)
    sparsifier = SpikeNM(2, 4, eid_weight=0.1, eid_every=1)
    Trainer(make_config(SETTINGS), None, model=nm_model, train_set=data, test_set=data, sparsifier=sparsifier).fit()
    assert sparsifier.credits  # EID found the neuron after each conv through the folded layers
    finalize(nm_model)
    worst = validate_nm(nm_model, 2, 4)
    assert max(v for v in worst.values() if v is not None) <= 2 and worst["model.conv1.layer"] is None  # 3 channels


def test_adapt_changes_nothing_when_it_refuses(zoo):
    build, _ = zoo
    net = build("spiking_resnet18")

    class Exotic(nn.Module):  # a neuron class of SpikingJelly's that adapt does not know
        pass

    from spikingjelly.activation_based import neuron

    net.layer2[1].sn2 = neuron.QIFNode() if hasattr(neuron, "QIFNode") else neuron.KLIFNode()
    before = {name: type(m) for name, m in net.named_modules()}
    with pytest.raises(SpikepruneError, match="is not supported"):
        adapt(net)
    assert {name: type(m) for name, m in net.named_modules()} == before

"""Activation checkpointing: the same losses, gradients and BatchNorm statistics, for less memory."""

import copy

import pytest
import torch
import torch.nn.functional as F

from spikeprune.models import build_model
from spikeprune.models.base import checkpoint_segments
from spikeprune.train import Trainer, make_config

MODELS = [
    ("resnet19", (3, 16, 16), {"width": 1 / 16}),
    ("vgg11", (3, 32, 32), {"width": 1 / 16}),
    ("scnn", (1, 12, 12), {"channels": (4, 8), "hidden": 16}),
    ("vggsnn", (3, 2, 16, 16), {"width": 1 / 32, "encoder": "frames"}),
]


def saved_bytes(fn) -> int:
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


@pytest.mark.parametrize("name,shape,options", MODELS, ids=[m[0] for m in MODELS])
def test_checkpointing_changes_nothing_but_memory(name, shape, options):
    torch.manual_seed(0)
    plain = build_model(name, input_shape=shape, timesteps=3, **options).train()
    checkpointed = build_model(name, input_shape=shape, timesteps=3, checkpoint_activations=True, **options).train()
    checkpointed.load_state_dict(plain.state_dict())
    x, y = torch.rand(4, *shape) * 2, torch.tensor([0, 1, 2, 3])
    losses = []
    for model in (plain, checkpointed):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    for (key, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=key)
    for (key, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{key} differs: recomputation must not update BatchNorm statistics twice"
    assert len(checkpoint_segments(checkpointed.body)) >= 3
    kept = [saved_bytes(lambda m=m: m(x)) for m in (plain, checkpointed)]
    assert kept[1] < 0.6 * kept[0], kept


def test_checkpointed_sadp_training_matches_plain_training(tmp_path):
    base = dict(dataset="digits", model="scnn", model_options={"channels": [4, 8], "hidden": 16}, timesteps=3,
                epochs=2, batch_size=64, data_pruning="sadp", prune_ratio=0.5, progress=False)  # fmt: skip
    plain = Trainer(make_config(base), tmp_path / "plain")
    options = {**base["model_options"], "checkpoint_activations": True}
    checkpointed = Trainer(make_config({**base, "model_options": options}), tmp_path / "checkpointed")
    summaries = [plain.fit(), checkpointed.fit()]
    assert summaries[0]["examples_visited"] == summaries[1]["examples_visited"]
    for a, b in zip(plain.model.state_dict().values(), checkpointed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    probe_copy = copy.deepcopy(checkpointed.model)  # still an ordinary module afterwards
    assert probe_copy(torch.rand(2, 1, 8, 8)).shape == (2, 10)

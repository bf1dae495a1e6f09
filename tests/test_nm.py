"""N:M utilities, SR-STE and SpikeNM: block layout, exact-N masks, sampler distribution, training paths."""

import json
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spikeprune.data import DatasetInfo, IndexedDataset
from spikeprune.errors import SpikepruneError
from spikeprune.snn import LIF, PerStep
from spikeprune.sparsity import finalize, prunable_layers
from spikeprune.sparsity.nm import (
    compress_nm,
    decompress_nm,
    from_blocks,
    magnitude_nm_mask,
    nm_blocks,
    nm_layers,
    parse_nm,
    topn_block_mask,
    validate_nm,
)
from spikeprune.sparsity.spikenm import SpikeNM, block_scores, gumbel_topn
from spikeprune.train import Trainer, load_trained, make_config

PATTERNS = [(2, 4), (1, 4), (2, 8), (1, 8), (4, 16), (1, 16)]


@st.composite
def weights_and_pattern(draw):
    n, m = draw(st.sampled_from(PATTERNS))
    out = draw(st.integers(1, 6))
    groups = draw(st.integers(1, 3))
    conv = draw(st.booleans())
    shape = (out, groups * m, draw(st.integers(1, 3)), draw(st.integers(1, 3))) if conv else (out, groups * m)
    seed = draw(st.integers(0, 10_000))
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)), n, m


@settings(max_examples=60, deadline=None)
@given(weights_and_pattern())
def test_blocks_round_trip_and_masks_have_exactly_n(case):
    weight, n, m = case
    blocks = nm_blocks(weight, m)
    assert torch.equal(from_blocks(blocks, weight.shape), weight)
    # conv blocks run along C at one kernel tap
    if weight.dim() == 4:
        assert torch.equal(blocks[0, 0], weight[0, :m, 0, 0])
    mask = magnitude_nm_mask(weight, n, m)
    assert torch.all(nm_blocks(mask, m).sum(-1) == n)
    sparse = weight * mask
    values, indices = compress_nm(sparse, n, m)
    assert torch.equal(decompress_nm(values, indices, tuple(weight.shape), m), sparse)


@settings(max_examples=40, deadline=None)
@given(weights_and_pattern(), st.floats(0.05, 2.0))
def test_sampler_exact_n_binary_forward_and_gradients(case, tau):
    weight, n, m = case
    logits = nm_blocks(weight, m).clone().requires_grad_()
    mask = gumbel_topn(logits, n, tau)
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.all(mask.detach().sum(-1) == n)
    (mask * torch.randn_like(mask)).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_gumbel_topn_is_sampling_without_replacement(tau):
    """Pair frequencies of the hard mask match drawing 2 of 4 without replacement from softmax(π/τ)."""
    torch.manual_seed(0)
    logits = torch.tensor([1.5, 0.5, 0.0, -1.0])
    draws = 40_000
    masks = gumbel_topn(logits.expand(draws, 4).clone(), 2, tau=tau).detach()
    p = torch.softmax(logits / tau, 0)
    for i in range(4):
        for j in range(i + 1, 4):
            expected = float(p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j]))
            observed = float((masks[:, i] * masks[:, j]).mean())
            assert abs(observed - expected) < 4 * (expected * (1 - expected) / draws) ** 0.5 + 1e-3


def test_layers_that_do_not_fit_are_named():
    model = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = nm_layers(model, 4)
    assert [name for name, _ in chosen] == ["1"]
    assert any("0 (input dim 6)" in str(w.message) for w in caught)
    padded = magnitude_nm_mask(torch.randn(3, 6), 2, 4, pad=True)
    assert torch.all(nm_blocks(padded, 4, pad=True).sum(-1) <= 2)
    with pytest.raises(SpikepruneError, match="N:M pattern"):
        parse_nm("4:2")
    with pytest.raises(SpikepruneError, match="more than N"):
        validate_nm(nn.Sequential(nn.Linear(8, 2)), 2, 4)


def test_topn_block_mask_counts():
    scores = torch.randn(5, 7, 8)
    assert torch.all(topn_block_mask(scores, 3).sum(-1) == 3)


SMALL = dict(dataset="digits", model="mlp", model_options={"hidden": [64, 32]}, timesteps=2, epochs=3, lr=5e-3,
             batch_size=64, progress=False, sparsity="nm", nm="2:4")  # fmt: skip


@pytest.mark.parametrize(
    "method,options",
    [("srste", {}), ("spikenm", {}), ("spikenm", {"eid_weight": 0.1, "eid_every": 2, "freeze_epochs": 1})],
)
def test_training_with_learned_nm(tmp_path, method, options):
    config = make_config({**SMALL, "nm_method": method, "sparsity_options": options})
    trainer = Trainer(config, tmp_path / "run")
    summary = trainer.fit()
    assert summary["test_accuracy"] > 0.5
    names = [name for name, _ in trainer.sparsifier.layers]
    assert names == ["stem.1", "body.1.0", "body.3.0"]  # every layer's input dim is a multiple of 4
    trainer.model.eval()
    assert max(validate_nm(trainer.model, 2, 4, names).values()) <= 2
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("mask_flip_rate" in record for record in log)
    if method == "spikenm":
        assert all(0 <= r["sampling_entropy"] <= r["max_entropy"] + 1e-9 for r in log)
        if options:
            assert trainer.sparsifier.credits and log[-1]["mask_flip_rate"] == 0.0  # frozen last epoch
    reloaded = load_trained(tmp_path / "run", device="cpu")
    assert reloaded.evaluate()["test_accuracy"] == summary["test_accuracy"]
    finalize(reloaded.model)
    assert max(validate_nm(reloaded.model, 2, 4, names).values()) <= 2
    assert not any("nm_logits" in key or "weight_orig" in key for key in reloaded.model.state_dict())
    zeros = {name: float((m.weight == 0).float().mean()) for name, m in prunable_layers(reloaded.model)}
    assert all(zeros[name] >= 0.5 for name in names)


def test_prune_nm_magnitude_cli(tmp_path):
    dense = tmp_path / "dense"
    Trainer(make_config({**SMALL, "sparsity": "none"}), dense).fit()
    out = tmp_path / "asp"
    args = ["prune", "--checkpoint", str(dense), "--method", "nm-magnitude", "--nm", "2:4", "--finetune-epochs", "1"]
    result = subprocess.run([sys.executable, "-m", "spikeprune.cli", *args, "--out", str(out)], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pruning"]["nm"] == "2:4"
    profile = json.loads((out / "profile.json").read_text())
    assert profile["totals"]["footprint_compressed_bytes"] < profile["totals"]["footprint_dense_bytes"]
    model = load_trained(out, device="cpu").model
    assert max(validate_nm(model, 2, 4, ["stem.1", "body.1.0", "body.3.0"]).values()) <= 2
    bad = subprocess.run([sys.executable, "-m", "spikeprune.cli", "prune", "--checkpoint", str(dense), "--method",
                          "nm-magnitude", "--out", str(tmp_path / "x")], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "--nm" in bad.stderr


def test_cli_train_learned_nm(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({k: v for k, v in SMALL.items() if k not in ("sparsity", "nm")}))
    args = ["train", "--config", str(config), "--nm", "1:4", "--nm-method", "spikenm"]
    result = subprocess.run([sys.executable, "-m", "spikeprune.cli", *args, "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.3


@pytest.mark.parametrize("dense_gradient", [False, True])
def test_spikenm_forward_is_masked_and_gradients_flow(dense_gradient):
    """Forward uses W ⊙ m exactly; the logits always get a gradient; unkept weights only with dense_gradient."""
    torch.manual_seed(0)
    layer = nn.Linear(8, 3)
    sparsifier = SpikeNM(2, 4, dense_gradient=dense_gradient)
    sparsifier.attach(nn.Sequential(layer))
    layer.train()
    x = torch.randn(5, 8)
    out = layer(x)
    kept = (layer.weight.detach() != 0).float()
    assert torch.all(nm_blocks(kept, 4).sum(-1) == 2)  # a fresh sample, exactly N of M
    assert torch.allclose(out, x @ (layer.weight_orig.detach() * kept).t() + layer.bias)
    out.square().sum().backward()
    assert layer.nm_logits.grad is not None and layer.nm_logits.grad.abs().sum() > 0
    unkept_grad = (layer.weight_orig.grad * (1 - kept)).abs().sum()
    assert (unkept_grad > 0) if dense_gradient else (unkept_grad == 0)


def test_finalize_deploys_the_current_logits():
    """Masks are written lazily (epoch end); finalize must still deploy top-N of the logits as they are now."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 3))
    SpikeNM(2, 4).attach(model)
    layer = model[0]
    with torch.no_grad():
        layer.nm_logits.copy_(torch.randn_like(layer.nm_logits))  # the logits moved; no epoch has ended
    mask = from_blocks(topn_block_mask(block_scores(layer, 3.0).detach(), 2), layer.weight_orig.shape)
    expected = layer.weight_orig.detach() * mask
    finalize(model)
    assert torch.equal(layer.weight.detach(), expected)


@pytest.mark.parametrize("prior", [0.0, 2.0])
def test_magnitude_prior_makes_the_mask_follow_the_weights(prior):
    """With flat logits the mask is the weights' top-N magnitudes when β > 0 and ignores them when β = 0:
    in the sampler (near-zero τ: no exploration) and in the mask deployed at each epoch end."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 4))
    sparsifier = SpikeNM(2, 4, init="uniform", magnitude_prior=prior)
    sparsifier.attach(model)
    layer = model[0]
    layer.nm_tau = 1e-4
    x = torch.randn(3, 16)
    flat = from_blocks(topn_block_mask(torch.zeros_like(layer.nm_logits), 2), layer.weight_orig.shape)
    for _ in range(2):  # the weights change between epochs; a prior-driven mask moves with them
        with torch.no_grad():
            layer.weight_orig.copy_(torch.randn_like(layer.weight_orig))
        by_magnitude = magnitude_nm_mask(layer.weight_orig.detach(), 2, 4)
        layer.train()
        layer(x)
        if prior:
            assert torch.equal((layer.weight.detach() != 0).float(), by_magnitude)
        sparsifier.on_epoch_end()
        layer.eval()
        out = layer(x)
        used = (layer.weight.detach() != 0).float()
        assert torch.equal(used, by_magnitude if prior else flat)
        assert torch.allclose(out, x @ (layer.weight_orig.detach() * used).t() + layer.bias)
    with pytest.raises(SpikepruneError, match="magnitude_prior"):
        SpikeNM(2, 4, magnitude_prior=-1.0)


def test_eid_loss_is_the_mean_block_kl_to_the_credit_targets():
    """λ_EID · mean over layers of mean_b KL(q_b ‖ softmax(π_b)), with q_b = softmax(c_b / (T_q · mean c)).

    The credits come in through ``load_state_dict``, as on a resumed run: the targets are rebuilt from them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
    sparsifier = SpikeNM(2, 4, eid_weight=0.5, eid_temperature=0.7)
    sparsifier.attach(model)
    layers = [module for _, module in sparsifier.layers]
    credits = {name: torch.rand_like(module.nm_logits) for name, module in sparsifier.layers}
    sparsifier.load_state_dict({"credits": credits, "steps": 0})
    expected = []
    for name, layer in sparsifier.layers:
        target = torch.softmax(credits[name] / (0.7 * credits[name].mean()), dim=-1)
        log_p = torch.log_softmax(layer.nm_logits, dim=-1)
        expected.append(torch.nn.functional.kl_div(log_p, target, reduction="none").sum(-1).mean())
    loss = sparsifier.regularization()
    assert torch.allclose(loss, 0.5 * torch.stack(expected).mean(), rtol=1e-5)
    loss.backward()
    assert all(layer.nm_logits.grad is not None and layer.nm_logits.grad.abs().sum() > 0 for layer in layers)


def test_validate_nm_by_default_checks_the_pruned_layers_and_reports_the_dense_ones():
    from spikeprune.sparsity.masks import attach_masks, finalize
    from spikeprune.sparsity.nm import magnitude_nm_mask

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 4))
    attach_masks(model, {name: magnitude_nm_mask(model.get_submodule(name).weight, 2, 4) for name in ("1", "3")})
    assert validate_nm(model, 2, 4) == {"0": None, "1": 2, "3": 2}  # masked layers checked, the 3-channel conv dense
    finalize(model)
    assert validate_nm(model, 2, 4) == {"0": None, "1": 2, "3": 2}  # folded: the layers N:M would prune
    with torch.no_grad():
        model[1].weight.fill_(1.0)
    with pytest.raises(SpikepruneError, match="layer 1 has a block with 4 non-zeros"):
        validate_nm(model, 2, 4)


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AvgPool2d(2)])
def test_eid_routes_eligibility_back_through_pooling(pool):
    """ψ after the pooling, routed back, gives the eligibility of the linearised conv → pool map."""
    from spikeprune.sparsity.spikenm import _eligibility, _route_back

    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1)
    conv.weight_orig = conv.weight  # what a masked layer exposes
    x, trace = torch.rand(6, 4, 8, 8), torch.rand(6, 4, 8, 8)
    output = conv(x).detach()
    psi = torch.rand(6, 8, 4, 4)
    credit = _eligibility(conv, trace, _route_back([pool], output, psi, steps=1, per_step=True))
    # reference: d/dW Σ ψ · P(conv(trace; W)), P the pooling linearised at the real output
    weight = conv.weight.detach().clone().requires_grad_(True)
    pre = torch.nn.functional.conv2d(trace, weight, padding=1)  # no bias: the eligibility is the weight's
    if isinstance(pool, nn.MaxPool2d):
        _, winners = torch.nn.functional.max_pool2d(output, 2, return_indices=True)
        pooled = pre.flatten(2).gather(2, winners.flatten(2)).view_as(psi)
    else:
        pooled = pool(pre)
    (reference,) = torch.autograd.grad((psi * pooled).sum(), weight)
    torch.testing.assert_close(credit, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", ["conv-pool-neuron", "conv-neuron-pool"])
def test_eid_on_an_snntorch_net_in_either_layer_order(order):
    snn = pytest.importorskip("snntorch")
    from spikeprune.interop import TimeWrapper, adapt
    from spikeprune.sparsity.spikenm import SpikeNM

    torch.manual_seed(0)

    def stage(c_in):
        conv, pool, leaky = nn.Conv2d(c_in, 8, 3, padding=1), nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True)
        return [conv, pool, leaky] if order == "conv-pool-neuron" else [conv, leaky, pool]

    net = nn.Sequential(*stage(4), *stage(8), nn.Flatten(), nn.Linear(8 * 2 * 2, 10))
    model = TimeWrapper(adapt(net), timesteps=3, input_shape=(4, 8, 8))
    sparsifier = SpikeNM(2, 4, eid_weight=0.1, eid_every=1)
    info = DatasetInfo("toy", (4, 8, 8), 10, 96, 96, "random 4-channel images", "this test")
    train = IndexedDataset(torch.rand(96, 4, 8, 8), torch.randint(0, 10, (96,)), info)
    config = make_config({"dataset": "digits", "epochs": 1, "batch_size": 32, "progress": False})
    Trainer(config, None, model=model, train_set=train, test_set=train, sparsifier=sparsifier).fit()
    assert sorted(sparsifier.credits) == ["model.0", "model.3"]  # both convs feed a neuron; the readout does not
    for credit in sparsifier.credits.values():
        assert torch.isfinite(credit).all() and credit.sum() > 0


def test_eid_refuses_a_layer_order_it_cannot_carry_back():
    from spikeprune.sparsity.spikenm import SpikeNM

    model = nn.Sequential(PerStep(nn.Linear(8, 8), nn.Softmax(dim=-1)), LIF(), PerStep(nn.Linear(8, 4)))
    with pytest.raises(SpikepruneError, match=r"through 0.1 \(Softmax\)"):
        SpikeNM(2, 4, eid_weight=0.1).attach(model)

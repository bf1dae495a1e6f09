"""The fused neurons against the step-by-step autograd reference and against SpikingJelly."""

import itertools

import pytest
import torch

from spikeprune.errors import SpikepruneError
from spikeprune.snn import IF, LIF, PLIF, ATan, MembraneBatchNorm, Sigmoid, Triangle, build_neuron, kernels

CASES = list(
    itertools.product(
        [LIF, IF, PLIF], [0.0, None, -0.3], [False, True], [True, False], [ATan, Sigmoid, Triangle], [False, True]
    )
)


def _pair(cls, v_reset, detach, decay_input, surrogate, learnable):
    options = dict(v_reset=v_reset, detach_reset=detach)
    if cls is not IF:
        options["decay_input"] = decay_input
    fused = cls(surrogate=surrogate(learnable=learnable), **options)
    loop = cls(surrogate=surrogate(learnable=learnable), backend="loop", **options)
    loop.load_state_dict(fused.state_dict())
    return fused, loop


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("cls,v_reset,detach,decay_input,surrogate,learnable", CASES)
def test_fused_equals_loop(cls, v_reset, detach, decay_input, surrogate, learnable, size):
    """Small inputs take the tensor path; large ones the compiled kernels where they apply."""
    torch.manual_seed(len(str((cls, v_reset, detach, decay_input, surrogate, learnable))))
    fused, loop = _pair(cls, v_reset, detach, decay_input, surrogate, learnable)
    shape = (6, 3, 5, 4) if size == "small" else (6, 3, 40, 30)
    x1 = (torch.randn(shape) * 1.5 + 0.5).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    s1, s2 = fused(x1), loop(x2)
    assert torch.equal(s1, s2)
    assert set(s1.unique().tolist()) <= {0.0, 1.0}
    grad = torch.randn_like(s1)
    (s1 * grad).sum().backward()
    (s2 * grad).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
    for p1, p2 in zip(fused.parameters(), loop.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-4, rtol=1e-4)


def test_the_compiled_kernels_run_where_they_apply(monkeypatch):
    pytest.importorskip("numba")
    calls = []
    forward = kernels.forward
    monkeypatch.setattr(kernels, "forward", lambda *args: calls.append(1) or forward(*args))
    x = torch.randn(4, 2, 64, 32)
    spikes = LIF()(x)
    assert calls == [1]
    torch.testing.assert_close(spikes, LIF(backend="fused-torch")(x), rtol=0, atol=0)
    for neuron in (PLIF(), LIF(surrogate=ATan(learnable=True)), LIF(backend="fused-torch")):
        neuron(x)  # learned leak or sharpness, or the tensor path asked for
    LIF()(x[:, :, :2, :2])  # too small to be worth it
    LIF()(x.double())
    assert calls == [1]


def test_gradient_reaches_learned_parameters():
    neuron = PLIF(surrogate=ATan(learnable=True))
    x = torch.randn(4, 8, 16) + 0.8
    neuron(x).sum().backward()
    assert neuron.w.grad is not None and neuron.w.grad != 0
    assert neuron.surrogate.alpha.grad is not None and neuron.surrogate.alpha.grad != 0


def test_stateless_between_calls():
    neuron = LIF()
    x = torch.randn(5, 2, 7) * 2
    assert torch.equal(neuron(x), neuron(x))


def test_recording_is_opt_in():
    neuron = LIF()
    x = torch.randn(3, 2, 4) * 2
    neuron(x)
    assert neuron.records == {}
    neuron.record = True
    spikes = neuron(x)
    assert torch.equal(neuron.records["spikes"], spikes)
    assert torch.equal(neuron.records["spikes"], (neuron.records["membrane"] >= 1.0).float())


def test_mpbn_inside_the_loop_and_folded_threshold():
    torch.manual_seed(0)
    norm = MembraneBatchNorm(4)
    neuron = LIF(norm=norm)
    x = torch.randn(5, 16, 4, 3, 3) * 2
    neuron.train()
    neuron(x)  # updates running statistics
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    neuron.eval()
    neuron.record = True
    spikes = neuron(x)
    # same spikes from the raw membrane against the folded per-channel threshold
    plain = LIF(backend="loop")
    plain.record = True
    threshold = norm.folded_threshold(1.0).view(1, 1, 4, 1, 1)
    # the membrane trajectory depends on spikes; rebuild it with a per-channel threshold by hand
    v = torch.zeros_like(x[0])
    rebuilt = []
    for xt in x:
        h = v + (xt - v) / 2.0
        s = (h >= threshold[0]).float()
        v = h * (1 - s)
        rebuilt.append(s)
    assert torch.equal(spikes, torch.stack(rebuilt))


def test_bad_input_is_named():
    with pytest.raises(SpikepruneError, match="time-first"):
        LIF()(torch.randn(5))
    with pytest.raises(SpikepruneError, match="tau"):
        LIF(tau=0.5)
    with pytest.raises(SpikepruneError, match="unknown neuron"):
        build_neuron("hodgkin")


@pytest.mark.parametrize("v_reset,detach", [(0.0, False), (0.0, True), (None, False), (None, True)])
@pytest.mark.parametrize("surrogate", ["ATan", "Sigmoid"])
def test_same_numbers_as_spikingjelly(v_reset, detach, surrogate):
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional, neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

    import spikeprune.snn as ours

    torch.manual_seed(3)
    reference = neuron.LIFNode(
        tau=2.0,
        v_reset=v_reset,
        detach_reset=detach,
        surrogate_function=getattr(sj_surrogate, surrogate)(),
        step_mode="m",
    )
    mine = LIF(tau=2.0, v_reset=v_reset, detach_reset=detach, surrogate=getattr(ours, surrogate)())
    x1 = (torch.randn(8, 4, 6, 5, 5) * 2).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    s1, s2 = reference(x1), mine(x2)
    functional.reset_net(reference)
    assert sj is not None
    assert torch.equal(s1, s2)
    grad = torch.randn_like(s1)
    (s1 * grad).sum().backward()
    (s2 * grad).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, atol=1e-5, rtol=0)

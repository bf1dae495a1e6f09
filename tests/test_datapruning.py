"""SADP sampling and baselines: exact budgets, unbiased weights, resume, DDP plans, user loops."""

import json
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spikeprune.datapruning import (
    SADP,
    UCB,
    DataPruner,
    InfoBatch,
    LossImportance,
    PruningSchedule,
    StepStats,
    UniformRandom,
    WithIndex,
    build_data_pruner,
)
from spikeprune.datapruning.sampling import (
    budget,
    floor_probabilities,
    inclusion_probabilities,
    systematic_sample,
    unbiased_weights,
)
from spikeprune.errors import SpikepruneError
from spikeprune.models import build_model
from spikeprune.train import Trainer, make_config
from spikeprune.train.trainer import parameter_digest


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 300),
    ratio=st.floats(0.0, 0.95),
    epsilon=st.floats(0.01, 1.0),
    power=st.floats(0.0, 8.0),
    seed=st.integers(0, 10_000),
)
def test_inclusion_probabilities_meet_budget(n, ratio, epsilon, power, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=generator, dtype=torch.float64) ** power
    k = budget(n, ratio)
    pi = inclusion_probabilities(floor_probabilities(scores, epsilon), k)
    assert torch.all(pi <= 1.0 + 1e-12) and torch.all(pi > 0)
    assert float(pi.sum()) == pytest.approx(k, abs=1e-9)
    chosen = systematic_sample(pi, generator)
    assert chosen.numel() == k and chosen.unique().numel() == k
    # larger scores never get smaller inclusion probabilities
    order = torch.argsort(scores)
    assert torch.all(pi[order][1:] >= pi[order][:-1] - 1e-12)


def test_weighted_sample_gradient_is_unbiased():
    torch.manual_seed(0)
    n, dim, k = 60, 5, 15
    gradients = torch.randn(n, dim, dtype=torch.float64) * torch.rand(n, 1, dtype=torch.float64) * 3
    scores = gradients.norm(dim=1) + 0.3 * torch.rand(n, dtype=torch.float64)
    pi = inclusion_probabilities(floor_probabilities(scores, 0.1), k)
    full = gradients.mean(0)
    generator = torch.Generator().manual_seed(1)
    draws = 20_000
    estimates = torch.empty(draws, dim, dtype=torch.float64)
    inclusion = torch.zeros(n, dtype=torch.float64)
    for j in range(draws):
        chosen = systematic_sample(pi, generator)
        weights = unbiased_weights(pi, chosen, n).double()
        estimates[j] = (weights[:, None] * gradients[chosen]).sum(0) / k
        inclusion[chosen] += 1
    mean = estimates.mean(0)
    stderr = estimates.std(0) / draws**0.5
    assert torch.all((mean - full).abs() <= 4 * stderr), (mean - full) / stderr
    # and the draw really has the prescribed inclusion probabilities
    assert torch.allclose(inclusion / draws, pi, atol=4 * (0.25 / draws) ** 0.5)
    # importance sampling beats uniform sampling on variance when scores follow gradient norms
    uniform = torch.empty(draws // 4, dim, dtype=torch.float64)
    for j in range(draws // 4):
        uniform[j] = gradients[torch.randperm(n, generator=generator)[:k]].mean(0)
    assert estimates.var(0).sum() < uniform.var(0).sum()


def test_schedule_and_theoretical_speedup():
    schedule = PruningSchedule(epochs=8, warmup_epochs=1, anneal_fraction=0.125)
    assert [schedule.is_full(e) for e in range(8)] == [True] + [False] * 6 + [True]
    assert schedule.theoretical_speedup(0.5) == pytest.approx(8 / (2 + 6 * 0.5))
    with pytest.raises(SpikepruneError):
        PruningSchedule(epochs=0)


def _stats(idx, logits, targets, losses=None):
    return StepStats(idx, targets, logits, losses if losses is not None else torch.rand(len(idx)))


def test_baseline_plans():
    n = 100
    random = UniformRandom(0.3, epochs=4, seed=1)
    assert len(random.plan(0, n).indices) == n  # warm-up
    plan = random.plan(1, n)
    assert len(plan.indices) == 70 and plan.indices.unique().numel() == 70 and plan.weights is None

    info = InfoBatch(0.5, epochs=8, seed=0)
    losses = torch.linspace(0, 1, n, dtype=torch.float64)
    info.observe(_stats(torch.arange(n), torch.zeros(n, 3), torch.zeros(n, dtype=torch.long), losses))
    plan = info.plan(1, n)
    below = losses < losses.mean()
    kept_below = below[plan.indices]
    assert torch.all(plan.weights[kept_below] == 2.0) and torch.all(plan.weights[~kept_below] == 1.0)
    assert set(torch.nonzero(~below).squeeze(1).tolist()) <= set(plan.indices.tolist())
    assert len(info.plan(7, n).indices) == n  # annealing: last epoch full

    ucb = UCB(0.5, epochs=4)
    ucb.observe(_stats(torch.arange(n), torch.zeros(n, 3), torch.zeros(n, dtype=torch.long), losses.float()))
    top = ucb.plan(1, n).indices
    assert set(top.tolist()) == set(range(50, 100))

    loss_is = LossImportance(0.5, epochs=4)
    logits = torch.randn(n, 3)
    targets = torch.randint(0, 3, (n,))
    loss_is.observe(_stats(torch.arange(n), logits, targets))
    plan = loss_is.plan(1, n)
    assert len(plan.indices) == 50 and plan.weights is not None


def test_registry_errors():
    with pytest.raises(SpikepruneError, match="unknown data pruning method"):
        build_data_pruner("coreset", 0.5, 4)
    with pytest.raises(SpikepruneError, match="bad option"):
        build_data_pruner("sadp", 0.5, 4, temperature=2)
    with pytest.raises(SpikepruneError, match="prune ratio"):
        build_data_pruner("sadp", 1.5, 4)
    assert type(build_data_pruner("none", 0.0, 4)) is DataPruner


SMALL = dict(
    dataset="digits",
    model="mlp",
    model_options={"hidden": [48]},
    timesteps=2,
    epochs=4,
    batch_size=64,
    lr=5e-3,
    progress=False,
    data_pruning="sadp",
    prune_ratio=0.5,
)


@pytest.mark.parametrize("method", ["sadp", "random", "loss", "ucb", "infobatch"])
def test_every_method_trains_with_the_trainer(tmp_path, method):
    trainer = Trainer(make_config({**SMALL, "data_pruning": method}), tmp_path / method)
    summary = trainer.fit()
    log = [json.loads(line) for line in (tmp_path / method / "log.jsonl").read_text().splitlines()]
    visited = [r["examples_visited"] for r in log]
    assert visited[0] == 1437 and visited[-1] == 1437  # warm-up / annealing epochs (InfoBatch: anneal only)
    assert all(v < 1437 for v in visited[1:-1])
    if method != "infobatch":
        assert visited[1:-1] == [budget(1437, 0.5)] * 2
    assert trainer.step == trainer.total_steps  # the schedule ended on the last real step
    assert summary["test_accuracy"] > 0.5


def test_sadp_resume_is_exact(tmp_path):
    from spikeprune.sparsity import Sparsifier

    class StopAt(Sparsifier):
        def on_epoch_start(self, epoch, epochs):
            if epoch == 2:
                raise KeyboardInterrupt

    straight = Trainer(make_config(SMALL), tmp_path / "a")
    straight.fit()
    interrupted = Trainer(make_config(SMALL), tmp_path / "b", sparsifier=StopAt())
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = Trainer(make_config(SMALL), tmp_path / "b")
    resumed.fit(resume=True)
    assert parameter_digest(resumed.model) == parameter_digest(straight.model)
    assert torch.equal(resumed.data_pruner.scores, straight.data_pruner.scores)


def test_cli_data_pruning_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({k: v for k, v in SMALL.items() if k not in ("data_pruning", "prune_ratio")}))
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--data-pruning", "sadp", "--prune-ratio", "0.3", "--out", str(run)]
    result = subprocess.run(
        [sys.executable, "-m", "spikeprune.cli", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data_pruning"] == "sadp" and summary["prune_ratio"] == 0.3
    bad = subprocess.run(
        [sys.executable, "-m", "spikeprune.cli", "train", "--data-pruning", "magic", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "data_pruning" in bad.stderr and "Traceback" not in bad.stderr


def test_ddp_ranks_share_the_plan(tmp_path):
    run = tmp_path / "ddp"
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**SMALL, "epochs": 3, "device": "cpu"}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "spikeprune.cli", "train", "--config", str(config), "--out", str(run),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    for record in log:
        first, second = record["plan_sha256"]
        assert first == second
    assert log[1]["examples_visited"] == 2 * ((budget(1437, 0.5) + 1) // 2)  # shards of the same subset
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameter_sha256"][0] == summary["parameter_sha256"][1]


def test_user_loop_in_a_few_lines():
    """The README's own-loop example, run as written (on random data)."""
    torch.manual_seed(0)
    images, labels = torch.rand(200, 1, 8, 8), torch.randint(0, 10, (200,))
    train_set = TensorDataset(images, labels)
    model = build_model("mlp", input_shape=(1, 8, 8), hidden=(32,), timesteps=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    epochs = 3

    pruner = SADP(prune_ratio=0.5, epochs=epochs)
    pruner.attach(model)
    visited = []
    for epoch in range(epochs):
        sampler = pruner.sampler(epoch, len(train_set))
        visited.append(len(sampler))
        for x, y, idx in DataLoader(WithIndex(train_set), batch_size=32, sampler=sampler):
            loss = pruner.loss(model(x), y, idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert visited == [200, 100, 200]
    assert bool(pruner.seen.all()) and torch.isfinite(pruner.scores).all()
    assert isinstance(model, nn.Module)

"""bench/data_pruning.py --quick: the equal-cost grid, verdicts, diagnostics and the timing phase, tiny."""

import json

import pytest
import torch


def test_data_pruning_benchmark_quick(tmp_path, bench_script):
    bench = bench_script("data_pruning")
    runs = tmp_path / "runs.jsonl"
    bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"data_pruning.{suffix}").stat().st_size > 0
    saved = json.loads((tmp_path / "data_pruning.json").read_text())
    assert saved["quick"] is True
    grid = saved["grid"]["mnist5k-scnn"]
    cells = {c["method"]: c for c in grid["cells"]}
    assert set(cells) == set(bench.METHODS)
    for method, cell in cells.items():
        if method == "infobatch":  # 2 epochs at 50%: its full first epoch spends the whole budget
            assert cell["feasible"] is False
            continue
        assert cell["cost_within_tolerance"], (method, cell["cost_mean"])
        assert cell["versus"]["full"]["verdict"] in {"better", "worse", "tied"}
        if method != "random":
            assert "random" in cell["versus"]
    quality = saved["score_quality"]["mnist5k-scnn"]
    assert all(-1.0 <= v <= 1.0 for v in quality["spearman"].values())
    assert quality["sadp_bound_holds_fraction"] == 1.0
    estimators = saved["variance"]["mnist5k-scnn"]["estimators"]
    assert estimators["oracle"]["mse"] <= estimators["uniform"]["mse"]
    report = (tmp_path / "data_pruning.md").read_text()
    assert "vs InfoBatch" in report
    sadp_cells = [c for e in saved["grid"].values() for c in e["cells"] if c["method"] == "sadp" and c["feasible"]]
    assert "SADP vs random: " in report and f"of {len(sadp_cells)} cells." in report
    # resumable: a second call runs nothing new
    lines = runs.read_text().splitlines()
    again = bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    assert runs.read_text().splitlines() == lines
    # its run time says that this call trained nothing, and what the resumed runs spent
    trained = sum(row.get("train_seconds", 0.0) for row in again["runs"]) / 60  # infeasible runs: none
    text = (tmp_path / "data_pruning.md").read_text()
    assert f"this invocation trained nothing: all {len(lines)} runs were resumed" in text
    assert f"all {len(lines)} runs together trained for {trained:.1f} min" in text
    # the timing phase writes its own file and joins the main report
    bench.main(["--quick", "--timing", "--out-dir", str(tmp_path)])
    timing = json.loads((tmp_path / "data_pruning_timing.json").read_text())
    sadp = timing["workloads"]["mnist5k-scnn"]["cells"]["sadp@0.5"]
    assert sadp["speedup"] > 0 and sadp["scoring_overhead_percent"] >= 0
    assert "## Speed" in (tmp_path / "data_pruning.md").read_text()


@pytest.mark.parametrize(("passes", "sizes"), [(1.5, [100, 50]), (0.6, [60]), (2.0, [100, 100])])
def test_fewer_epochs_cuts_the_last_pass(bench_script, passes, sizes):
    bench = bench_script("data_pruning")
    pruner = bench.FewerEpochs(passes, seed=3)
    plans = [pruner.plan(e, 100) for e in range(len(sizes))]
    assert [len(p.indices) for p in plans] == sizes == [pruner.epoch_size(e, 100) for e in range(len(sizes))]
    assert all(len(set(p.indices.tolist())) == len(p.indices) for p in plans)


def test_calibrated_infobatch_meets_its_target(bench_script):
    bench = bench_script("data_pruning")
    pruner = bench.CalibratedInfoBatch(epochs=3, target=600, seed=0)
    assert len(pruner.plan(0, 1000).indices) == 1000  # its first epoch is full
    pruner.scores = torch.cat([torch.full((800,), 0.1), torch.full((200,), 3.0)]).double()  # 80% below the mean
    sizes = [len(pruner.plan(e, 1000).indices) for e in (1, 2)]
    assert all(abs(s - 600) < 60 for s in sizes)  # binomial noise around the target
    plan = pruner.plan(1, 1000)
    assert torch.allclose(plan.weights[plan.indices >= 800], torch.ones(1))  # above-mean examples: weight 1
    assert float(plan.weights.max()) == pytest.approx(1 / (1 - 0.5))  # r = 400 / 800

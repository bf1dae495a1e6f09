"""bench/data_pruning.py --quick runs end to end and writes well-formed results."""

import json


def test_data_pruning_benchmark_quick(tmp_path, bench_script):
    payload = bench_script("data_pruning").main(["--quick", "--out-dir", str(tmp_path)])
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"data_pruning.{suffix}").stat().st_size > 0
    saved = json.loads((tmp_path / "data_pruning.json").read_text())
    assert saved["quick"] is True
    for key in ("environment", "settings", "runs", "grid", "score_quality", "variance", "targets"):
        assert key in saved, key

    grid = saved["grid"]["mnist5k"]
    methods = {row["method"] for row in grid}
    assert {"full", "random", "sadp", "infobatch"} <= methods
    for row in grid:
        assert row["speedup"] > 0 and row["ideal_speedup"] > 0 and row["speedup_fraction_of_ideal"] > 0
        assert all(s > 0 for s in row["speedups"])
        assert 0.0 <= row["accuracy_mean"] <= 1.0
    sadp = next(row for row in grid if row["method"] == "sadp")
    assert sadp["scoring_overhead_percent"] >= 0
    assert sadp["examples_visited"] < next(row for row in grid if row["method"] == "full")["examples_visited"]

    quality = saved["score_quality"]["mnist5k"]
    assert set(quality["spearman"]) == {
        "sadp_vs_exact_all",
        "ann_vs_exact_all",
        "sadp_vs_exact_bounded",
        "ann_vs_exact_bounded",
    }
    assert all(-1.0 <= value <= 1.0 for value in quality["spearman"].values())
    assert quality["sadp_bound_holds_fraction"] == 1.0  # the score bounds the layers it covers

    variance = saved["variance"]["mnist5k"]
    estimators = variance["estimators"]
    assert set(estimators) == {"uniform", "ann_bound", "sadp", "oracle"}
    assert all(e["mse"] > 0 for e in estimators.values())
    assert estimators["oracle"]["mse"] <= estimators["uniform"]["mse"]

    assert {t["target"][:4] for t in saved["targets"]} >= {"(i) ", "(ii)", "(iii", "(iv)"}
    assert payload["settings"]["methods"] == saved["settings"]["methods"]
    assert "### Targets" in (tmp_path / "data_pruning.md").read_text()

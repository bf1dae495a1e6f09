"""bench/workloads.py and bench/models.py --quick: the workload plumbing end to end, tiny."""

import json


def test_workloads_quick_writes_headroom_with_intervals(tmp_path, bench_script):
    workloads = bench_script("workloads")
    runs = tmp_path / "runs.jsonl"
    workloads.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    saved = json.loads((tmp_path / "workloads.json").read_text())
    (name,) = saved["summary"]
    entry = saved["summary"][name]
    assert entry["seeds"] == [0, 1] and set(entry["headroom"]) == {"data_pruning", "unstructured", "nm"}
    for headroom in entry["headroom"].values():
        diff = headroom["difference"]
        assert diff["low"] <= diff["mean"] <= diff["high"] and headroom["verdict"] in {"better", "worse", "tied"}
    kinds = [(r["kind"], r["seed"]) for r in saved["runs"]]
    assert len(kinds) == len(set(kinds)) == 8
    densities = [r["density"] for r in saved["runs"] if r["kind"] == "unstructured"]
    assert all(abs(d - 0.02) < 1e-3 for d in densities)  # global magnitude at exactly 98%
    assert "Headroom" in (tmp_path / "workloads.md").read_text()
    # an interrupted benchmark continues from its runs file: nothing is run again
    lines = runs.read_text().splitlines()
    workloads.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    assert runs.read_text().splitlines() == lines


def test_models_quick(tmp_path, bench_script):
    bench_script("models").main(["--quick", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "models.json").read_text())
    assert [r["model"] for r in saved["rows"]] == ["vggsnn", "resnet19"]
    for row in saved["rows"]:
        assert row["parameters"] < row["parameters_width_1"] and row["epoch_seconds_median"] > 0
    assert "| vggsnn |" in (tmp_path / "models.md").read_text()

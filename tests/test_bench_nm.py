"""bench/nm.py --quick (grid, then timing) runs every contender end to end and writes well-formed results."""

import json


def test_nm_benchmark_quick(tmp_path, bench_script):
    payload = bench_script("nm").main(["--quick", "--out-dir", str(tmp_path)])
    for name in ("nm.json", "nm.md", "nm.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "nm.json").read_text())
    methods = {(row["pattern"], row["method"]) for row in saved["table"]}
    assert {("2:4", m) for m in ("asp", "srste", "spikenm", "spikenm_eid")} <= methods
    for row in payload["table"]:
        assert 0.0 <= row["accuracy"] <= 1.0
        if row["method"] != "dense":
            assert row["synops"] < 1.0  # N:M models do fewer effective SynOps than dense
    timing = bench_script("nm").main(["--timing", "--quick", "--out-dir", str(tmp_path)])
    assert set(timing["overhead"]["mnist5k"]) == {"2:4 srste", "2:4 spikenm", "2:4 spikenm_eid"}
    assert all(row["median"] > 0 for row in timing["seconds_per_step"]["mnist5k"].values())
    markdown = (tmp_path / "nm.md").read_text()  # re-rendered with the overhead column filled for 2:4
    spikenm_row = next(line for line in markdown.splitlines() if line.startswith("| 2:4 | spikenm |"))
    assert "%" in spikenm_row.split("|")[5]
    assert (tmp_path / "nm_dynamics.png").stat().st_size > 0


def test_nm_tuning_quick(tmp_path, bench_script):
    payload = bench_script("nm_tuning").main(["--quick", "--workers", "1", "--out-dir", str(tmp_path)])
    variants = [row["variant"] for row in payload["table"]]
    assert variants == ["defaults (β=3, τ 0.3→0.03)", "SR-STE (reference)"]
    assert all(0.0 <= row["accuracy"] <= 1.0 and len(row["per_seed"]) == 1 for row in payload["table"])
    assert payload["table"][0]["entropy"] is not None and payload["table"][1]["entropy"] is None
    assert "| defaults (β=3, τ 0.3→0.03) |" in (tmp_path / "nm_tuning.md").read_text()

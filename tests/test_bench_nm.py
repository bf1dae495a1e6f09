"""bench/nm.py --quick runs every contender end to end and writes well-formed results."""

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

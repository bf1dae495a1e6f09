"""bench/nm.py and bench/nm_tuning.py --quick: the N:M grid, verdicts, dynamics, timing and the EID study, tiny."""

import json


def test_nm_benchmark_quick(tmp_path, bench_script):
    bench = bench_script("nm")
    runs = tmp_path / "runs.jsonl"
    bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    for name in ("nm.json", "nm.md", "nm.png", "nm_dynamics.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "nm.json").read_text())
    cells = {(c["pattern"], c["method"]): c for c in saved["grid"]["mnist5k-convnet6"]["cells"]}
    assert set(cells) == {(p, m) for p in ("2:4", "1:8") for m in bench.METHODS}
    for (_, method), cell in cells.items():
        assert cell["relative_synops"] > 0 and cell["versus"]["dense"]["verdict"] in {"better", "worse", "tied"}
        if method != "srste":
            assert cell["versus"]["srste"]["verdict"] in {"better", "worse", "tied"}
        assert ("spikenm" in cell["versus"]) == (method == "spikenm_eid")  # EID's own effect, paired
        if method in bench.TRAINED:
            assert len(cell["mask_flip_rates"]) == 2 and len(cell["sampling_entropy"]) == 2
    report = (tmp_path / "nm.md").read_text()
    assert "## At a glance" in report and "- SpikeNM vs SR-STE: " in report and "2:4 within 0.3 points" in report
    lines = runs.read_text().splitlines()
    bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    assert runs.read_text().splitlines() == lines  # resumed: nothing ran again
    timing = bench.main(["--timing", "--quick", "--out-dir", str(tmp_path)])
    assert set(timing["overhead"]["mnist5k-convnet6"]) == {"2:4 srste", "2:4 spikenm", "2:4 spikenm_eid"}
    assert "## Step overhead" in (tmp_path / "nm.md").read_text()


def test_the_2_4_target_counts_a_difference_of_exactly_the_target_as_met(bench_script):
    bench = bench_script("nm")

    def cell(difference):  # -0.30 points as the mean of paired fractions carries float noise
        return {"pattern": "2:4", "method": "spikenm", "versus": {"dense": {"difference": {"mean": difference}}}}

    for difference, met in [(sum([-0.001, -0.002, -0.006]) / 3, "yes"), (-0.0032, "no"), (0.001, "yes")]:
        lines = bench.summary({"w": {"cells": [cell(difference)]}}, ["2:4"])
        assert f"({met})." in lines[-2], (difference, lines[-2])


def test_nm_tuning_quick(tmp_path, bench_script):
    payload = bench_script("nm_tuning").main(["--quick", "--out-dir", str(tmp_path)])
    rows = {row["variant"]: row for row in payload["table"]}
    assert set(rows) == {"SpikeNM", "SpikeNM + EID"}
    assert rows["SpikeNM"]["logit_gradient_variance"] > 0
    assert rows["SpikeNM + EID"]["versus_spikenm"]["verdict"] in {"better", "worse", "tied"}
    assert "logit-gradient variance" in (tmp_path / "nm_tuning.md").read_text()

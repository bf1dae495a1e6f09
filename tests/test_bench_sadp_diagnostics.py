"""bench/sadp_diagnostics.py --quick: every hypothesis' variant runs, is paired with its reference, resumes."""

import json


def test_sadp_diagnostics_quick(tmp_path, bench_script):
    bench = bench_script("sadp_diagnostics")
    runs = tmp_path / "runs.jsonl"
    payload = bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    rows = {row["variant"]: row for row in payload["table"]}
    assert set(rows) == set(bench.VARIANTS)
    for variant in bench.HYPOTHESES:
        verdict = rows[variant]["versus"]["test_accuracy vs paired random"]["verdict"]
        assert verdict in {"better", "worse", "tied"}
        assert 0 < rows[variant]["ess_mean"] <= 1 + 1e-9
    assert "test_accuracy vs sadp" in rows["sadp fresh"]["versus"]
    assert "test_accuracy vs sadp" not in rows["sadp sgd"]["versus"]  # another optimizer: not paired with SADP
    assert -1 <= rows["sadp fresh"]["stale_rank_correlation_mean"] <= 1
    assert all(abs(r["cost"] - 0.5) < 0.01 for r in payload["runs"])  # the oracle's scoring pass is not charged
    epochs = [row["epoch"] for row in payload["noise_scale"]]
    assert epochs == [0, 1, 2] and all(row["uniform"] > 0 for row in payload["noise_scale"])
    lines = runs.read_text().splitlines()
    bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    assert runs.read_text().splitlines() == lines  # resumed: nothing ran again
    assert json.loads((tmp_path / "sadp_diagnostics.json").read_text())["quick"] is True

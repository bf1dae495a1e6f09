"""bench/events.py --quick converts nmnist5k, trains one epoch and writes well-formed results."""

import json


def test_events_benchmark_quick(tmp_path, bench_script):
    payload = bench_script("events").main(["--quick", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "events.json").read_text())
    assert saved["quick"] and len(saved["conversion_seconds"]) == 1 and saved["conversion_seconds"][0] > 0
    (run,) = payload["runs"]
    assert run["config"]["epochs"] == 1 and len(run["accuracy_per_epoch"]) == 1
    assert 0.0 <= run["test_accuracy"] <= 1.0 and run["wall_seconds"] >= run["train_seconds"] > 0
    assert "| 0 |" in (tmp_path / "events.md").read_text()

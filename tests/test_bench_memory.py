"""bench/memory.py --quick runs; checkpointing keeps less for backward; SpikingJelly's neurons match ours."""


def test_memory_benchmark_quick(tmp_path, bench_script):
    payload = bench_script("memory").main(["--quick", "--out-dir", str(tmp_path)])
    assert (tmp_path / "memory.json").exists() and (tmp_path / "memory.md").exists()
    cells = payload["rows_by_t"]["2"]
    assert cells["spikeprune + checkpointing"]["saved_bytes"] < 0.5 * cells["spikeprune"]["saved_bytes"]
    for cell in cells.values():
        assert isinstance(cell["peak_rss_bytes"], int) and cell["max_logit_difference"] < 1e-5

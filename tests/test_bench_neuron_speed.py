"""bench/neuron_speed.py --quick runs and its SpikingJelly-built network matches ours."""


def test_neuron_speed_benchmark_quick(tmp_path, bench_script):
    payload = bench_script("neuron_speed").main(["--quick", "--out-dir", str(tmp_path)])
    assert (tmp_path / "neuron_speed.json").exists() and (tmp_path / "neuron_speed.md").exists()
    differences = payload["train_step"]["max_abs_logit_difference_vs_spikeprune"]
    assert all(value < 1e-5 for value in differences.values())

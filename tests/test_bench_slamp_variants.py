"""bench/slamp_variants.py --quick: every variant runs and is paired with LAMP; output gains are ≥ 1."""

import torch


def test_slamp_variants_quick(tmp_path, bench_script):
    bench = bench_script("slamp_variants")
    payload = bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(tmp_path / "runs.jsonl")])
    rows = {row["variant"]: row for row in payload["table"]}
    assert set(rows) == set(bench.VARIANTS)
    assert all(rows[v]["versus_lamp"]["verdict"] in {"better", "worse", "tied"} for v in bench.VARIANTS[1:])
    assert min(rows["slamp-output"]["factors"].values()) >= 1.0
    assert (tmp_path / "slamp_variants.md").read_text().count("| mnist5k-convnet6 |") == len(bench.VARIANTS)


def test_output_gains_are_relative(bench_script):
    """Gains compare relative changes: moving a scale from one layer to the next (same function) leaves
    them unchanged, and a layer whose pruning cannot reach the logits gets the floor of 1."""
    bench = bench_script("slamp_variants")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    batches = [torch.randn(32, 8)]
    gains = bench.output_gains(model, batches)
    with torch.no_grad():
        model[0].weight.mul_(10)
        model[0].bias.mul_(10)
        model[2].weight.div_(10)
    rescaled = bench.output_gains(model, batches)
    assert gains.keys() == {"0", "2"} and min(gains.values()) == 1.0
    assert all(abs(gains[k] - rescaled[k]) < 1e-4 * gains[k] for k in gains)
    with torch.no_grad():
        model[0].bias.fill_(-1e3)  # the ReLU is dead: pruning layer 0 changes nothing downstream
    assert bench.output_gains(model, batches)["0"] == 1.0

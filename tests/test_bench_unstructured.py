"""bench/unstructured.py --quick: the grid on convnet6, verdicts, per-layer figures and plots, tiny."""

import json

import pytest


def test_unstructured_benchmark_quick(tmp_path, bench_script):
    bench = bench_script("unstructured")
    runs = tmp_path / "runs.jsonl"
    bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    for name in (
        "unstructured.json",
        "unstructured.md",
        "unstructured.png",
        "unstructured_layers.png",
        "unstructured_synops.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "unstructured.json").read_text())
    entry = saved["grid"]["mnist5k-convnet6"]
    layers = list(entry["layer_sizes"])
    assert len(layers) == 8  # convnet6: six convs, the hidden FC and the classifier
    assert set(entry["temporal_factors"]) == set(layers) == set(entry["sensitivity"])
    assert all(f >= 1.0 - 1e-9 for f in entry["temporal_factors"].values())  # accumulation never shrinks
    cells = {(c["schedule"], c["criterion"]): c for c in entry["cells"]}
    assert {s for s, _ in cells} == {"one-shot", "iterative"}
    for (_, criterion), cell in cells.items():
        if not cell["feasible"]:
            assert criterion == "uniform-plus"
            continue
        assert cell["density"] == pytest.approx(0.1, abs=1e-3)  # the target is met to one weight
        total = sum(cell["layer_density"][n] * entry["layer_sizes"][n] for n in layers)
        assert total == pytest.approx(0.1 * sum(entry["layer_sizes"].values()), abs=2.0)
        assert cell["relative_synops"] > 0  # (an untrained quick model may fire more after BN recalibration)
        assert cell["versus"]["dense"]["verdict"] in {"better", "worse", "tied"}
    assert cells[("one-shot", "slamp")]["versus"]["lamp"]["verdict"] in {"better", "worse", "tied"}
    text = (tmp_path / "unstructured.md").read_text()
    assert "Spearman(ρ_l, sensitivity)" in text and "SLAMP is… vs this" in text
    assert "resumed" not in text
    lines = runs.read_text().splitlines()
    again = bench.main(["--quick", "--out-dir", str(tmp_path), "--runs", str(runs)])
    assert runs.read_text().splitlines() == lines  # resumed: nothing ran again
    assert again["resumed_runs"] == len(lines)  # and the run time says it covers no run
    assert (
        f"this invocation trained nothing: all {len(lines)} runs were resumed"
        in (tmp_path / "unstructured.md").read_text()
    )


def test_blocks_at_chance_on_the_first_seeds_are_skipped(bench_script):
    bench = bench_script("unstructured")
    workload = bench.WORKLOADS["nmnist5k-vggsnn"]
    store = bench.RunStore(None, ())

    def row(seed, criterion, accuracy, sparsity=0.99):
        base = {"workload": workload.name, "kind": "pruned", "schedule": "one-shot", "feasible": True}
        return {**base, "seed": seed, "criterion": criterion, "sparsity": sparsity, "test_accuracy": accuracy}

    store.rows = [row(0, "lamp", 0.10), row(0, "slamp", 0.11)]
    assert not bench.at_chance(store, workload, "one-shot", 0.99, 2, 10)  # one seed is not evidence enough
    store.rows += [row(1, "lamp", 0.09), row(1, "slamp", 0.10)]
    assert bench.at_chance(store, workload, "one-shot", 0.99, 2, 10)
    assert not bench.at_chance(store, workload, "iterative", 0.99, 2, 10)  # another block
    store.rows += [row(1, "global", 0.35)]
    assert not bench.at_chance(store, workload, "one-shot", 0.99, 2, 10)  # one criterion learned something

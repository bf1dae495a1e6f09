"""bench/unstructured.py --quick runs end to end and writes well-formed results."""

import json

import pytest

from spikeprune.errors import SpikepruneError


@pytest.fixture(scope="module")
def quick(tmp_path_factory, bench_script):
    out = tmp_path_factory.mktemp("unstructured")
    module = bench_script("unstructured")
    payload = module.main(["--quick", "--out-dir", str(out)])
    return module, payload, out


def test_unstructured_benchmark_quick(quick):
    module, payload, out = quick
    for name in ("unstructured.json", "unstructured.md", "unstructured.png", "unstructured_density.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "unstructured.json").read_text())
    assert saved["quick"] is True
    for key in ("question", "environment", "settings", "dense", "runs", "grid", "temporal_factors", "targets"):
        assert key in saved, key
    settings = saved["settings"]
    assert settings["criteria"] == ["global", "lamp", "slamp-p2", "uniform-plus"]
    assert settings["sparsities"] == [0.9] and settings["seeds"] == [0]
    assert payload["settings"]["criteria"] == settings["criteria"]

    block = saved["grid"]["mnist5k"]
    dense = block["dense"]
    assert 0.0 <= dense["accuracy_mean"] <= 1.0 and dense["density"] == pytest.approx(1.0)
    assert dense["effective_synops"] > 0 and dense["energy_pj"] > 0
    layers = list(dense["layer_sizes"])
    assert len(layers) == 4  # scnn: stem conv, conv, fc, readout

    rows = {(row["criterion"], row["sparsity"]): row for row in block["rows"]}
    assert set(rows) == {(c, 0.9) for c in settings["criteria"]}
    for (criterion, sparsity), row in rows.items():
        if not row["feasible"]:  # only uniform-plus may be infeasible, and then it has no figures
            assert criterion == "uniform-plus" and row["accuracy_after_retrain_mean"] is None
            continue
        assert row["density"] == pytest.approx(1.0 - sparsity, abs=1e-3)
        assert row["density_error"] <= 1e-3
        assert sum(row["layer_density"][n] * dense["layer_sizes"][n] for n in layers) == pytest.approx(
            (1.0 - sparsity) * sum(dense["layer_sizes"].values()), abs=2.0
        )
        for stage in ("after_prune", "after_retrain"):
            assert 0.0 <= row[f"accuracy_{stage}_mean"] <= 1.0
            assert all(0.0 <= a <= 1.0 for a in row[f"accuracies_{stage}"])
        assert 0.0 < row["relative_synops"] <= 1.0 + 1e-6
        assert 0.0 < row["relative_energy"] <= 1.0 + 1e-6
        assert row["delta_vs_dense_points"] == pytest.approx(
            100 * (row["accuracy_after_retrain_mean"] - dense["accuracy_mean"])
        )
        for key in ("firing_rate_before", "firing_rate_after_prune", "firing_rate_after_retrain"):
            assert 0.0 <= row[key] <= 1.0
        assert row["firing_rate_before"] == pytest.approx(dense["mean_firing_rate"])
    # uniform-plus keeps the first layer dense; LAMP never empties a layer
    if rows[("uniform-plus", 0.9)]["feasible"]:
        assert rows[("uniform-plus", 0.9)]["layer_density"][layers[0]] == 1.0
    assert all(d > 0 for d in rows[("lamp", 0.9)]["layer_density"].values())

    runs = saved["runs"]
    assert len(runs) == 4 and all(r["dataset"] == "mnist5k" for r in runs)
    for run in runs:
        if run["feasible"]:
            assert set(run["stages"]) == {"before", "after_prune", "after_retrain"}
            assert (run["method"] == "slamp") == (run["temporal_factors"] is not None)
    factors = saved["temporal_factors"]["mnist5k"]
    assert set(factors["factors"]) == set(layers)
    assert all(1.0 <= rho <= 4.0 + 1e-9 for rho in factors["factors"].values())  # T = 4

    # no sparsity >= 0.95 in the quick run: the target is reported as not measured, not as met
    assert saved["targets"] and all(t["holds"] is None for t in saved["targets"])
    text = (out / "unstructured.md").read_text()
    assert "### Targets" in text and "### SLAMP temporal factors" in text and "Per-layer density at s = 0.9" in text


def test_infeasible_uniform_plus_is_recorded_not_raised(quick, monkeypatch, tmp_path):
    module, payload, _ = quick

    def refuse(*args, **kwargs):
        raise SpikepruneError("uniform-plus cannot reach sparsity 0.99: the dense first layer ...")

    monkeypatch.setattr(module, "prune_run", refuse)
    args = (tmp_path / "dense", tmp_path / "out", "mnist5k", 0)
    record = module.prune_one(*args, "uniform-plus", 0.99, 1, None)
    assert record["feasible"] is False and "cannot reach" in record["reason"]
    with pytest.raises(SpikepruneError):  # other criteria (and other errors) are not swallowed
        module.prune_one(*args, "global", 0.99, 1, None)

    # an infeasible cell aggregates and renders as n/a
    runs = payload["runs"] + [{**record, "sparsity": 0.9, "seed": 0, "dataset": "mnist5k"}]
    runs = [r for r in runs if not (r["criterion"] == "uniform-plus" and r["feasible"])]
    grid = module.aggregate(payload["dense"], runs, tuple(payload["settings"]["criteria"]), (0.9,))
    row = next(r for r in grid["mnist5k"]["rows"] if r["criterion"] == "uniform-plus")
    assert row["feasible"] is False and row["layer_density"] is None
    text = module.markdown({**payload, "grid": grid, "targets": module.targets(grid)})
    assert "n/a (infeasible)" in text
    module.plot_accuracy(grid, tuple(payload["settings"]["criteria"]), tmp_path / "a.png")
    module.plot_density(grid, tuple(payload["settings"]["criteria"]), tmp_path / "d.png")
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "d.png").stat().st_size > 0


def test_targets_compare_slamp_with_lamp_and_global(quick):
    module, _, _ = quick

    def row(criterion, accuracies):
        return {
            "criterion": criterion,
            "sparsity": 0.98,
            "seeds": [0, 1],
            "accuracies_after_retrain": accuracies,
            "accuracy_after_retrain_mean": sum(accuracies) / 2,
            "accuracy_after_retrain_std": 0.0,
        }

    rows = [
        row("global", [0.8, 0.8]),
        row("lamp", [0.9, 0.9]),
        row("slamp-p1", [0.9, 0.95]),
        row("slamp-p2", [0.91, 0.9]),
    ]
    found = module.targets({"toy": {"rows": rows}})
    main = next(t for t in found if t["sparsity"] == 0.98 and not t["target"].startswith("(info)"))
    assert main["holds"] is True and "rank 2 of 4" in main["measured"]
    info = next(t for t in found if t["target"].startswith("(info)"))
    assert info["holds"] is True and "rank 1 of 4" in info["measured"]
    overall = next(t for t in found if t["sparsity"] is None)
    assert overall["holds"] is True
    rows[3] = row("slamp-p2", [0.85, 0.9])
    assert next(t for t in module.targets({"toy": {"rows": rows}}) if t["sparsity"] is None)["holds"] is False

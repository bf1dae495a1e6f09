"""bench/export_sizes.py --quick: every case written in both encodings, sizes well-formed."""

import json


def test_export_sizes_quick(tmp_path, bench_script):
    bench_script("export_sizes").main(["--quick", "--out-dir", str(tmp_path)])
    rows = json.loads((tmp_path / "export_sizes.json").read_text())["rows"]
    assert [(r["method"], r["sparsity"], r["nm"]) for r in rows][0] == ("dense", None, None) and len(rows) == 6
    assert rows[0]["compressed_ratio"] == 1.0 or rows[0]["compressed_ratio"] < 1.01  # dense stays dense
    slamp98 = next(r for r in rows if r["sparsity"] == 0.98)
    assert abs(slamp98["density"] - 0.02) < 1e-3 and slamp98["compressed_ratio"] < 0.1
    assert all(r["safetensors_ratio"] == 1.0 for r in rows)  # the plain file keeps its zeros: same size
    assert "| mnist5k-convnet6 |" in (tmp_path / "export_sizes.md").read_text()

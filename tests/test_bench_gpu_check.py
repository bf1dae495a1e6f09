"""bench/gpu_check.py --dry: the GPU script runs end to end on CPU before any GPU is lent."""

import pytest
import torch

from spikeprune.models import list_models


def test_gpu_check_dry_run(tmp_path, bench_script):
    payload = bench_script("gpu_check").main(["--dry", "--out-dir", str(tmp_path)])
    assert (tmp_path / "gpu_check.md").exists()
    trained = {(row["model"], row["precision"]) for row in payload["training"] if row["finite"]}
    assert trained == {(info.name, p) for info in list_models() for p in ("fp32", "bf16")}
    assert "median_ms" in payload["neurons"]["spikeprune LIF"]
    assert payload["two_four"] == {"skipped": "needs CUDA"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_check_without_a_gpu_says_how_to_run_it(bench_script):
    with pytest.raises(SystemExit, match="--dry"):
        bench_script("gpu_check").main([])

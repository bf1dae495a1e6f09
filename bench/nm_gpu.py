"""Do 2:4 Linear layers run faster on a GPU? ``torch.sparse.to_sparse_semi_structured`` vs dense.

Needs CUDA with compute capability >= 8.0 (Ampere or newer). On CPU, or an older GPU, the script
writes a result that says why it skipped and exits 0.

For each shape (the scnn hidden layer and larger transformer-like sizes) it takes a 2:4
magnitude-pruned fp16 weight, checks the sparse matmul against the dense one, and times both:
interleaved, CUDA-synchronised, medians of repeats.

Run: ``python bench/nm_gpu.py [--quick]``. Writes ``bench/results/nm_gpu.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from spikeprune.sparsity.nm import magnitude_nm_mask

try:
    from harness import environment, interleaved_times, summarize, write_results
except ImportError:
    from bench.harness import environment, interleaved_times, summarize, write_results

SHAPES = [(128, 3136, 4096), (1024, 1024, 4096), (4096, 4096, 4096), (8192, 8192, 8192)]  # (out, in, tokens)


def skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    major, _ = torch.cuda.get_device_capability()
    if major < 8:
        return f"compute capability {major}.x < 8.0 has no semi-structured sparse kernels"
    if not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return "this torch build has no torch.sparse.to_sparse_semi_structured"
    return None


def bench_shape(out: int, inp: int, tokens: int, repeats: int) -> dict:
    device = torch.device("cuda")
    weight = torch.randn(out, inp, device=device, dtype=torch.float16)
    weight = weight * magnitude_nm_mask(weight.float(), 2, 4).to(weight.dtype)
    x = torch.randn(tokens, inp, device=device, dtype=torch.float16)
    sparse = torch.sparse.to_sparse_semi_structured(weight)
    dense_out = F.linear(x, weight)
    sparse_out = F.linear(x, sparse)
    error = float((dense_out - sparse_out).abs().max() / dense_out.abs().max())
    times = interleaved_times({"dense": lambda: F.linear(x, weight), "2:4": lambda: F.linear(x, sparse)}, repeats)
    stats = {name: summarize(values) for name, values in times.items()}
    return {
        "shape": [out, inp, tokens],
        "relative_max_error": error,
        "times": stats,
        "speedup": stats["dense"]["median"] / stats["2:4"]["median"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    reason = skip_reason()
    payload: dict = {"question": "2:4 Linear speedup on GPU", "environment": environment(), "skipped": reason}
    lines = ["## nm_gpu", ""]
    if reason is not None:
        lines.append(f"Skipped: {reason}. Nothing was measured.")
    else:
        shapes = SHAPES[:1] if args.quick else SHAPES
        results = [bench_shape(*shape, repeats=5 if args.quick else 50) for shape in shapes]
        payload["results"] = results
        lines += [
            f"{environment()['cuda']}, fp16, `F.linear` with a 2:4 `to_sparse_semi_structured` weight vs dense; "
            "medians of interleaved repeats.",
            "",
            "| out × in, tokens | dense ms | 2:4 ms | speedup | max rel. error |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in results:
            o, i, t = r["shape"]
            lines.append(
                f"| {o} × {i}, {t} | {r['times']['dense']['median'] * 1e3:.3f} | "
                f"{r['times']['2:4']['median'] * 1e3:.3f} | {r['speedup']:.2f}× | {r['relative_max_error']:.1e} |"
            )
    lines.append("")
    write_results("nm_gpu", payload, "\n".join(lines), args.out_dir)
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()

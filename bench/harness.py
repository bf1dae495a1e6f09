"""Shared benchmark plumbing: interleaved repeated timing, medians, ratios, JSON + Markdown output.

Contenders run in the same process on the same inputs, interleaved in a rotating order so that
drift of a noisy machine falls on all of them alike; we report medians and the interquartile range.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved_times(
    contenders: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per call of each contender, ``repeats`` samples each, in rotating order."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            started = time.perf_counter()
            contenders[name]()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    return times


def summarize(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {"median": statistics.median(samples), "q1": q[0], "q3": q[2], "n": len(samples)}


def saved_tensor_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes autograd keeps for backward while ``fn`` runs its forward (unique storages)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def threads_text(count: int) -> str:
    """'1 thread', '2 threads': the run-time lines name the thread count."""
    return f"{count} thread" + ("s" if count != 1 else "")


def run_time_line(payload: dict[str, Any], caveat: str = "") -> str:
    """The run-time sentence of a resumable grid: this invocation's time, how many runs it only reloaded,
    and an optional ``caveat`` clause."""
    env = payload["environment"]
    line = (
        f"Measured run time: {payload['total_seconds'] / 60:.1f} min on {threads_text(env['threads'])} "
        f"({env['processor']}, torch {env['torch']})"
    )
    resumed, runs = payload.get("resumed_runs", 0), len(payload["runs"])
    if resumed:
        line += (
            f"; this invocation trained nothing: all {runs} runs were resumed from the runs file"
            if resumed == runs
            else f" for the {runs - resumed} runs of this invocation; {resumed} runs were resumed from the runs "
            "file (computed by earlier invocations)"
        )
        trained = sum(row.get("train_seconds") or 0.0 for row in payload["runs"])
        if trained:  # the whole grid's compute, whichever invocation ran each row
            spent = f"{trained / 3600:.1f} h" if trained >= 3600 else f"{trained / 60:.1f} min"
            line += f"; all {runs} runs together trained for {spent}"
    return line + (f"; {caveat}" if caveat else "") + "."


def write_results(name: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir) if out_dir is not None else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown)
    return out_dir / f"{name}.json"


class RunStore:
    """Finished runs of a benchmark, one JSON line each, so an interrupted benchmark continues where it stopped.

    ``key`` names the fields that identify a run (e.g. workload, method, seed); a run already in the file
    is not run again. Several processes may append to one file (one line per write).
    """

    def __init__(self, path: Path | None, key: tuple[str, ...]) -> None:
        self.path, self.key = (Path(path) if path is not None else None), key
        self.rows: list[dict[str, Any]] = []
        if self.path is not None and self.path.exists():
            self.rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def _key(self, row: dict[str, Any]) -> tuple:
        return tuple(json.dumps(row.get(k), sort_keys=True) for k in self.key)

    def get(self, **fields: Any) -> dict[str, Any] | None:
        wanted = self._key(fields)
        return next((row for row in reversed(self.rows) if self._key(row) == wanted), None)

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        self.rows.append(row)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        return row


def arguments(doc: str, smoke: str = "--quick", smoke_help: str = "tiny smoke run") -> argparse.ArgumentParser:
    """The options every benchmark script takes: its smoke-run flag and ``--out-dir``; add more to it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(smoke, action="store_true", help=smoke_help)
    parser.add_argument("--out-dir", type=Path, default=None, help="results folder (default: bench/results)")
    return parser

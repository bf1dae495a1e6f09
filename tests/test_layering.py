"""Imports point downward only: workflows → train → sparsity / datapruning / metrics → models → snn."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spikeprune"
WORKFLOWS = ("cli", "quickstart", "prune_retrain")
# package -> what it must never import (the layers above it)
FORBIDDEN = {
    "train": ("cli", "quickstart", "prune_retrain"),
    "sparsity": ("train", "datapruning", "metrics", *WORKFLOWS),
    "datapruning": ("train", "sparsity", *WORKFLOWS),
    "metrics": ("train", "datapruning", *WORKFLOWS),  # reads N:M layouts from sparsity (one way only)
    "models": ("train", "sparsity", "datapruning", "metrics", "interop", *WORKFLOWS),
    "snn": ("train", "sparsity", "datapruning", "metrics", "interop", "models", *WORKFLOWS),
    "data": ("train", "sparsity", "datapruning", "metrics", "interop", "models", *WORKFLOWS),
}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("spikeprune")}


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_imports_point_downward(package):
    wrong = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in imported(path):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[package]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, wrong


def test_the_trainer_builds_sparsifiers_and_data_pruners_through_their_registries():
    for path in (PACKAGE / "train").rglob("*.py"):
        for name in imported(path):
            assert name not in {"spikeprune.sparsity.spikenm", "spikeprune.sparsity.nm", "spikeprune.sparsity.masks"}
            assert not name.startswith("spikeprune.datapruning.") or name.endswith((".base", ".registry"))


def test_the_profile_table_does_not_import_the_report():
    assert "spikeprune.metrics.report" not in imported(PACKAGE / "metrics" / "table.py")

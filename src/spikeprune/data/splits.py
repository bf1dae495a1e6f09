"""Seeded stratified train/test splits for datasets that ship without one."""

from __future__ import annotations

import math

import numpy as np

from spikeprune.errors import SpikepruneError


def count_for_fraction(n: int, fraction: float) -> int:
    """Test-set size for a fractional split, rounded up as scikit-learn does."""
    return math.ceil(n * fraction)


def stratified_split(labels: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (train, test) with every class in the same proportion.

    Each class gets `count * test_size / n` test examples; the fractions are rounded by
    largest remainder so the totals are exact (e.g. 500 per class and 1000 of 5000 ->
    exactly 100 per class). Both index arrays come back in a seeded random order, so a
    prefix of either is a class-mixed sample. Uses a private numpy Generator only.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if not 0 < test_size < n:
        raise SpikepruneError(f"test_size must be between 1 and {n - 1} for {n} examples, got {test_size}")
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * test_size / n
    per_class = np.floor(quotas).astype(np.int64)
    leftover = test_size - int(per_class.sum())
    by_remainder = np.argsort(-(quotas - per_class), kind="stable")
    per_class[by_remainder[:leftover]] += 1

    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for cls, k in zip(classes, per_class, strict=True):
        members = rng.permutation(np.flatnonzero(labels == cls))
        test_parts.append(members[:k])
        train_parts.append(members[k:])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return train, test

"""`DatasetInfo`: the static facts about a dataset that models and reports need before loading it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, without loading it.

    Models size their input layer from `input_shape` and their output layer from
    `num_classes`, so both are known up front. `train_size` / `test_size` are the
    nominal sizes of the registered dataset; the `info` attached to a loaded
    `IndexedDataset` carries the sizes actually loaded (they differ only when a user's
    local files differ from the official release).
    """

    name: str
    input_shape: tuple[int, ...]  # per example, without the batch dimension
    num_classes: int
    train_size: int
    test_size: int
    description: str
    source: str  # where the data comes from, or where the user must put the files

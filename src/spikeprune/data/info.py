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

    `event_frames` marks datasets whose examples are already sequences of event frames
    `[T, C, H, W]`, time first (`input_shape[0]` is T): models read them with the
    `frames` encoder instead of encoding a static input. Their registered `input_shape`
    is nominal (the default T and frame size); a loaded dataset's info has the real one.
    """

    name: str
    input_shape: tuple[int, ...]  # per example, without the batch dimension
    num_classes: int
    train_size: int
    test_size: int
    description: str
    source: str  # where the data comes from, or where the user must put the files
    event_frames: bool = False

    @property
    def step_shape(self) -> tuple[int, ...]:
        """Shape of the input at one time step: `input_shape` without T for event frames."""
        return self.input_shape[1:] if self.event_frames else self.input_shape

"""Datasets for spikeprune: a name registry and in-memory datasets whose items carry their index.

`build_dataset(name)` returns `(train, test)` `IndexedDataset`s yielding `(x, y, index)`.
Built in: `mnist5k`, `mnist1d`, `digits` and the event frames `nmnist5k` (no download needed), and
`cifar10`, `cifar100`, `nmnist`, `dvsgesture`, `cifar10dvs`, `imagenet` and any `image_folder` (from the
user's local copy; image folders are decoded lazily). New datasets register with
`spikeprune.data.registry.register_dataset`.
"""

from spikeprune.data import cifar, embedded, folders  # noqa: F401  (importing registers the built-in datasets)
from spikeprune.data.events import datasets as _event_datasets  # noqa: F401  (registers the event datasets)
from spikeprune.data.indexed import IndexedDataset
from spikeprune.data.info import DatasetInfo
from spikeprune.data.registry import build_dataset, dataset_info, dataset_options, list_datasets

__all__ = [
    "DatasetInfo",
    "IndexedDataset",
    "build_dataset",
    "dataset_info",
    "dataset_options",
    "list_datasets",
]

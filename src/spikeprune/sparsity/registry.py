"""Sparsifiers by name, for configs and the command line (the Trainer builds them here, by name only)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from spikeprune.errors import SpikepruneError
from spikeprune.sparsity.base import Sparsifier
from spikeprune.sparsity.masks import FixedMasks
from spikeprune.sparsity.nm import SRSTE, parse_nm
from spikeprune.sparsity.spikenm import SpikeNM

NM_METHODS: dict[str, type[Sparsifier]] = {"spikenm": SpikeNM, "srste": SRSTE}
KINDS = ("none", "fixed", "nm")


def build_sparsifier(
    kind: str,
    *,
    masks: dict[str, Tensor] | None = None,
    nm: str = "2:4",
    method: str = "spikenm",
    options: dict[str, Any] | None = None,
) -> Sparsifier:
    """``none``: no sparsity; ``fixed``: train with ``masks`` fixed (from ``spikeprune prune``); ``nm``:
    learn N:M masks with ``method`` (``spikenm`` or ``srste``) and its ``options``."""
    if kind == "fixed":
        if not masks:
            raise SpikepruneError(
                "sparsity='fixed' needs init_from: a file with the masks (written by 'spikeprune prune')"
            )
        return FixedMasks(masks)
    if kind == "nm":
        n, m = parse_nm(nm)
        try:
            cls = NM_METHODS[method]
        except KeyError:
            raise SpikepruneError(f"unknown N:M method {method!r}; choose one of {', '.join(NM_METHODS)}") from None
        try:
            return cls(n, m, **(options or {}))
        except TypeError as error:
            raise SpikepruneError(f"bad sparsity_options for {method}: {error}") from None
    if kind != "none":
        raise SpikepruneError(f"unknown sparsity {kind!r}; choose one of {', '.join(KINDS)}")
    return Sparsifier()

"""Plain-text tables: aligned columns and SI-suffixed numbers, with no dependencies (the profile uses them)."""

from __future__ import annotations

from collections.abc import Sequence

_SUFFIXES = ("", "k", "M", "G", "T", "P", "E")


def si(value: float) -> str:
    """``1234567`` → ``1.23M``: three significant digits with a thousands suffix."""
    if value == 0:
        return "0"
    scaled, step = float(value), 0
    while abs(scaled) >= 999.5 and step < len(_SUFFIXES) - 1:
        scaled, step = scaled / 1000, step + 1
    return f"{scaled:.3g}{_SUFFIXES[step]}"


def energy_str(pj: float) -> str:
    """Picojoules in the largest unit that keeps the number >= 1."""
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def bytes_str(size: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{int(size)} B"


def render(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])

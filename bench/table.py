"""The one results table every benchmark adds rows to, printed as Markdown (pasted as is into bench/README.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

COLUMNS = ("bench", "case", "size", "omprog-ban", "reference", "ratio", "notes")


@dataclass(frozen=True)
class Row:
    """One measured figure: ours, the reference it is compared with, and ours / reference."""

    bench: str
    case: str
    size: str
    ours: str
    reference: str = "-"
    ratio: float | None = None
    notes: str = ""

    def cells(self) -> tuple[str, ...]:
        """Return the row's cells as text."""
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}x"
        return (self.bench, self.case, self.size, self.ours, self.reference, ratio, self.notes or "")


def render(rows: list[Row]) -> str:
    """Return ``rows`` as a Markdown table with aligned columns."""
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |" for line in table]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def figure(value: float) -> str:
    """Return ``value`` to three significant figures, with thousands separators."""
    if value >= 100:
        return f"{round(value, 2 - int(math.log10(value))):,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def rate(count: float, seconds: float, unit: str = "lines/s") -> str:
    """Return ``count / seconds`` to three significant figures, with ``unit``."""
    return f"{figure(count / seconds)} {unit}" if seconds > 0 else f"- {unit}"


def count(value: int) -> str:
    """Return ``value`` with thousands separators."""
    return f"{value:,}"

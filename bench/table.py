"""One row per figure, as every bench module's `rows()` returns them, and the table `python -m bench` prints.

A row compares our figure with a baseline measured in the same run: `ratio` is ours / baseline (or
baseline / ours, whichever the figure's goal is stated in) and `goal` is a comparison such as
"<= 1.1" or ">= 0.95" that `met` checks.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Row:
    """One figure: ours and its same-run baseline (already formatted, with units), their ratio, the goal."""

    name: str
    value: str
    baseline: str
    ratio: float
    goal: str  # "<= 1.1", ">= 0.95"; "" when the row only informs
    note: str = ""

    @classmethod
    def skipped(cls, name: str, goal: str, reason: str) -> Row:
        """A figure that could not be measured in this run (no server, module not landed, ...)."""
        return cls(name, "-", "-", math.nan, goal, f"skipped: {reason}")

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets the goal; None when there is no goal or no measurement."""
        if not self.goal or math.isnan(self.ratio):
            return None
        sign, _, bound = self.goal.partition(" ")
        return bool(_COMPARE[sign](self.ratio, float(bound)))


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else math.nan


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table (it goes into bench/README.md as printed)."""
    header = ("figure", "ours", "baseline", "ratio", "goal", "met", "note")
    lines = [
        (
            row.name,
            row.value,
            row.baseline,
            "-" if math.isnan(row.ratio) else f"{row.ratio:.2f}",
            row.goal or "-",
            {True: "yes", False: "NO", None: "-"}[row.met],
            row.note,
        )
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, lines)])

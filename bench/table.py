"""One row per figure, as every bench module's `rows()` returns them, and the table `python -m bench` prints.

A row compares our figure with a baseline measured in the same run: `ratio` is ours / baseline (or
baseline / ours, whichever the figure's goal is stated in) and `goal` is a comparison such as
"<= 1.1" or ">= 0.95" that `met` checks.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Row:
    """One figure: ours and its same-run baseline (already formatted, with units), their ratio, the goal."""

    name: str
    value: str
    baseline: str
    ratio: float
    goal: str  # "<= 1.1", ">= 0.95" (on the ratio); "<= 1 ms per ticket" (with a unit: on `amount`); "" informs
    note: str = ""
    amount: float | None = None  # ours as a number, for a goal stated in a unit rather than as a ratio

    @classmethod
    def skipped(cls, name: str, goal: str, reason: str) -> Row:
        """A figure that could not be measured in this run (no server, module not landed, ...)."""
        return cls(name, "-", "-", math.nan, goal, f"skipped: {reason}")

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets the goal; None when there is no goal or no measurement."""
        parts = self.goal.split(maxsplit=2)
        if len(parts) < 2 or parts[0] not in _COMPARE:
            return None
        measured = self.amount if len(parts) == 3 else self.ratio  # "<= 1 ms per ticket": on ours, not the ratio
        if measured is None or math.isnan(measured):
            return None
        return bool(_COMPARE[parts[0]](measured, float(parts[1].rstrip("x×"))))  # ">= 2x" reads as ">= 2"


def as_row(item: Any) -> Row:
    """A row from another module's shape: a `Row`, a mapping, or an object with name/value/baseline/ratio/goal."""
    if isinstance(item, Row):
        return item

    def get(key: str, default: Any = None) -> Any:
        return item.get(key, default) if isinstance(item, Mapping) else getattr(item, key, default)

    value, baseline, unit = get("value"), get("baseline"), get("unit", "")
    number = float(value) if isinstance(value, (int, float)) else None
    found = get("ratio")
    return Row(
        str(get("name", "?")),
        f"{value:.3f} {unit}".strip() if isinstance(value, float) else str(value),
        f"{baseline:.3f} {unit}".strip() if isinstance(baseline, float) else str(baseline),
        float(found) if isinstance(found, (int, float)) else math.nan,
        str(get("goal") or ""),
        str(get("note") or get("detail") or ""),
        number,
    )


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

"""`python -m bench` reads every bench module's rows, whatever their shape, and checks each goal (no timing here)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.__main__ import QUICK_TICKETS, gather
from bench.table import Row, as_row, format_table


@dataclass(frozen=True)
class OtherRow:
    name: str
    value: float
    baseline: float
    ratio: float
    goal: str


def test_a_goal_applies_to_the_ratio_unless_it_names_a_unit() -> None:
    assert Row("a", "1", "2", 0.5, "<= 1.1").met is True
    assert Row("a", "1", "2", 0.9, ">= 0.95").met is False
    assert Row("a", "4 ms", "0.5 ms", 8.0, "<= 1 ms per ticket", amount=0.8).met is True  # ours, not the ratio
    assert Row("a", "4 ms", "0.5 ms", 0.1, "<= 1 ms per ticket", amount=4.0).met is False
    assert Row("a", "1", "2", 0.5, "").met is None
    assert Row("a", "1", "2", 2.5, ">= 2x").met is True
    assert Row.skipped("a", "<= 1.1", "no server").met is None


def test_rows_in_other_shapes_are_read() -> None:
    from_mapping = as_row(
        {"name": "m", "value": 0.8, "baseline": 4.0, "ratio": 0.2, "goal": "<= 1 ms per ticket", "unit": "ms"}
    )
    assert (from_mapping.value, from_mapping.met) == ("0.800 ms", True)
    from_object = as_row(OtherRow("o", 120.0, 100.0, 1.2, ">= 2"))
    assert (from_object.ratio, from_object.met) == (1.2, False)
    assert math.isnan(as_row({"name": "x", "value": "-", "baseline": "-", "ratio": None, "goal": ""}).ratio)
    assert "| NO " in format_table([from_object]) and "| yes " in format_table([from_mapping])


def test_quick_is_passed_as_each_module_accepts_it() -> None:
    seen: dict[str, object] = {}

    def rows(quick: bool = False) -> list[Row]:
        seen["quick"] = quick
        return [Row("a", "1", "1", 1.0, "")]

    def run(tickets: int = 20_000, echo: object = None) -> list[dict[str, object]]:
        seen["tickets"] = tickets
        return [{"name": "b", "value": 1.0, "baseline": 1.0, "ratio": 1.0, "goal": ""}]

    assert [r.name for r in gather(rows, True) + gather(run, True)] == ["a", "b"]
    assert seen == {"quick": True, "tickets": QUICK_TICKETS}

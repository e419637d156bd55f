"""The metadata renderer writes exactly what `yaml.dump` writes, for every plain value and for the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from data_manager.collectors.metadata_yaml import DUMPER, render_yaml


def dumped(data: Any) -> str:
    return str(yaml.dump(data, Dumper=DUMPER, sort_keys=True, allow_unicode=True, default_flow_style=False))


# Strings YAML reads as something else unless quoted, and shapes its emitter treats specially.
TRICKY = st.sampled_from(
    [
        "",
        " ",
        "yes",
        "No",
        "null",
        "~",
        "true",
        "0x1F",
        "1e3",
        "12:30",
        "-",
        "- a",
        "a: b",
        "#x",
        "a #b",
        "'",
        '"',
        "line\nbreak",
        "trailing ",
        " leading",
        "tab\there",
        "é",
        "😀",
        "\u2028",
        "{a}",
        "[1]",
        "*x",
        "&y",
        "!tag",
        "%",
        "@",
        "`",
        "|",
        ">",
        "2024-01-01",
        "2024-01-01T10:00:00+00:00",
        "...",
        "---",
        "=",
        "<<",
        "x" * 200,
    ]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), TRICKY, st.text(max_size=40))
KEYS = st.one_of(TRICKY, st.text(max_size=12))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_plain_metadata_renders_exactly_as_yaml_dump(data: dict[str, Any]) -> None:
    assert render_yaml(data) == dumped(data)


def test_a_ticket_s_metadata_renders_as_before() -> None:
    data = {
        "display_name": "T000001: Ticket 0: login fails",
        "extra": {"comment_count": "3", "labels": [], "project": "", "tags": ["a", "b: c"], "title": "Ticket 0: x"},
        "empty": {},
    }
    assert render_yaml(data) == dumped(data)
    assert yaml.safe_load(render_yaml(data)) == data


def test_what_it_does_not_build_goes_through_yaml_dump_whole() -> None:
    shared = ["x", "y"]
    for data in (
        {"when": datetime(2024, 5, 1, 10, tzinfo=UTC), "n": 1.5},  # dates and floats
        {"a": shared, "b": shared},  # one list reached twice: an anchor and an alias
        {"mixed": {1: "int key", "s": "str key"}},  # keys that do not sort
    ):
        assert render_yaml(data) == dumped(data)
    assert "&id001" in render_yaml({"a": shared, "b": shared})

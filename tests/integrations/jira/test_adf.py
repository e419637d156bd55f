"""The ADF → text walker: one row per node kind, a whole document, and robustness on arbitrary JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_manager.collectors.tickets.integrations._jira_adf import MAX_DEPTH, adf_to_text, text_to_adf

FIXTURES = Path(__file__).parent / "fixtures"


def doc(*content: Any) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": list(content)}


def p(*inline: Any) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(inline)}


def t(text: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = list(marks)
    return node


def item(*content: Any) -> dict[str, Any]:
    return {"type": "listItem", "content": list(content)}


def link(href: str) -> dict[str, Any]:
    return {"type": "link", "attrs": {"href": href}}


CASES = [
    # (id, input, expected text)
    ("none", None, ""),
    ("wiki markup string passes through", "h1. Title\n* item {code}x{code}", "h1. Title\n* item {code}x{code}"),
    ("number", 42, "42"),
    ("empty doc", doc(), ""),
    ("paragraph", doc(p(t("hello"))), "hello"),
    ("paragraphs are separated by a blank line", doc(p(t("one")), p(t("two"))), "one\n\ntwo"),
    ("empty paragraph inside keeps the spacing", doc(p(t("a")), p(), p(t("b"))), "a\n\n\n\nb"),
    ("heading levels", doc({"type": "heading", "attrs": {"level": 2}, "content": [t("Title")]}), "## Title"),
    (
        "heading level out of range is clamped",
        doc({"type": "heading", "attrs": {"level": 9}, "content": [t("T")]}),
        "###### T",
    ),
    ("heading without level", doc({"type": "heading", "content": [t("T")]}), "# T"),
    (
        "bold and italic marks are plain",
        doc(p(t("bold", {"type": "strong"}), t(" "), t("it", {"type": "em"}))),
        "bold it",
    ),
    ("code mark", doc(p(t("run "), t("ls -l", {"type": "code"}))), "run `ls -l`"),
    ("link with different text", doc(p(t("docs", link("https://x.example/d")))), "docs (https://x.example/d)"),
    ("link whose text is the url", doc(p(t("https://x.example", link("https://x.example")))), "https://x.example"),
    ("hard break", doc(p(t("a"), {"type": "hardBreak"}, t("b"))), "a\nb"),
    ("mention with @text", doc(p({"type": "mention", "attrs": {"id": "1", "text": "@Ann"}})), "@Ann"),
    ("mention without @", doc(p({"type": "mention", "attrs": {"id": "1", "text": "Ann"}})), "@Ann"),
    ("mention with only an id", doc(p({"type": "mention", "attrs": {"id": "557058:x"}})), "@557058:x"),
    ("emoji text", doc(p({"type": "emoji", "attrs": {"shortName": ":smile:", "text": "😄"}})), "😄"),
    ("emoji shortName", doc(p({"type": "emoji", "attrs": {"shortName": ":party:"}})), ":party:"),
    (
        "bullet list",
        doc({"type": "bulletList", "content": [item(p(t("a"))), item(p(t("b")))]}),
        "- a\n- b",
    ),
    (
        "ordered list starts at 1",
        doc({"type": "orderedList", "content": [item(p(t("a"))), item(p(t("b")))]}),
        "1. a\n2. b",
    ),
    (
        "ordered list honours attrs.order",
        doc({"type": "orderedList", "attrs": {"order": 9}, "content": [item(p(t("a"))), item(p(t("b")))]}),
        "9. a\n10. b",
    ),
    (
        "ordered list with a bad order falls back to 1",
        doc({"type": "orderedList", "attrs": {"order": -3}, "content": [item(p(t("a")))]}),
        "1. a",
    ),
    (
        "nested lists are indented under their item",
        doc(
            {
                "type": "bulletList",
                "content": [
                    item(
                        p(t("top")),
                        {
                            "type": "orderedList",
                            "content": [item(p(t("one")), {"type": "bulletList", "content": [item(p(t("deep")))]})],
                        },
                    ),
                    item(p(t("next"))),
                ],
            }
        ),
        "- top\n  1. one\n     - deep\n- next",
    ),
    (
        "list item with two paragraphs",
        doc({"type": "bulletList", "content": [item(p(t("first")), p(t("second")))]}),
        "- first\n  second",
    ),
    (
        "code block with language",
        doc({"type": "codeBlock", "attrs": {"language": "sql"}, "content": [t("SELECT 1;")]}),
        "```sql\nSELECT 1;\n```",
    ),
    (
        "code block without language",
        doc({"type": "codeBlock", "content": [t("x = 1\ny = 2")]}),
        "```\nx = 1\ny = 2\n```",
    ),
    ("empty code block", doc({"type": "codeBlock"}), "```\n\n```"),
    ("blockquote", doc({"type": "blockquote", "content": [p(t("q1")), p(t("q2"))]}), "> q1\n>\n> q2"),
    (
        "table with header row",
        doc(
            {
                "type": "table",
                "content": [
                    {
                        "type": "tableRow",
                        "content": [
                            {"type": "tableHeader", "content": [p(t("a"))]},
                            {"type": "tableHeader", "content": [p(t("b"))]},
                        ],
                    },
                    {
                        "type": "tableRow",
                        "content": [
                            {"type": "tableCell", "content": [p(t("1"))]},
                            {"type": "tableCell", "content": [p(t("x|y"))]},
                        ],
                    },
                ],
            }
        ),
        "| a | b |\n| --- | --- |\n| 1 | x\\|y |",
    ),
    (
        "table without header",
        doc(
            {
                "type": "table",
                "content": [
                    {
                        "type": "tableRow",
                        "content": [{"type": "tableCell", "content": [p(t("only"))]}, {"type": "tableCell"}],
                    }
                ],
            }
        ),
        "| only |  |",
    ),
    ("panel", doc({"type": "panel", "attrs": {"panelType": "note"}, "content": [p(t("careful"))]}), "Note: careful"),
    ("panel without type", doc({"type": "panel", "content": [p(t("x"))]}), "Info: x"),
    ("rule", doc(p(t("a")), {"type": "rule"}, p(t("b"))), "a\n\n---\n\nb"),
    (
        "media single",
        doc({"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "abc", "alt": "shot.png"}}]}),
        "[attachment: shot.png]",
    ),
    ("media without name", doc({"type": "mediaGroup", "content": [{"type": "media", "attrs": {}}]}), "[attachment]"),
    ("media inline", doc(p(t("see "), {"type": "mediaInline", "attrs": {"id": "m1"}})), "see [attachment: m1]"),
    ("status", doc(p({"type": "status", "attrs": {"text": "DONE", "color": "green"}})), "[DONE]"),
    ("date", doc(p({"type": "date", "attrs": {"timestamp": "1714521600000"}})), "2024-05-01"),
    ("date that is not a number", doc(p({"type": "date", "attrs": {"timestamp": "soon"}})), "soon"),
    ("expand", doc({"type": "expand", "attrs": {"title": "Details"}, "content": [p(t("hidden"))]}), "Details\nhidden"),
    ("nested expand without title", doc({"type": "nestedExpand", "content": [p(t("x"))]}), "x"),
    ("inline card", doc(p({"type": "inlineCard", "attrs": {"url": "https://a.example/1"}})), "https://a.example/1"),
    (
        "block card with data",
        doc({"type": "blockCard", "attrs": {"data": {"url": "https://b.example"}}}),
        "https://b.example",
    ),
    (
        "task list",
        doc(
            {
                "type": "taskList",
                "content": [
                    {"type": "taskItem", "attrs": {"state": "DONE"}, "content": [t("a")]},
                    {"type": "taskItem", "attrs": {"state": "TODO"}, "content": [t("b")]},
                ],
            }
        ),
        "[x] a\n[ ] b",
    ),
    (
        "decision list",
        doc(
            {
                "type": "decisionList",
                "content": [{"type": "decisionItem", "attrs": {"state": "DECIDED"}, "content": [t("ship it")]}],
            }
        ),
        "- ship it",
    ),
    ("placeholder is a hint, not content", doc(p({"type": "placeholder", "attrs": {"text": "Type here"}})), ""),
    ("unknown block keeps its text", doc({"type": "fancyNewThing", "content": [p(t("kept"))]}), "kept"),
    ("unknown inline keeps its text", doc(p(t("a "), {"type": "sparkle", "text": "✨"}, t(" b"))), "a ✨ b"),
    (
        "stray inline nodes at top level form a paragraph",
        doc(t("loose "), t("text"), p(t("para"))),
        "loose text\n\npara",
    ),
    ("a bare list of nodes", [p(t("one")), p(t("two"))], "one\n\ntwo"),
    ("a single node", p(t("solo")), "solo"),
    ("content that is a single dict", {"type": "doc", "content": p(t("wrapped"))}, "wrapped"),
    ("string children", {"type": "doc", "content": ["raw string"]}, "raw string"),
    ("non-string text is ignored", doc(p({"type": "text", "text": 5})), ""),
    ("attrs that are not a mapping", doc({"type": "heading", "attrs": [1], "content": [t("T")]}), "# T"),
    ("unicode survives", doc(p(t("Grüße 你好 שלום 👩‍💻 e\u0301"))), "Grüße 你好 שלום 👩‍💻 e\u0301"),
]


@pytest.mark.parametrize(("value", "expected"), [pytest.param(v, e, id=i) for i, v, e in CASES])
def test_adf_to_text(value: Any, expected: str) -> None:
    assert adf_to_text(value) == expected


def test_every_node_kind_document_matches_its_expected_text() -> None:
    document = json.loads((FIXTURES / "adf_every_node.json").read_text(encoding="utf-8"))
    expected = (FIXTURES / "adf_every_node.txt").read_text(encoding="utf-8").rstrip("\n")
    assert adf_to_text(document) == expected


def test_a_tree_deeper_than_the_limit_is_flattened_not_a_recursion_error() -> None:
    node: dict[str, Any] = p(t("bottom"))
    for _ in range(5000):
        node = {"type": "blockquote", "content": [node]}
    text = adf_to_text(doc(node))
    assert "bottom" in text
    assert MAX_DEPTH < 5000


def test_deeply_nested_plain_lists_do_not_recurse() -> None:
    nested: Any = [t("x")]
    for _ in range(5000):
        nested = [nested]
    assert adf_to_text({"type": "doc", "content": nested}) == "x"


def test_text_to_adf_shape() -> None:
    assert text_to_adf("a\nb\n\nc") == {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [{"type": "text", "text": "a"}, {"type": "hardBreak"}, {"type": "text", "text": "b"}],
            },
            {"type": "paragraph", "content": [{"type": "text", "text": "c"}]},
        ],
    }
    assert text_to_adf("") == {"type": "doc", "version": 1, "content": []}
    assert text_to_adf("x\r\ny") == text_to_adf("x\ny")


# -- properties -----------------------------------------------------------------------------------------
_NODE_TYPES = st.sampled_from(
    ["doc", "paragraph", "text", "heading", "bulletList", "orderedList", "listItem", "codeBlock", "blockquote", "table",
     "tableRow", "tableCell", "tableHeader", "mention", "emoji", "hardBreak", "panel", "rule", "media", "mediaSingle",
     "mediaGroup", "mediaInline", "status", "date", "expand", "nestedExpand", "inlineCard", "blockCard", "taskList",
     "taskItem", "decisionList", "decisionItem", "placeholder", "unknownThing"]
)  # fmt: skip
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8))
_KEYS = st.sampled_from(
    ["type", "content", "text", "attrs", "marks", "level", "order", "href", "language", "timestamp", "state", "title"]
)


def _json_like(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    node = st.fixed_dictionaries(
        {"type": st.one_of(_NODE_TYPES, _SCALARS)},
        optional={
            "content": st.one_of(children, st.lists(children, max_size=4)),
            "attrs": st.one_of(st.dictionaries(_KEYS, st.one_of(_SCALARS, children), max_size=4), children),
            "text": st.one_of(st.text(max_size=10), _SCALARS),
            "marks": st.one_of(
                st.lists(
                    st.one_of(children, st.fixed_dictionaries({"type": st.just("link"), "attrs": children})), max_size=3
                ),
                _SCALARS,
            ),
        },
    )
    return st.one_of(node, st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=3))


ARBITRARY = st.recursive(_SCALARS, _json_like, max_leaves=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ARBITRARY)
def test_walker_never_crashes_on_arbitrary_json(value: Any) -> None:
    assert isinstance(adf_to_text(value), str)


_LINES = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), min_size=1, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_LINES, min_size=1, max_size=3), min_size=1, max_size=4))
def test_text_round_trips_through_adf(paragraphs: list[list[str]]) -> None:
    text = "\n\n".join("\n".join(lines) for lines in paragraphs)
    assert adf_to_text(text_to_adf(text)) == text

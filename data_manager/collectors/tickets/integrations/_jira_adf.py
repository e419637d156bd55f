"""Atlassian Document Format (ADF) ↔ readable plain text, for Jira Cloud's REST v3.

v3 sends descriptions and comment bodies as ADF JSON trees; downstream indexers want text a person
could read, so this walker renders the tree as plain text with light, unambiguous markers (list
bullets, `#` headings, fenced code, `> ` quotes, `| a | b |` table rows). It never raises: input
from a server or webhook can be any JSON, so unknown or malformed nodes keep whatever text they have.
A v2 wiki-markup string passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

MAX_DEPTH = 60  # deeper trees are flattened to their text instead of recursing (no RecursionError)

INLINE_TYPES = frozenset(
    {
        "text",
        "hardBreak",
        "mention",
        "emoji",
        "inlineCard",
        "status",
        "date",
        "mediaInline",
        "placeholder",
        "inlineExtension",
    }
)
_LIST_TYPES = frozenset({"bulletList", "orderedList", "taskList", "decisionList"})


def adf_to_text(value: Any) -> str:
    """Readable text from an ADF document, node or node list; a string is returned as is; None → ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return _blocks(_children(value), 0).strip("\n")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def text_to_adf(text: str) -> dict[str, Any]:
    """An ADF document for plain text: blank lines separate paragraphs, single newlines become hard breaks.

    `adf_to_text(text_to_adf(t)) == t` for any text without leading/trailing newlines (tested).
    """
    normalised = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    content: list[dict[str, Any]] = []
    for paragraph in normalised.split("\n\n") if normalised else []:
        inline: list[dict[str, Any]] = []
        for index, line in enumerate(paragraph.split("\n")):
            if index:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": inline} if inline else {"type": "paragraph"})
    return {"type": "doc", "version": 1, "content": content}


# -- tree access that tolerates anything ----------------------------------------------------------
def _children(value: Any) -> list[Any]:
    """A node's children (or a list of nodes) as a flat list of dicts and strings."""
    if isinstance(value, dict):
        value = value.get("content")
        if isinstance(value, dict):
            value = [value]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        return []
    flat: list[Any] = []
    stack: list[Any] = list(reversed(value))
    while stack:  # iterative, so a deeply nested list cannot exhaust the recursion limit
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, (dict, str)):
            flat.append(item)
    return flat


def _type(node: Any) -> str:
    kind = node.get("type") if isinstance(node, dict) else None
    return kind if isinstance(kind, str) else ""


def _attrs(node: dict[str, Any]) -> dict[str, Any]:
    attrs = node.get("attrs")
    return attrs if isinstance(attrs, dict) else {}


def _attr_text(node: dict[str, Any], *names: str) -> str:
    """The first non-empty string (or number) attribute among `names`."""
    attrs = _attrs(node)
    for name in names:
        value = attrs.get(name)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    return ""


def _is_inline(node: Any) -> bool:
    if isinstance(node, str):
        return True
    kind = _type(node)
    if kind in INLINE_TYPES:
        return True
    # An unknown node that carries text and no children reads as inline text.
    return kind not in _RENDERERS and isinstance(node.get("text"), str) and not _children(node)


def _flat_text(value: Any) -> str:
    """Every `text` string in a tree, iteratively: the fallback for trees too deep to walk."""
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            if isinstance(item.get("text"), str):
                parts.append(item["text"])
            content = item.get("content")
            if isinstance(content, (list, dict)):
                stack.append(content)
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return " ".join(part for part in parts if part)


# -- blocks ----------------------------------------------------------------------------------------
def _blocks(nodes: Iterable[Any], depth: int, separator: str = "\n\n") -> str:
    """Render a sequence of block nodes; runs of stray inline nodes become one paragraph."""
    rendered: list[str] = []
    inline_run: list[Any] = []
    for node in nodes:
        if _is_inline(node):
            inline_run.append(node)
            continue
        if inline_run:
            rendered.append(_inline(inline_run, depth))
            inline_run = []
        rendered.append(_block(node, depth))
    if inline_run:
        rendered.append(_inline(inline_run, depth))
    return separator.join(rendered)


def _block(node: dict[str, Any], depth: int) -> str:
    if depth > MAX_DEPTH:
        return _flat_text(node)
    renderer = _RENDERERS.get(_type(node))
    if renderer is not None:
        return renderer(node, depth + 1)
    # Unknown block (extension, layout, future node kinds): keep its own text and its children's.
    own = node.get("text") if isinstance(node.get("text"), str) else ""
    inner = _blocks(_children(node), depth + 1)
    return "\n".join(part for part in (own, inner) if part)


def _paragraph(node: dict[str, Any], depth: int) -> str:
    return _inline(_children(node), depth)


def _heading(node: dict[str, Any], depth: int) -> str:
    text = _inline(_children(node), depth)
    level = _attrs(node).get("level")
    level = level if isinstance(level, int) and not isinstance(level, bool) else 1
    return f"{'#' * min(6, max(1, level))} {text}" if text else ""


def _indent_rest(text: str, marker: str) -> str:
    """`marker` before the first line; later lines indented to line up under the item's text."""
    pad = " " * len(marker)
    lines = text.split("\n")
    return "\n".join([marker + lines[0]] + [(pad + line) if line else line for line in lines[1:]])


def _list(node: dict[str, Any], depth: int) -> str:
    kind = _type(node)
    start = _attrs(node).get("order", 1)
    if isinstance(start, str) and start.strip().isdigit():
        start = int(start)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        start = 1
    lines: list[str] = []
    for index, item in enumerate(_children(node)):
        if kind == "orderedList":
            marker = f"{start + index}. "
        elif kind == "taskList":
            marker = "[x] " if isinstance(item, dict) and _attr_text(item, "state").upper() == "DONE" else "[ ] "
        else:
            marker = "- "
        if isinstance(item, dict) and _type(item) in _LIST_TYPES:
            lines.append(_indent_rest(_block(item, depth), "  "))  # a list nested directly in a list
            continue
        if isinstance(item, dict) and _type(item) in {"listItem", "taskItem", "decisionItem"}:
            body = _blocks(_children(item), depth + 1, "\n")
        else:
            body = _blocks([item], depth + 1, "\n")
        lines.append(_indent_rest(body, marker))
    return "\n".join(lines)


def _code_block(node: dict[str, Any], depth: int) -> str:
    language = _attr_text(node, "language")
    code = "".join(
        child
        if isinstance(child, str)
        else (child.get("text") if isinstance(child.get("text"), str) else _flat_text(child))
        for child in _children(node)
    )
    return f"```{language}\n{code}\n```"


def _blockquote(node: dict[str, Any], depth: int) -> str:
    body = _blocks(_children(node), depth)
    return "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))


def _rule(node: dict[str, Any], depth: int) -> str:
    return "---"


def _panel(node: dict[str, Any], depth: int) -> str:
    label = (_attr_text(node, "panelType") or "info").capitalize()
    body = _blocks(_children(node), depth)
    return f"{label}: {body}" if body else f"{label}:"


def _expand(node: dict[str, Any], depth: int) -> str:
    title = _attr_text(node, "title")
    body = _blocks(_children(node), depth)
    return "\n".join(part for part in (title, body) if part)


def _table_cell(cell: Any, depth: int) -> str:
    text = _blocks(_children(cell) if isinstance(cell, dict) else [cell], depth, " ")
    return " ".join(text.split("\n")).replace("|", "\\|").strip()


def _table(node: dict[str, Any], depth: int) -> str:
    lines: list[str] = []
    for row_index, row in enumerate(_children(node)):
        cells = _children(row) if isinstance(row, dict) and _type(row) == "tableRow" else [row]
        lines.append("| " + " | ".join(_table_cell(cell, depth + 1) for cell in cells) + " |")
        if row_index == 0 and cells and all(_type(cell) == "tableHeader" for cell in cells):
            lines.append("| " + " | ".join("---" for _ in cells) + " |")
    return "\n".join(lines)


def _media(node: dict[str, Any], depth: int) -> str:
    name = _attr_text(node, "alt", "filename", "name", "id")
    return f"[attachment: {name}]" if name else "[attachment]"


def _media_group(node: dict[str, Any], depth: int) -> str:
    return _blocks(_children(node), depth, "\n")


def _card(node: dict[str, Any], depth: int) -> str:
    url = _attr_text(node, "url")
    if not url:
        data = _attrs(node).get("data")
        if isinstance(data, dict):
            url = next((str(data[k]) for k in ("url", "name") if isinstance(data.get(k), str)), "")
    return url


def _container(node: dict[str, Any], depth: int) -> str:
    return _blocks(_children(node), depth)


_RENDERERS: dict[str, Callable[[dict[str, Any], int], str]] = {
    "doc": _container,
    "paragraph": _paragraph,
    "heading": _heading,
    "bulletList": _list,
    "orderedList": _list,
    "taskList": _list,
    "decisionList": _list,
    "listItem": _container,
    "taskItem": _paragraph,
    "decisionItem": _paragraph,
    "codeBlock": _code_block,
    "blockquote": _blockquote,
    "rule": _rule,
    "panel": _panel,
    "expand": _expand,
    "nestedExpand": _expand,
    "table": _table,
    "media": _media,
    "mediaSingle": _media_group,
    "mediaGroup": _media_group,
    "caption": _paragraph,
    "blockCard": _card,
    "embedCard": _card,
    "layoutSection": _container,
    "layoutColumn": _container,
    "bodiedExtension": _container,
}


# -- inline ----------------------------------------------------------------------------------------
def _inline(nodes: Iterable[Any], depth: int) -> str:
    return "".join(_inline_node(node, depth) for node in nodes)


def _marks(node: dict[str, Any]) -> list[dict[str, Any]]:
    marks = node.get("marks")
    return [mark for mark in marks if isinstance(mark, dict)] if isinstance(marks, list) else []


def _text(node: dict[str, Any]) -> str:
    text = node.get("text")
    text = text if isinstance(text, str) else ""
    href = ""
    for mark in _marks(node):
        if _type(mark) == "code" and text:
            text = f"`{text}`"
        elif _type(mark) == "link":
            href = _attr_text(mark, "href")
    if href and href != node.get("text"):
        return f"{text} ({href})" if text else href
    return text


def _date(node: dict[str, Any]) -> str:
    raw = _attr_text(node, "timestamp")
    try:
        return datetime.fromtimestamp(int(float(raw)) / 1000, tz=UTC).date().isoformat()
    except (ValueError, OverflowError, OSError):
        return raw


def _inline_node(node: Any, depth: int) -> str:
    if isinstance(node, str):
        return node
    if depth > MAX_DEPTH:
        return _flat_text(node)
    kind = _type(node)
    if kind == "text":
        return _text(node)
    if kind == "hardBreak":
        return "\n"
    if kind == "mention":
        name = _attr_text(node, "text", "displayName", "id")
        return name if name.startswith("@") or not name else f"@{name}"
    if kind == "emoji":
        return _attr_text(node, "text", "shortName")
    if kind == "inlineCard":
        return _card(node, depth)
    if kind == "status":
        text = _attr_text(node, "text")
        return f"[{text}]" if text else ""
    if kind == "date":
        return _date(node)
    if kind == "mediaInline":
        return _media(node, depth)
    if kind == "placeholder":
        return ""  # editor hint text, not content
    if kind in _RENDERERS:  # a block inside inline content (malformed, but keep its text)
        return _block(node, depth)
    own = node.get("text") if isinstance(node.get("text"), str) else ""
    return own + _inline(_children(node), depth + 1)

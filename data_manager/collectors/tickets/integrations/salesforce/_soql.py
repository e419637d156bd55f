"""Building SOQL safely: every value quoted, dates in the literal form, queries under the length limits.

Salesforce reserves `'` and `\\` inside string literals (SOQL and SOSL Reference, "Quoted String
Escape Sequences"): a backslash anywhere else is an error, so quoting escapes exactly the documented
sequences and nothing else. A query travels in the URL of `GET /query?q=`; URI plus headers are limited
to 16,384 bytes (knowledge article 000386264: 414/431 beyond it), and a statement to 100,000 characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from urllib.parse import quote_plus

from data_manager.collectors.tickets.errors import ConfigError

MAX_STATEMENT_CHARS = 100_000
# What we allow the encoded `q=` value to take, leaving room for the path and our headers in 16,384 bytes.
MAX_ENCODED_QUERY_BYTES = 12_000
MAX_WHERE_STRING_CHARS = 4_000  # "Strings in WHERE clauses can't exceed 4,000 characters"

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", '"': '\\"'}


class QueryTooLong(ValueError):
    """A query would exceed the documented URI or statement limits."""


def quote(value: str) -> str:
    """`value` as a SOQL string literal: `'Bob\\'s'`."""
    text = str(value)
    if len(text) > MAX_WHERE_STRING_CHARS:
        raise QueryTooLong(f"a SOQL string may hold at most {MAX_WHERE_STRING_CHARS} characters")
    return "'" + "".join(_ESCAPES.get(char, char) for char in text) + "'"


def datetime_literal(moment: datetime) -> str:
    """`2024-05-01T09:55:00Z`: unquoted, UTC, whole seconds (SOQL dateTime format)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encoded_length(soql: str) -> int:
    return len(quote_plus(soql))


def check_length(soql: str) -> str:
    """`soql` unchanged, or `QueryTooLong` if it would not fit the limits."""
    if len(soql) > MAX_STATEMENT_CHARS or encoded_length(soql) > MAX_ENCODED_QUERY_BYTES:
        raise QueryTooLong(
            f"SOQL query of {len(soql)} characters ({encoded_length(soql)} URL-encoded) exceeds the limit"
        )
    return soql


def in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote(v) for v in values) + ")"


def chunk_for_in(
    values: Sequence[str], render: Callable[[list[str]], str], *, max_items: int = 200
) -> Iterator[list[str]]:
    """Split `values` into runs whose query `render(run)` fits the limits (and at most `max_items` each)."""
    run: list[str] = []
    for value in values:
        candidate = [*run, value]
        too_long = len(candidate) > max_items
        if not too_long:
            try:
                check_length(render(candidate))
            except QueryTooLong:
                too_long = True
        if too_long:
            if not run:
                raise QueryTooLong(f"a single value does not fit in a query: {value[:40]!r}")
            yield run
            run = [value]
        else:
            run = candidate
    if run:
        yield run


def validate_where(clause: str | None, key_path: str) -> str | None:
    """A configured `soql_where`: balanced quotes and parentheses, one condition, no statement tail.

    It is the administrator's own SOQL, so it is not quoted; but it is wrapped in parentheses and
    ANDed with ours, so it must not be able to close that parenthesis or append ORDER BY / LIMIT.
    """
    if clause is None or not str(clause).strip():
        return None
    text = str(clause).strip()
    depth = 0
    in_string = False
    index = 0
    outside: list[str] = []
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index += 2
                continue
            if char == "'":
                in_string = False
        elif char == "'":
            in_string = True
        else:
            outside.append(char)
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth < 0:
                    raise ConfigError("has a ')' without its '('", key_path)
            elif char == ";":
                raise ConfigError("must be one WHERE condition (no ';')", key_path)
        index += 1
    if in_string:
        raise ConfigError("has an unterminated string literal", key_path)
    if depth:
        raise ConfigError("has unbalanced parentheses", key_path)
    words = re.findall(r"[A-Za-z_]+", "".join(outside).upper())
    for keyword in ("ORDER", "LIMIT", "OFFSET", "SELECT", "FROM", "GROUP", "HAVING"):
        if keyword in words:
            raise ConfigError(f"must be a WHERE condition only (found {keyword})", key_path)
    return text

"""The SOQL subset the fake Salesforce understands, parsed the way Salesforce documents it.

Supported: `SELECT fields[, (SELECT fields FROM <child relationship> [WHERE] [ORDER BY] [LIMIT])]
FROM <object> [WHERE cond] [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n]`, with `=`,
`!=`, `<`, `<=`, `>`, `>=`, `LIKE`, `IN`, `NOT IN`, `AND`, `OR`, `NOT` and parentheses. What the
documentation says, and the fake enforces (so the client cannot rely on leniency):

* string literals are single-quoted; inside them only the documented escapes are valid (`\\n \\r \\t
  \\b \\f \\" \\' \\\\ \\uXXXX`, and `\\_ \\%` in LIKE); any other backslash is an error
  ("Quoted String Escape Sequences");
* dateTime literals are **unquoted** (`2024-05-01T09:55:00Z`); a quoted date is a string
  ("Date Formats and Date Literals in WHERE");
* AND and OR cannot be mixed at one level without parentheses (MALFORMED_QUERY);
* string comparisons are case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})(?![\dT])
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t", "b": "\b", "B": "\b",
            "f": "\f", "F": "\f", '"': '"', "'": "'", "\\": "\\"}  # fmt: skip


@dataclass
class Token:
    kind: str
    value: Any
    raw: str


def _read_string(text: str, start: int) -> tuple[str, int, bool]:
    """The literal starting after the quote at `start`; (value, end index, has LIKE escapes)."""
    out: list[str] = []
    index = start + 1
    like_escape = False
    while index < len(text):
        char = text[index]
        if char == "'":
            return "".join(out), index + 1, like_escape
        if char == "\\":
            if index + 1 >= len(text):
                break
            nxt = text[index + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                index += 2
                continue
            if nxt in "_%":
                out.append("\\" + nxt)  # kept for LIKE; invalid elsewhere (checked by the comparison)
                like_escape = True
                index += 2
                continue
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[index + 2 : index + 6] or ""):
                out.append(chr(int(text[index + 2 : index + 6], 16)))
                index += 6
                continue
            raise SoqlError("MALFORMED_QUERY", f"Invalid string literal: illegal escape sequence \\{nxt}")
        out.append(char)
        index += 1
    raise SoqlError("MALFORMED_QUERY", "unterminated string literal")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        match = _TOKEN.match(text, index)
        if not match or match.end() == index:
            raise SoqlError("MALFORMED_QUERY", f"unexpected character at {index}: {text[index : index + 20]!r}")
        if match.group("string"):
            value, end, like = _read_string(text, match.start("string"))
            tokens.append(Token("like_string" if like else "string", value, text[index:end]))
            index = end
            continue
        kind = match.lastgroup or ""
        raw = match.group(kind)
        value: Any = raw
        if kind == "datetime":
            value = datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
        elif kind == "number":
            value = float(raw) if "." in raw else int(raw)
        elif kind == "word":
            upper = raw.upper()
            if upper in ("TRUE", "FALSE"):
                kind, value = "bool", upper == "TRUE"
            elif upper == "NULL":
                kind, value = "null", None
        tokens.append(Token(kind, value, raw))
        index = match.end()
    return tokens


# -- the parsed query --------------------------------------------------------------------------------
@dataclass
class Condition:
    """A predicate over a record (a callable taking a field resolver)."""

    test: Callable[[Callable[[str], Any]], bool]
    fields: list[str] = field(default_factory=list)


@dataclass
class Query:
    fields: list[str]
    sobject: str
    where: Condition | None = None
    order_by: list[tuple[str, bool, bool]] = field(default_factory=list)  # (field, descending, nulls_last)
    limit: int | None = None
    subqueries: list[Query] = field(default_factory=list)


_KEYWORDS = {"SELECT", "FROM", "WHERE", "ORDER", "BY", "LIMIT", "AND", "OR", "NOT", "IN", "LIKE", "ASC", "DESC",
             "NULLS", "FIRST", "LAST"}  # fmt: skip


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def keyword(self, word: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token.kind == "word" and str(token.value).upper() == word

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            found = self.peek()
            raise SoqlError("MALFORMED_QUERY", f"expected {word}, found {found.raw if found else 'end of query'}")
        self.pos += 1

    def expect(self, kind: str, value: str | None = None) -> Token:
        token = self.peek()
        if token is None or token.kind != kind or (value is not None and token.value != value):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {token.raw if token else 'end of query'}")
        self.pos += 1
        return token

    def field_name(self) -> str:
        token = self.expect("word")
        if str(token.value).upper() in _KEYWORDS:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {token.raw}")
        return str(token.value)

    def query(self, nested: bool = False) -> Query:
        self.expect_keyword("SELECT")
        fields: list[str] = []
        subqueries: list[Query] = []
        while True:
            token = self.peek()
            if token is not None and token.kind == "punct" and token.value == "(":
                if nested:
                    raise SoqlError("MALFORMED_QUERY", "nested subqueries are not supported here")
                self.pos += 1
                subqueries.append(self.query(nested=True))
                self.expect("punct", ")")
            else:
                fields.append(self.field_name())
            token = self.peek()
            if token is not None and token.kind == "punct" and token.value == ",":
                self.pos += 1
                continue
            break
        self.expect_keyword("FROM")
        sobject = self.field_name()
        query = Query(fields, sobject, subqueries=subqueries)
        if self.keyword("WHERE"):
            self.pos += 1
            query.where = self.condition()
        if self.keyword("ORDER"):
            self.pos += 1
            self.expect_keyword("BY")
            while True:
                name = self.field_name()
                descending = False
                if self.keyword("ASC") or self.keyword("DESC"):
                    descending = self.keyword("DESC")
                    self.pos += 1
                nulls_last = descending
                if self.keyword("NULLS"):
                    self.pos += 1
                    nulls_last = self.keyword("LAST")
                    if not (self.keyword("LAST") or self.keyword("FIRST")):
                        raise SoqlError("MALFORMED_QUERY", "expected FIRST or LAST after NULLS")
                    self.pos += 1
                query.order_by.append((name, descending, nulls_last))
                token = self.peek()
                if token is not None and token.kind == "punct" and token.value == ",":
                    self.pos += 1
                    continue
                break
        if self.keyword("LIMIT"):
            self.pos += 1
            limit = self.expect("number")
            query.limit = int(limit.value)
        return query

    # condition := factor ((AND factor)* | (OR factor)*)   -- no mixing without parentheses
    def condition(self) -> Condition:
        parts = [self.factor()]
        joiner: str | None = None
        while self.keyword("AND") or self.keyword("OR"):
            word = str(self.peek().value).upper()  # type: ignore[union-attr]
            if joiner is not None and word != joiner:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: {word}")  # mixing needs parentheses
            joiner = word
            self.pos += 1
            parts.append(self.factor())
        if len(parts) == 1:
            return parts[0]
        combine = all if joiner == "AND" else any
        return Condition(lambda get, ps=parts: combine(p.test(get) for p in ps), [f for p in parts for f in p.fields])

    def factor(self) -> Condition:
        if self.keyword("NOT"):
            self.pos += 1
            inner = self.factor()
            return Condition(lambda get: not inner.test(get), inner.fields)
        token = self.peek()
        if token is not None and token.kind == "punct" and token.value == "(":
            self.pos += 1
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        name = self.field_name()
        negate = False
        if self.keyword("NOT") and self.keyword("IN", 1):
            negate = True
            self.pos += 1
        if self.keyword("IN"):
            self.pos += 1
            self.expect("punct", "(")
            values = [self.value()]
            while (tok := self.peek()) is not None and tok.kind == "punct" and tok.value == ",":
                self.pos += 1
                values.append(self.value())
            self.expect("punct", ")")
            return Condition(lambda get: negate != any(_equal(get(name), v) for v in values), [name])
        if self.keyword("LIKE"):
            self.pos += 1
            pattern = self.expect_any(("string", "like_string"))
            regex = _like_regex(str(pattern.value))
            return Condition(lambda get: get(name) is not None and bool(regex.fullmatch(str(get(name)))), [name])
        op = self.expect("op").value
        value = self.value()
        return Condition(lambda get: _compare(get(name), op, value), [name])

    def expect_any(self, kinds: tuple[str, ...]) -> Token:
        token = self.peek()
        if token is None or token.kind not in kinds:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {token.raw if token else 'end of query'}")
        self.pos += 1
        return token

    def value(self) -> Any:
        token = self.peek()
        if token is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        if token.kind == "like_string":
            raise SoqlError("MALFORMED_QUERY", "\\_ and \\% are valid only in LIKE expressions")
        if token.kind in ("string", "datetime", "number", "bool", "null", "date"):
            self.pos += 1
            return token.value
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {token.raw}")


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern) and pattern[index + 1] in "_%":
            out += re.escape(pattern[index + 1])
            index += 2
            continue
        out += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        index += 1
    return re.compile(out, re.IGNORECASE | re.DOTALL)


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _equal(left: Any, right: Any) -> bool:
    return _norm(left) == _norm(right)


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "=":
        return _equal(left, right)
    if op in ("!=", "<>"):
        return not _equal(left, right)
    if left is None or right is None:
        return False
    if isinstance(left, datetime) != isinstance(right, datetime):
        raise SoqlError("INVALID_FIELD", f"value of filter criterion is not of type dateTime: {right!r}")
    left, right = _norm(left), _norm(right)
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def parse(text: str) -> Query:
    parser = _Parser(tokenize(text))
    query = parser.query()
    if parser.peek() is not None:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {parser.peek().raw}")  # type: ignore[union-attr]
    return query

"""A small JQL engine for the fake Jira: enough of the language for realistic searches.

Supports AND / OR / NOT, parentheses, `= != > >= < <= ~ !~ IN, NOT IN, IS [NOT] EMPTY`, quoted and bare
values, absolute ("yyyy-MM-dd HH:mm", "yyyy/MM/dd", ...) and relative ("-15m", "-2d") dates read in
the server's time zone, and ORDER BY. Errors carry the messages Jira uses, so the fake answers 400
the way Jira does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any


class JqlError(ValueError):
    """A query Jira would refuse with 400; the messages are Jira's wording (one `errorMessages` entry each)."""

    def __init__(self, *messages: str) -> None:
        super().__init__(*messages[:1])
        self.messages = list(messages)


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|>=|<=|!~|=|>|<|~)
      | (?P<punct>[(),])
      | (?P<word>[^\s"'(),=!<>~]+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
_RELATIVE = re.compile(r"^([+-]?)(\d+)([mhdw])$")
_DATE_ERROR = (
    "Date value '{value}' for field '{field}' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', "
    "'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
)


@dataclass(frozen=True)
class Token:
    kind: str  # string | op | punct | word | keyword | end
    value: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise JqlError(f"Error in the JQL Query: The character '{text[position]}' is a reserved JQL character.")
        position = match.end()
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "word" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        tokens.append(Token(kind, value))
    tokens.append(Token("end", ""))
    return tokens


Predicate = Callable[[Any], bool]


@dataclass
class Query:
    where: Predicate | None  # None: no restriction at all (an "unbounded" query)
    order_by: list[tuple[str, bool]]  # (field, descending)


class FieldAccess:
    """How the engine reads an issue; the fake provides one."""

    def values(self, issue: Any, field: str) -> list[Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def is_date(self, field: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def known(self, field: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def sort_key(self, issue: Any, field: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def key_rank(self, key: str) -> Any:  # pragma: no cover - interface
        """Issue keys order by project, then number (PROJ-9 < PROJ-10)."""
        raise NotImplementedError

    def key_errors(self, field: str, values: Sequence[Any]) -> list[str]:
        """Jira's refusal of each issue key a `key` clause names that it cannot resolve; [] when all resolve."""
        return []


class Parser:
    def __init__(self, text: str, access: FieldAccess, zone: tzinfo, now: datetime) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.access = access
        self.zone = zone
        self.now = now

    # -- token helpers ---------------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.peek().kind == "keyword" and self.peek().value in words

    def expect_keyword(self, word: str) -> None:
        if not self.at_keyword(word):
            raise self.error(f"Expecting '{word.upper()}'")
        self.take()

    def error(self, what: str) -> JqlError:
        token = self.peek()
        found = token.value if token.kind != "end" else "the end of the query"
        return JqlError(f"Error in the JQL Query: {what} but got '{found}'.")

    # -- grammar ---------------------------------------------------------------------------------
    def parse(self) -> Query:
        where = None if self.at_keyword("order") or self.peek().kind == "end" else self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.at_keyword("order"):
            self.take()
            self.expect_keyword("by")
            while True:
                token = self.take()
                if token.kind not in {"word", "string"}:
                    raise self.error("Expecting a field name")
                name = token.value.lower()
                if not self.access.known(name) or name in {"labels", "text", "description", "comment"}:
                    raise JqlError(f"Not able to sort using field '{token.value}'.")
                descending = False
                if self.at_keyword("asc", "desc"):
                    descending = self.take().value == "desc"
                order.append((name, descending))
                if self.peek().kind == "punct" and self.peek().value == ",":
                    self.take()
                    continue
                break
        if self.peek().kind != "end":
            raise self.error("Expecting either 'OR' or 'AND'")
        return Query(where, order)

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.at_keyword("or"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda issue: any(p(issue) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.at_keyword("and"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else (lambda issue: all(p(issue) for p in parts))

    def not_expr(self) -> Predicate:
        if self.at_keyword("not"):
            self.take()
            inner = self.not_expr()
            return lambda issue: not inner(issue)
        if self.peek().kind == "punct" and self.peek().value == "(":
            self.take()
            inner = self.or_expr()
            if not (self.peek().kind == "punct" and self.peek().value == ")"):
                raise self.error("Expecting ')'")
            self.take()
            return inner
        return self.clause()

    def clause(self) -> Predicate:
        token = self.take()
        if token.kind not in {"word", "string"}:
            self.index -= 1
            raise self.error("Expecting a field name")
        field = token.value.lower()
        if not self.access.known(field):
            raise JqlError(f"Field '{token.value}' does not exist or you do not have permission to view it.")
        op_token = self.peek()
        if op_token.kind == "op":
            op = self.take().value
        elif self.at_keyword("in"):
            self.take()
            op = "in"
        elif self.at_keyword("not") and self.peek(1).kind == "keyword" and self.peek(1).value == "in":
            self.take(), self.take()
            op = "not in"
        elif self.at_keyword("is"):
            self.take()
            op = "is"
            if self.at_keyword("not"):
                self.take()
                op = "is not"
        else:
            raise self.error("Expecting operator")
        if op in {"is", "is not"}:
            if not self.at_keyword("empty", "null"):
                raise self.error("Expecting 'EMPTY' or 'NULL'")
            self.take()
            empty = op == "is"
            return lambda issue: (not self.access.values(issue, field)) == empty
        if op in {"in", "not in"}:
            values = self.value_list(field)
            self.check_keys(token.value, field, values)

            def hit(issue: Any) -> bool:
                return any(
                    self.matches(field, have, want) for have in self.access.values(issue, field) for want in values
                )

            return hit if op == "in" else (lambda issue: not hit(issue))
        value = self.value(field)
        if op in {"=", "!="}:
            self.check_keys(token.value, field, [value])
        return self.compare(field, op, value)

    def check_keys(self, written: str, field: str, values: Sequence[Any]) -> None:
        """Jira refuses a whole query (400) that names an issue key it cannot resolve: deleted, never
        existed, or not visible to the user; it does not just match nothing."""
        if field in {"key", "issuekey"}:
            errors = self.access.key_errors(written, [v for v in values if v is not None])
            if errors:
                raise JqlError(*errors)

    def value_list(self, field: str) -> list[Any]:
        if not (self.peek().kind == "punct" and self.peek().value == "("):
            raise self.error("Expecting '('")
        self.take()
        values = [self.value(field)]
        while self.peek().kind == "punct" and self.peek().value == ",":
            self.take()
            values.append(self.value(field))
        if not (self.peek().kind == "punct" and self.peek().value == ")"):
            raise self.error("Expecting ')'")
        self.take()
        return values

    def value(self, field: str) -> Any:
        token = self.take()
        if token.kind == "keyword" and token.value in {"empty", "null"}:
            return None
        if token.kind not in {"word", "string"}:
            self.index -= 1
            raise self.error("Expecting a value")
        if self.access.is_date(field):
            return self.date(field, token.value)
        return token.value

    def date(self, field: str, raw: str) -> datetime:
        relative = _RELATIVE.match(raw.strip())
        if relative:
            sign = -1 if relative.group(1) == "-" else 1
            amount = int(relative.group(2))
            unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[relative.group(3)]
            return self.now + sign * timedelta(**{unit: amount})
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(raw.strip(), fmt).replace(tzinfo=self.zone)
            except ValueError:
                continue
        raise JqlError(_DATE_ERROR.format(value=raw, field=field))

    # -- evaluation ------------------------------------------------------------------------------
    def matches(self, field: str, have: Any, want: Any) -> bool:
        if want is None:
            return have is None
        if isinstance(want, datetime):
            return have.replace(second=0, microsecond=0) == want
        return str(have).lower() == str(want).lower()

    def compare(self, field: str, op: str, want: Any) -> Predicate:
        access = self.access
        if op in {"~", "!~"}:
            needle = str(want).lower()
            contains = lambda issue: any(needle in str(v).lower() for v in access.values(issue, field))  # noqa: E731
            return contains if op == "~" else (lambda issue: not contains(issue))
        if op == "=":
            return lambda issue: (
                any(self.matches(field, v, want) for v in access.values(issue, field))
                if want is not None
                else not access.values(issue, field)
            )
        if op == "!=":
            return lambda issue: not any(self.matches(field, v, want) for v in access.values(issue, field))
        if want is None:
            raise JqlError(f"The operator '{op}' is not supported by the '{field}' field.")
        ordered: dict[str, Callable[[Any, Any], bool]] = {
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
        }
        compare = ordered[op]
        if access.is_date(field):
            return lambda issue: any(compare(v, want) for v in access.values(issue, field))
        if field in {"key", "issuekey", "id"}:
            target = access.key_rank(str(want))
            return lambda issue: compare(access.sort_key(issue, "key"), target)
        raise JqlError(f"The operator '{op}' is not supported by the '{field}' field.")


def parse(text: str, access: FieldAccess, zone: tzinfo, now: datetime) -> Query:
    return Parser(text or "", access, zone, now).parse()


def sort(issues: Sequence[Any], order_by: list[tuple[str, bool]], access: FieldAccess) -> list[Any]:
    """Stable multi-key sort: apply the keys from last to first."""
    result = list(issues)
    for field, descending in reversed(order_by):
        result.sort(key=lambda issue: access.sort_key(issue, field), reverse=descending)
    return result

"""Pure Jira helpers: JQL building, status mapping, restricted comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from data_manager.collectors.tickets.integrations.jira import (
    changed_jql,
    comment_is_restricted,
    display_name,
    jql_minute,
    map_status,
    strip_order_by,
)
from data_manager.collectors.tickets.model import Status


@pytest.mark.parametrize(
    ("jql", "expected"),
    [
        ("project = PROJ", "project = PROJ"),
        ("project = PROJ ORDER BY created DESC", "project = PROJ"),
        ("project = PROJ order   by rank", "project = PROJ"),
        ("project = PROJ\nORDER BY key", "project = PROJ"),
        ('summary ~ "order by" AND project = X', 'summary ~ "order by" AND project = X'),
        ('summary ~ "say \\"order by\\"" ORDER BY key', 'summary ~ "say \\"order by\\""'),
        ("labels = 'order by' ORDER BY key", "labels = 'order by'"),
        ("reorder by = 1", "reorder by = 1"),
        ("ORDER BY key", ""),
        ("  ", ""),
    ],
)
def test_strip_order_by(jql: str, expected: str) -> None:
    assert strip_order_by(jql) == expected


def test_changed_jql_wraps_the_user_query_and_orders_by_update() -> None:
    since = datetime(2024, 5, 1, 9, 55, tzinfo=UTC)
    assert changed_jql("project = A OR project = B ORDER BY key", since) == (
        '(project = A OR project = B) AND updated >= "2024-05-01 09:55" ORDER BY updated ASC, key ASC'
    )
    assert changed_jql("project = A", None) == "(project = A) ORDER BY updated ASC, key ASC"


def test_jql_minute_floors_and_converts_to_the_users_zone() -> None:
    moment = datetime(2024, 5, 1, 9, 55, 59, 999999, tzinfo=UTC)
    assert jql_minute(moment, ZoneInfo("UTC")) == datetime(2024, 5, 1, 9, 55, tzinfo=UTC)
    berlin = jql_minute(moment, ZoneInfo("Europe/Berlin"))
    assert (berlin.hour, berlin.minute, berlin.second) == (11, 55, 0)
    naive = jql_minute(datetime(2024, 1, 1, 12, 0, 30), ZoneInfo("America/New_York"))
    assert naive.utcoffset() == timedelta(hours=-5) and naive.hour == 7


def _status(name: str, category: str | None) -> dict[str, object]:
    return {"name": name, "statusCategory": {"key": category}} if category else {"name": name}


@pytest.mark.parametrize(
    ("status", "resolution", "expected"),
    [
        (_status("To Do", "new"), None, Status.OPEN),
        (_status("Backlog", "new"), None, Status.OPEN),
        (_status("In Progress", "indeterminate"), None, Status.IN_PROGRESS),
        (_status("Waiting for customer", "indeterminate"), None, Status.IN_PROGRESS),
        (_status("Done", "done"), {"name": "Done"}, Status.CLOSED),
        (_status("Closed", "done"), {"name": "Fixed"}, Status.CLOSED),
        (_status("Resolved", "done"), {"name": "Fixed"}, Status.RESOLVED),
        (_status("Resolved", "done"), None, Status.RESOLVED),
        (_status("Gelöst (resolved)", "done"), None, Status.RESOLVED),
        (_status("Odd", "undefined"), None, Status.OPEN),
        (_status("Odd", None), {"name": "Done"}, Status.CLOSED),
        (None, None, Status.OPEN),
        ("not a mapping", None, Status.OPEN),
    ],
)
def test_map_status(status: object, resolution: object, expected: Status) -> None:
    assert map_status(status, resolution) is expected


@pytest.mark.parametrize(
    ("comment", "restricted"),
    [
        ({"body": "x"}, False),
        ({"jsdPublic": True}, False),
        ({"visibility": {"type": "role", "value": "Developers"}}, True),
        ({"visibility": {"type": "group", "value": "jira-admins"}}, True),
        ({"jsdPublic": False}, True),
        ({"properties": [{"key": "sd.public.comment", "value": {"internal": True}}]}, True),
        ({"properties": [{"key": "sd.public.comment", "value": {"internal": False}}]}, False),
    ],
)
def test_comment_is_restricted(comment: dict[str, object], restricted: bool) -> None:
    assert comment_is_restricted(comment) is restricted


@pytest.mark.parametrize(
    ("user", "name"),
    [
        ({"displayName": "Ann", "accountId": "1"}, "Ann"),
        ({"name": "bob", "key": "JIRAUSER1"}, "bob"),
        ({"accountId": "557058:x"}, "557058:x"),
        (None, None),
        ({}, None),
    ],
)
def test_display_name(user: object, name: str | None) -> None:
    assert display_name(user) == name

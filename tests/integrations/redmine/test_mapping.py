"""Redmine → model mapping and config: statuses, ids, a recorded issue, and the config schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from data_manager.collectors.tickets.errors import ConfigError, PermanentError, TicketGone
from data_manager.collectors.tickets.integration import integration_class
from data_manager.collectors.tickets.integrations.redmine import (
    InvalidTicketId,
    RedmineTickets,
    choose_status,
    parse_issue_id,
    status_category,
)
from data_manager.collectors.tickets.model import Status, parse_datetime
from data_manager.config import parse_config

FIXTURES = Path(__file__).resolve().parent / "fixtures"
KEY = "f" * 40


def recorded_issue() -> dict[str, Any]:
    return json.loads((FIXTURES / "issue_reverse_order.json").read_text())


# -- statuses --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "is_closed", "expected"),
    [
        ("New", False, Status.OPEN),
        ("Feedback", False, Status.OPEN),
        ("In Progress", False, Status.IN_PROGRESS),
        ("in progress", None, Status.IN_PROGRESS),
        ("Resolved", False, Status.RESOLVED),
        ("Resolved", True, Status.RESOLVED),  # some instances close on Resolved: still "resolved"
        ("Closed", True, Status.CLOSED),
        ("Rejected", True, Status.CLOSED),
        ("Won't fix", True, Status.CLOSED),  # unknown closed status
        ("Waiting for customer", False, Status.OPEN),  # unknown open status
        ("Closed", None, Status.CLOSED),  # no flag (plugin payloads, old servers): trust the name
        ("Rejected", False, Status.OPEN),  # configured as open: trust the flag
    ],
)
def test_status_category(name: str, is_closed: bool | None, expected: Status) -> None:
    assert status_category(name, is_closed) is expected


def test_configured_status_names_win() -> None:
    overrides = {"waiting for customer": Status.IN_PROGRESS, "closed": Status.RESOLVED}
    assert status_category("Waiting for Customer", False, overrides) is Status.IN_PROGRESS
    assert status_category("Closed", True, overrides) is Status.RESOLVED


DEFAULT_STATUSES = [
    {"id": 1, "name": "New", "is_closed": False},
    {"id": 2, "name": "In Progress", "is_closed": False},
    {"id": 3, "name": "Resolved", "is_closed": False},
    {"id": 4, "name": "Feedback", "is_closed": False},
    {"id": 5, "name": "Closed", "is_closed": True},
    {"id": 6, "name": "Rejected", "is_closed": True},
]


@pytest.mark.parametrize(
    ("wanted", "candidates", "expected_id"),
    [
        (Status.OPEN, DEFAULT_STATUSES, 1),
        (Status.IN_PROGRESS, DEFAULT_STATUSES, 2),
        (Status.RESOLVED, DEFAULT_STATUSES, 3),
        (Status.CLOSED, DEFAULT_STATUSES, 5),  # canonical "Closed" before "Rejected"
        (Status.CLOSED, [DEFAULT_STATUSES[5]], 6),  # only Rejected allowed: take it
        (Status.OPEN, [DEFAULT_STATUSES[3], DEFAULT_STATUSES[4]], 4),  # reopen into Feedback
        (Status.IN_PROGRESS, [DEFAULT_STATUSES[0], DEFAULT_STATUSES[4]], None),
    ],
)
def test_choose_status(wanted: Status, candidates: list[dict[str, Any]], expected_id: int | None) -> None:
    chosen = choose_status(wanted, candidates)
    assert (chosen["id"] if chosen else None) == expected_id


# -- ids ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "number"), [("42", 42), (" 7 ", 7), (42, 42), ("0012", 12)])
def test_issue_ids(given: Any, number: int) -> None:
    assert parse_issue_id(given) == number


@pytest.mark.parametrize("given", ["", "abc", "0", "-1", "4.2", "12/../13", "%31", "١٢", True, None, 0, -5, 4.0])
def test_bad_issue_ids(given: Any) -> None:
    with pytest.raises(InvalidTicketId, match="positive integer"):
        parse_issue_id(given)


# -- a recorded issue, served over real HTTP --------------------------------------------------------
def test_recorded_issue_maps_with_comments_in_journal_order(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/issues/1.json", query_string={"include": "journals"}, headers={"X-Redmine-API-Key": KEY}
    ).respond_with_json(recorded_issue())
    snapshot = RedmineTickets(httpserver.url_for("/"), KEY).fetch("1")

    # Redmine sent journals newest first (the API user prefers reverse order), all in one second
    assert [(c.author, c.text) for c in snapshot.comments] == [
        ("Redmine Admin", "Cleaned /var/cache."),
        ("Jane Doe", "Still at 95%.\nWill add a disk."),  # CRLF as stored by Redmine becomes LF
    ]
    assert snapshot.comments[0].at == parse_datetime("2026-11-23T15:54:13Z")
    data = snapshot.data
    assert (data.title, data.description) == ("Disk full on build agent", "The agent ran out of space.\nSee logs.")
    assert (data.status, snapshot.status_name, data.assignee, data.requester) == (
        Status.IN_PROGRESS,
        "In Progress",
        "Jane Doe",
        "Redmine Admin",
    )
    assert data.custom_fields == {"Customer reference": "OPS-7", "Environments": ["prod"]}
    assert snapshot.url == httpserver.url_for("/issues/1")
    assert snapshot.project == "fixture"
    assert dict(snapshot.extra) == {
        "tracker": "Bug",
        "priority": "Normal",
        "author": "Redmine Admin",
        "start_date": "2026-11-23",
    }
    assert (snapshot.created_at, snapshot.updated_at) == (
        parse_datetime("2026-11-23T15:54:12Z"),
        parse_datetime("2026-11-23T15:54:13Z"),
    )


def test_private_notes_only_on_request_and_communication_from_a_custom_field(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/issues/1.json").respond_with_json(recorded_issue())
    redmine = RedmineTickets(
        httpserver.url_for("/"), KEY, include_private_notes=True, communication_field="Customer reference"
    )

    snapshot = redmine.fetch("1")

    assert [c.text for c in snapshot.comments][-1] == "Internal: vendor quote attached."
    assert snapshot.data.communication == "OPS-7"
    assert "Customer reference" not in snapshot.data.custom_fields


def test_missing_is_closed_is_looked_up_in_the_status_list(httpserver: HTTPServer) -> None:
    issue = recorded_issue()
    issue["issue"]["status"] = {"id": 6, "name": "Won't fix"}  # Redmine < 5 does not say is_closed
    httpserver.expect_request("/issues/1.json").respond_with_json(issue)
    httpserver.expect_request("/issue_statuses.json").respond_with_json(
        {"issue_statuses": [{"id": 6, "name": "Won't fix", "is_closed": True}]}
    )

    assert RedmineTickets(httpserver.url_for("/"), KEY).fetch("1").data.status is Status.CLOSED


@pytest.mark.parametrize(("status", "gone"), [(404, True), (403, True), (401, False), (422, False)])
def test_http_answers_for_one_issue(httpserver: HTTPServer, status: int, gone: bool) -> None:
    httpserver.expect_request("/issues/9.json").respond_with_json({"errors": ["nope"]}, status=status)
    redmine = RedmineTickets(httpserver.url_for("/"), KEY)
    with pytest.raises(TicketGone if gone else PermanentError) as raised:
        redmine.fetch("9")
    assert isinstance(raised.value, TicketGone) is gone
    assert KEY not in str(raised.value)


# -- listing edge cases over real HTTP --------------------------------------------------------------
def _issue(number: int) -> dict[str, Any]:
    return {"id": number, "updated_on": "2026-01-01T00:00:00Z"}


def test_listing_pages_by_id_and_trusts_total_count_over_page_length(httpserver: HTTPServer) -> None:
    """A server capping pages below our limit must not end the listing early."""
    httpserver.expect_request("/users/current.json").respond_with_json({"user": {"id": 1, "login": "bot"}})
    httpserver.expect_request(
        "/issues.json", query_string={"status_id": "*", "sort": "id", "limit": "100", "offset": "0", "issue_id": ">=1"}
    ).respond_with_json({"issues": [_issue(n) for n in (3, 5)], "total_count": 3, "offset": 0, "limit": 2})
    httpserver.expect_request(
        "/issues.json", query_string={"status_id": "*", "sort": "id", "limit": "100", "offset": "0", "issue_id": ">=6"}
    ).respond_with_json({"issues": [_issue(8)], "total_count": 1, "offset": 0, "limit": 2})
    redmine = RedmineTickets(httpserver.url_for("/"), KEY)

    assert [ref.ticket_id for ref in redmine.iter_changed(None)] == ["3", "5", "8"]
    assert redmine.client.request_count == 3


def test_listing_refuses_a_server_that_ignores_the_id_filter(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/users/current.json").respond_with_json({"user": {"id": 1}})
    httpserver.expect_request("/issues.json").respond_with_json(
        {"issues": [_issue(1), _issue(2)], "total_count": 4, "offset": 0, "limit": 2}
    )
    with pytest.raises(PermanentError, match="ignored the issue_id filter"):
        list(RedmineTickets(httpserver.url_for("/"), KEY).iter_changed(None))


def test_listing_sends_since_and_project_filters(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/users/current.json").respond_with_json({"user": {"id": 1}})
    httpserver.expect_request(
        "/issues.json",
        query_string={
            "status_id": "*",
            "sort": "id",
            "limit": "100",
            "offset": "0",
            "issue_id": ">=1",
            "updated_on": ">=2026-03-04T10:11:12Z",
            "project_id": "ops",
            "subproject_id": "!*",
        },
    ).respond_with_json({"issues": [], "total_count": 0, "offset": 0, "limit": 100})
    redmine = RedmineTickets(httpserver.url_for("/"), KEY, "ops", include_subprojects=False)
    # +02:00 with microseconds: sent as UTC, floored to the second
    assert list(redmine.iter_changed(parse_datetime("2026-03-04T12:11:12.999+02:00"))) == []


# -- configuration ---------------------------------------------------------------------------------
def redmine_config(**redmine: Any) -> dict[str, Any]:
    return {"data_manager": {"sources": {"tickets": {"redmine": {"enabled": True, **redmine}}}}}


def test_registry_finds_the_integration() -> None:
    assert integration_class("redmine") is RedmineTickets


def test_config_loads_and_builds_an_integration() -> None:
    config = parse_config(
        redmine_config(
            base_url="https://redmine.example.com/sub/",
            api_key="${RM_KEY}",
            project_id=12,
            webhook_secret="${RM_HOOK}",
            include_private_notes="yes",
            status_map={"Waiting for customer": "in progress"},
            tracker="Support",
        ),
        env={"RM_KEY": KEY, "RM_HOOK": "hook-secret"},
    )
    loaded = config.sources["redmine"]
    assert (loaded["project_id"], loaded["include_subprojects"], loaded["include_private_notes"]) == ("12", True, True)
    assert config.redacted_sources()["redmine"]["api_key"] == "***"
    assert config.redacted_sources()["redmine"]["webhook_secret"] == "***"

    redmine = RedmineTickets.from_config(loaded)
    assert (redmine.base_url, redmine.project_id, redmine.tracker) == (
        "https://redmine.example.com/sub",
        "12",
        "Support",
    )
    assert redmine.webhook_secret == "hook-secret" and redmine.include_private_notes
    assert redmine.status_map == {"waiting for customer": Status.IN_PROGRESS}
    assert redmine.issue_url(5) == "https://redmine.example.com/sub/issues/5"
    assert KEY not in repr(redmine)


def test_config_env_override_for_the_key() -> None:
    config = parse_config(
        redmine_config(base_url="https://r.example.com", api_key="in-file"), env={"TICKETS_REDMINE_API_KEY": KEY}
    )
    assert config.sources["redmine"]["api_key"] == KEY


@pytest.mark.parametrize(
    ("redmine", "path", "message"),
    [
        ({"base_url": "https://r.example.com"}, "redmine.api_key", "required"),
        ({"api_key": KEY}, "redmine.base_url", "required"),
        ({"base_url": "ftp://r.example.com", "api_key": KEY}, "redmine.base_url", "URL"),
        (
            {"base_url": "https://r.example.com", "api_key": KEY, "project_id": "my project"},
            "redmine.project_id",
            "identifier",
        ),
        (
            {"base_url": "https://r.example.com", "api_key": KEY, "status_map": {"Waiting": "paused"}},
            "redmine.status_map",
            "unknown status",
        ),
    ],
)
def test_config_errors_name_the_key(redmine: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(redmine_config(**redmine), env={})
    assert path in str(refused.value) and message in str(refused.value)


def test_disabled_redmine_needs_nothing() -> None:
    config = parse_config(
        {"data_manager": {"sources": {"tickets": {"redmine": {"enabled": False, "api_key": "${UNSET}"}}}}}, env={}
    )
    assert config.sources["redmine"] == {"enabled": False}


def test_from_config_validates_raw_mappings_too() -> None:
    with pytest.raises(ConfigError, match="api_key"):
        RedmineTickets.from_config({"base_url": "https://r.example.com"})
    with pytest.raises(ConfigError, match="base_url"):
        RedmineTickets("https://user:pw@r.example.com", KEY)

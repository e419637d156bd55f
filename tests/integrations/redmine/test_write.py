"""Writing through `Ticket` with the Redmine backend, against a real Redmine (through a recording loopback proxy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from data_manager.collectors.tickets.errors import ConfigError, PermanentError, TicketNotFound
from data_manager.collectors.tickets.integrations.redmine import RedmineTickets
from data_manager.collectors.tickets.model import Comment, Status, Ticket, TicketData

if TYPE_CHECKING:
    from tests.integrations.redmine.redmine_server import RecordingProxy, RedmineAdmin, RedmineServer

pytestmark = pytest.mark.redmine
pytest_plugins = (
    "tests.integrations.redmine.redmine_server",
)  # its fixtures: redmine_server, redmine_admin, redmine_project


@pytest.fixture(scope="module")
def dev(redmine_admin: RedmineAdmin, redmine_project: dict[str, Any]) -> Iterator[dict[str, Any]]:
    user = redmine_admin.create_user("wdev", firstname="Devon")
    redmine_admin.add_member(redmine_project["identifier"], user["id"], "Developer")
    yield user
    redmine_admin.delete_user(user["id"])


@pytest.fixture(scope="module")
def reporter(redmine_admin: RedmineAdmin, redmine_project: dict[str, Any]) -> Iterator[dict[str, Any]]:
    user = redmine_admin.create_user("wrep", firstname="Rita")
    redmine_admin.add_member(redmine_project["identifier"], user["id"], "Reporter")
    yield user
    redmine_admin.delete_user(user["id"])


@pytest.fixture
def proxy(recording_proxy: RecordingProxy) -> RecordingProxy:
    return recording_proxy


@pytest.fixture
def redmine(proxy: RecordingProxy, redmine_server: RedmineServer, redmine_project: dict[str, Any]) -> RedmineTickets:
    return RedmineTickets(proxy.url, redmine_server.api_key, redmine_project["identifier"])


def test_round_trip_through_the_ticket_facade(
    redmine: RedmineTickets, proxy: RecordingProxy, redmine_server: RedmineServer, dev: dict[str, Any]
) -> None:
    Ticket.register_backend("redmine", redmine)

    ticket_id = Ticket.create(
        title="Broken login",
        description="Steps:\n1. log in\n2. cry",
        assignee=dev["name"],
        custom_fields={"Customer reference": "C-1", "Environments": ["staging"]},
    )
    ticket = Ticket.read(ticket_id)
    assert (ticket.data.title, ticket.data.description) == ("Broken login", "Steps:\n1. log in\n2. cry")
    assert (ticket.data.status, ticket.data.assignee, ticket.data.requester) == (
        Status.OPEN,
        dev["name"],
        "Redmine Admin",
    )
    assert ticket.data.custom_fields == {"Customer reference": "C-1", "Environments": ["staging"]}
    assert ticket.comments == []

    for status, name in [
        (Status.IN_PROGRESS, "In Progress"),
        (Status.RESOLVED, "Resolved"),
        (Status.CLOSED, "Closed"),
        (Status.OPEN, "New"),
    ]:
        Ticket.update(ticket_id, status=status)
        snapshot = redmine.fetch(ticket_id)
        assert (snapshot.data.status, snapshot.status_name) == (status, name)

    Ticket.comment(ticket_id, "Looking into it.\nWith a second line.", author="anyone")
    Ticket.update(
        ticket_id, title="Broken login on Mondays", assignee=None, custom_fields={"Customer reference": "C-2"}
    )
    ticket = Ticket.read(ticket_id)
    assert [(c.author, c.text) for c in ticket.comments] == [("Redmine Admin", "Looking into it.\nWith a second line.")]
    assert (ticket.data.title, ticket.data.assignee) == ("Broken login on Mondays", None)
    assert ticket.data.custom_fields == {"Customer reference": "C-2", "Environments": ["staging"]}  # others untouched

    writes = [r for r in proxy.requests if r.method in ("POST", "PUT", "DELETE")]
    assert [r.method for r in writes] == ["POST"] + ["PUT"] * 6
    assert all(r.headers.get("X-Skip-Webhooks") == "true" for r in writes)
    assert all(r.headers.get("X-Redmine-API-Key") == redmine_server.api_key for r in proxy.requests)
    assert not any(redmine_server.api_key in r.path for r in proxy.requests)  # the key travels only in the header


def test_status_already_in_the_wanted_state_sends_nothing(
    redmine: RedmineTickets, proxy: RecordingProxy, redmine_admin: RedmineAdmin, redmine_project: dict[str, Any]
) -> None:
    issue = redmine_admin.create_issue(redmine_project["identifier"], "Rejected already")["id"]
    redmine_admin.update_issue(issue, status_id=redmine_admin.status_id("Rejected"))

    redmine.update(str(issue), {"status": Status.CLOSED})  # Rejected is closed: keep it

    assert redmine.fetch(str(issue)).status_name == "Rejected"
    assert not [r for r in proxy.requests if r.method == "PUT"]


def test_create_in_a_closed_state_and_assign_by_login_or_id(redmine: RedmineTickets, dev: dict[str, Any]) -> None:
    closed = redmine.create(TicketData(title="Born closed", status=Status.CLOSED, assignee=dev["login"]))
    assert redmine.fetch(closed).data.status is Status.CLOSED
    assert redmine.fetch(closed).data.assignee == dev["name"]

    by_id = redmine.create(TicketData(title="Assigned by id", assignee=str(dev["id"])))
    assert redmine.fetch(by_id).data.assignee == dev["name"]


def test_communication_lives_in_a_configured_custom_field(
    redmine_server: RedmineServer, redmine_project: dict[str, Any]
) -> None:
    redmine = RedmineTickets(
        redmine_server.url,
        redmine_server.api_key,
        redmine_project["identifier"],
        communication_field="Customer reference",
    )
    ticket_id = redmine.create(TicketData(title="Call me", communication="phone"))
    data, _ = redmine.read(ticket_id)
    assert data.communication == "phone"
    assert "Customer reference" not in data.custom_fields

    redmine.update(ticket_id, {"communication": "email"})
    assert redmine.read(ticket_id)[0].communication == "email"


def test_bad_writes_fail_clearly_and_change_nothing(
    redmine: RedmineTickets,
    proxy: RecordingProxy,
    redmine_server: RedmineServer,
    redmine_admin: RedmineAdmin,
    redmine_project: dict[str, Any],
) -> None:
    issue = str(redmine_admin.create_issue(redmine_project["identifier"], "Untouchable")["id"])
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: redmine.update(issue, {"custom_fields": {"Shoe size": 44}}), PermanentError, "Shoe size"),
        (lambda: redmine.update(issue, {"requester": "someone"}), PermanentError, "author"),
        (lambda: redmine.update(issue, {"assignee": "Nobody Atall"}), PermanentError, "Nobody Atall"),
        (lambda: redmine.update(issue, {"communication": "fax"}), PermanentError, "communication_field"),
        (lambda: redmine.update(issue, {"colour": "red"}), ValueError, "colour"),
        (lambda: redmine.add_comment(issue, Comment("me", "   ", "2024-01-01T00:00:00Z")), ValueError, "text"),
        (lambda: redmine.update("999999999", {"title": "x"}), TicketNotFound, "999999999"),
        (
            lambda: RedmineTickets(redmine_server.url, redmine_server.api_key).create(TicketData(title="x")),
            ConfigError,
            "project_id",
        ),
    ]
    for call, error, mentioned in cases:
        with pytest.raises(error) as raised:
            call()
        assert mentioned in str(raised.value)
    assert not [r for r in proxy.requests if r.method == "PUT" and f"/issues/{issue}.json" in r.path]
    assert redmine.fetch(issue).data.title == "Untouchable"


def test_changes_redmine_silently_ignores_are_reported(
    redmine_server: RedmineServer,
    redmine_admin: RedmineAdmin,
    redmine_project: dict[str, Any],
    reporter: dict[str, Any],
) -> None:
    issue = str(redmine_admin.create_issue(redmine_project["identifier"], "Reporter may comment only")["id"])
    as_reporter = RedmineTickets(redmine_server.url, reporter["api_key"], redmine_project["identifier"])

    # Reporter lacks edit_issues: Redmine offers "Closed" in allowed_statuses, answers 204, and changes nothing
    with pytest.raises(PermanentError, match="did not apply title, status:"):
        as_reporter.update(issue, {"status": Status.CLOSED, "title": "Renamed"})
    assert redmine_admin.get_issue(int(issue))["status"]["name"] == "New"
    as_reporter.add_comment(issue, Comment(reporter["login"], "I can still comment", "2024-01-01T00:00:00Z"))

    assert [(c.author, c.text) for c in as_reporter.fetch(issue).comments] == [
        (reporter["name"], "I can still comment")
    ]


def test_impersonation_records_the_named_author(
    redmine_server: RedmineServer, redmine_admin: RedmineAdmin, redmine_project: dict[str, Any], dev: dict[str, Any]
) -> None:
    redmine = RedmineTickets(
        redmine_server.url, redmine_server.api_key, redmine_project["identifier"], impersonate_authors=True
    )

    ticket_id = redmine.create(TicketData(title="Filed for Devon", requester=dev["login"]))
    redmine.add_comment(ticket_id, Comment(dev["login"], "by login", "2024-01-01T00:00:00Z"))
    redmine.add_comment(ticket_id, Comment(dev["name"], "by full name", "2024-01-01T00:00:00Z"))

    snapshot = redmine.fetch(ticket_id)
    assert snapshot.data.requester == dev["name"]
    assert [(c.author, c.text) for c in snapshot.comments] == [(dev["name"], "by login"), (dev["name"], "by full name")]
    with pytest.raises(PermanentError, match="no single active Redmine user"):
        redmine.add_comment(ticket_id, Comment("Not A Person", "x", "2024-01-01T00:00:00Z"))


def test_non_admin_key_creates_with_custom_fields_and_moves_status(
    redmine_server: RedmineServer, redmine_project: dict[str, Any], dev: dict[str, Any]
) -> None:
    """Without /custom_fields.json (admin only) names resolve through the project's own custom fields."""
    as_dev = RedmineTickets(redmine_server.url, dev["api_key"], redmine_project["identifier"])

    ticket_id = as_dev.create(TicketData(title="From a developer", custom_fields={"Environments": ["prod", "dev"]}))
    as_dev.update(ticket_id, {"status": Status.RESOLVED})

    snapshot = as_dev.fetch(ticket_id)
    assert snapshot.data.custom_fields["Environments"] == ["prod", "dev"]
    assert (snapshot.data.status, snapshot.data.requester) == (Status.RESOLVED, dev["name"])

"""Writing through `BugzillaBackend` (and the `Ticket` facade), and bugzilla.mozilla.org webhooks."""

from __future__ import annotations

import json

import pytest

from data_manager.collectors.tickets import BugzillaBackend, Ticket
from data_manager.collectors.tickets.errors import (
    ConfigError,
    PermanentError,
    TicketNotFound,
    UnknownFieldError,
    WebhookAuthError,
    WebhookPayloadError,
)
from data_manager.collectors.tickets.integration import EventAction, WebhookRequest
from data_manager.collectors.tickets.model import Comment, Status, TicketData
from tests.integrations.bugzilla.conftest import BugzillaSetup
from tests.integrations.bugzilla.fake_server import DEV_KEY


def test_the_seed_constructor_needs_no_network() -> None:
    backend = BugzillaBackend(base_url="https://bz.example", api_key="secret-api-key")
    Ticket.register_backend("bugzilla", backend)
    assert backend.base_url == "https://bz.example" and backend.api_key == "secret-api-key"
    assert "secret-api-key" not in repr(backend) and backend.request_count == 0


def test_create_read_update_comment_through_the_facade(bugzilla: BugzillaSetup) -> None:
    Ticket.register_backend("bugzilla", bugzilla.backend())
    ticket_id = Ticket.create(
        title="Printer jam",
        description="tray 2",
        assignee="dev@example.com",
        requester="bob",
        status=Status.OPEN,
        custom_fields={"cf_customer": "ACME"},
    )
    bug = bugzilla.fake.bugs[int(ticket_id)]
    assert (bug.op_sys, bug.platform, bug.version, bug.status) == ("All", "All", "unspecified", "CONFIRMED")
    Ticket.update(ticket_id, status="in progress", title="Printer jam (tray 2)")
    Ticket.comment(ticket_id, "Replaced the toner", author="ann")
    ticket = Ticket.read(ticket_id)
    assert ticket.data.title == "Printer jam (tray 2)" and ticket.data.status is Status.IN_PROGRESS
    assert ticket.data.description == "tray 2" and ticket.data.custom_fields["cf_customer"] == "ACME"
    assert [c.text for c in ticket.comments] == ["Replaced the toner"]
    ticket.change_status(Status.RESOLVED)
    assert (bug.status, bug.resolution) == ("RESOLVED", "FIXED")
    Ticket.update(ticket_id, status="open")  # reopening clears the resolution
    assert (bug.status, bug.resolution) == ("CONFIRMED", "")


def test_resolution_comes_from_config(bugzilla: BugzillaSetup) -> None:
    bug = bugzilla.fake.add_bug("x")
    bugzilla.backend(resolution="WONTFIX").update(str(bug), {"status": Status.RESOLVED})
    assert bugzilla.fake.bugs[bug].resolution == "WONTFIX"


def test_impossible_changes_are_clear_errors_and_change_nothing(bugzilla: BugzillaSetup) -> None:
    bug = bugzilla.fake.add_bug("Keep me", description="d")
    before = bugzilla.fake.bugs[bug].last_change_time
    backend = bugzilla.backend()
    with pytest.raises(UnknownFieldError, match="description"):
        backend.update(str(bug), {"title": "changed", "description": "new"})
    with pytest.raises(UnknownFieldError, match=r"status.*closed"):
        backend.update(
            str(bug), {"title": "changed", "status": Status.CLOSED}
        )  # CONFIRMED -> VERIFIED is no transition
    with pytest.raises(UnknownFieldError, match="cf_"):
        backend.update(str(bug), {"custom_fields": {"customer": "x"}})
    with pytest.raises(PermanentError, match="cf_nope"):
        backend.update(str(bug), {"title": "changed", "custom_fields": {"cf_nope": "x"}})
    assert bugzilla.fake.bugs[bug].summary == "Keep me" and bugzilla.fake.bugs[bug].last_change_time == before
    backend.update(str(bug), {"status": Status.RESOLVED})
    backend.update(str(bug), {"status": Status.CLOSED})  # RESOLVED -> VERIFIED is allowed, resolution kept
    assert (bugzilla.fake.bugs[bug].status, bugzilla.fake.bugs[bug].resolution) == ("VERIFIED", "FIXED")
    backend.update(str(bug), {"status": Status.CLOSED})  # already there: nothing to send
    assert bugzilla.fake.bugs[bug].status == "VERIFIED"


def test_a_status_map_adds_a_deployments_status(bugzilla: BugzillaSetup) -> None:
    bug = bugzilla.fake.add_bug("x", status="IN_PROGRESS")
    backend = bugzilla.backend(status_map={"IN_PROGRESS": "open"})
    assert backend.fetch(str(bug)).data.status is Status.OPEN


def test_write_errors(bugzilla: BugzillaSetup) -> None:
    with pytest.raises(TicketNotFound):
        bugzilla.backend().add_comment("999", Comment("a", "b", "2024-01-01T00:00:00Z"))
    with pytest.raises(TicketNotFound):
        bugzilla.backend().read("999")
    with pytest.raises(ConfigError, match=r"bugzilla\.product"):
        bugzilla.backend(product=None).create(TicketData(title="x"))
    with pytest.raises(UnknownFieldError, match="status"):
        bugzilla.backend().create(TicketData(title="x", status=Status.CLOSED))
    with pytest.raises(PermanentError, match="113"):
        bug = bugzilla.fake.add_bug("x")
        bugzilla.backend(DEV_KEY).client.call(
            "POST", f"rest/bug/{bug}/comment", body={"comment": "x", "is_private": True}
        )
    assert len(bugzilla.fake.bugs) == 1  # the refused create made nothing


def _request(body: dict, headers: dict | None = None) -> WebhookRequest:
    return WebhookRequest(json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})


def test_bmo_webhooks(bugzilla: BugzillaSetup) -> None:
    fake = bugzilla.fake
    public = fake.add_bug("Public", description="d")
    fake.add_comment(public, "hello")
    other = fake.add_bug("Elsewhere", product="OtherProduct")
    hidden = fake.add_bug("Hidden", groups=["security"])
    backend = bugzilla.backend(products=["TestProduct"], webhook_secret="Token s3cret")
    body, headers = fake.webhook_request(public, target="comment", action="create", value="Token s3cret")
    request = WebhookRequest(body, headers)
    backend.authenticate_webhook(request)
    assert backend.parse_webhook(request)[0].ticket_id == str(public)
    assert backend.parse_webhook(request)[0].action is EventAction.UPSERT
    for wrong in ({}, {"Authorization": "Token nope"}):
        with pytest.raises(WebhookAuthError):
            backend.authenticate_webhook(WebhookRequest(body, wrong))
    elsewhere = fake.webhook_payload(other, changes=[{"field": "status", "removed": "NEW", "added": "RESOLVED"}])
    assert backend.parse_webhook(_request(elsewhere)) == []  # acknowledged, ignored
    trimmed = fake.webhook_payload(hidden)
    assert trimmed["bug"] == {"id": hidden, "is_private": True}
    assert [e.ticket_id for e in backend.parse_webhook(_request(trimmed))] == [str(hidden)]
    for bad in (
        {"event": {}},
        {"bug": {"summary": "x"}},
        {"bug": {"id": "abc"}},
        {"bug": {"id": 10**30}},
        {"bug": {"id": True}},
    ):
        with pytest.raises(WebhookPayloadError):
            backend.parse_webhook(_request(bad))
    with pytest.raises(WebhookPayloadError):
        backend.parse_webhook(WebhookRequest(b'{"bug": {"id": ' + b"9" * 5000 + b"}}", {}))
    assert backend.ticket_id_pattern.fullmatch("123") and not backend.ticket_id_pattern.fullmatch("12a")


def test_the_documented_payload_parses(bugzilla: BugzillaSetup) -> None:
    documented = {
        "webhook_name": "test-comment",
        "webhook_id": 23,
        "event": {
            "action": "create",
            "target": "comment",
            "routing_key": "comment.create",
            "time": "2020-10-16T06:28:41",
        },
        "bug": {
            "id": 1629704,
            "product": "Firefox",
            "status": "NEW",
            "comment": {"id": 14748073, "number": 2, "body": "another test comment", "is_private": False},
        },
    }
    assert [e.ticket_id for e in bugzilla.backend().parse_webhook(_request(documented))] == ["1629704"]
    assert bugzilla.backend(products=["Core"]).parse_webhook(_request(documented)) == []

"""Writing Cases through the fake over HTTP, directly and through the `Ticket` facade.

Documented behaviour relied on: POST /sobjects/Case answers 201 `{"id", "success", "errors"}`;
PATCH answers 204 with no body ("Update a Record"); CaseComment.CommentBody holds at most 4,000
bytes (Object Reference "CaseComment"): we refuse longer comments before sending anything.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from data_manager.collectors.tickets import Comment, SalesforceBackend, Status, Ticket, TicketData, TicketGone
from data_manager.collectors.tickets.errors import ConfigError, PermanentError, UnknownFieldError
from data_manager.collectors.tickets.integrations.salesforce import CommentTooLong
from data_manager.config import parse_config
from tests.integrations.salesforce.conftest import SalesforceSetup
from tests.integrations.salesforce.fake_server import USERS


def test_create_read_update_comment_round_trip(salesforce: SalesforceSetup) -> None:
    backend = salesforce.backend("client_credentials", origin="Web", status_map={"Escalated": "in_progress"})
    case_id = backend.create(
        TicketData(title="Printer jam", description="Tray 2", status=Status.IN_PROGRESS, assignee=USERS["bob"].id,
                   custom_fields={"Priority": "High"})
    )  # fmt: skip
    stored = salesforce.fake.case(case_id)
    assert (stored.subject, stored.status, stored.origin, stored.owner, stored.priority) == (
        "Printer jam", "Escalated", "Web", "bob", "High",
    )  # fmt: skip
    backend.update(case_id, {"status": Status.CLOSED, "title": "Printer jam (fixed)"})
    patch = [r for r in salesforce.fake.requests if r[0] == "PATCH"]
    assert len(patch) == 1 and salesforce.fake.case(case_id).status == "Closed"
    backend.add_comment(case_id, Comment(author="ignored", text="Replaced the toner", at=datetime.now(UTC)))
    data, comments = backend.read(case_id)
    assert data.title == "Printer jam (fixed)" and data.status is Status.CLOSED
    assert [(c.author, c.text) for c in comments] == [("Integration User", "Replaced the toner")]
    assert salesforce.fake.case(case_id).comments[0].published is True


def test_the_ticket_facade_works_with_the_seed_constructor(salesforce: SalesforceSetup) -> None:
    from tests.integrations.salesforce.fake_server import STATIC_TOKEN

    backend = SalesforceBackend(instance_url=salesforce.url, access_token=STATIC_TOKEN)
    try:
        Ticket.register_backend("sf", backend)
        Ticket.use_backend("sf")
        ticket_id = Ticket.create(title="Broken chair", description="leg", requester=None, assignee=None)
        Ticket.comment(ticket_id, "Ordered a new one", author="ann")
        ticket = Ticket.read(ticket_id)
        ticket.change_status("in progress")
        assert salesforce.fake.case(ticket_id).status == "Working"
        assert [c.text for c in Ticket.read(ticket_id).comments] == ["Ordered a new one"]
    finally:
        backend.close()


def test_a_comment_over_4000_bytes_is_refused_before_sending(salesforce: SalesforceSetup) -> None:
    case_id = salesforce.fake.add_case("x")
    backend = salesforce.backend()
    backend.add_comment(case_id, Comment("a", "é" * 2000, datetime.now(UTC)))  # 4,000 bytes exactly
    before = salesforce.fake.request_count
    with pytest.raises(CommentTooLong, match="4000 bytes") as caught:
        backend.add_comment(case_id, Comment("a", "é" * 2000 + "x", datetime.now(UTC)))
    assert isinstance(caught.value, PermanentError) and salesforce.fake.request_count == before


def test_unknown_fields_and_missing_cases(salesforce: SalesforceSetup) -> None:
    backend = salesforce.backend()
    case_id = salesforce.fake.add_case("x")
    with pytest.raises(UnknownFieldError):
        backend.update(case_id, {"colour": "red"})
    assert salesforce.fake.request_count == 0
    missing = "500" + "9" * 15
    with pytest.raises(TicketGone):
        backend.update(missing, {"title": "y"})
    with pytest.raises(TicketGone):
        backend.add_comment(missing, Comment("a", "hello", datetime.now(UTC)))


def test_server_side_validation_errors_name_the_code(salesforce: SalesforceSetup) -> None:
    backend = salesforce.backend(status_map={"Bogus": "open"})
    with pytest.raises(PermanentError, match="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"):
        backend.create(TicketData(title="x", status=Status.OPEN))


def test_comment_visibility_follows_the_setting_and_can_be_chosen_per_comment(salesforce: SalesforceSetup) -> None:
    """The model's Comment has no visibility: `Ticket.comment` posts `comment_visibility` (public by default, as
    Salesforce's `IsPublished`); holding the backend, `add_comment(..., public=...)` chooses per comment."""
    case_id = salesforce.fake.add_case("Printer jam")
    now = datetime.now(UTC)
    default = salesforce.backend()
    internal = salesforce.backend(comment_visibility="internal", include_private_comments=True)
    default.add_comment(case_id, Comment("ann", "Replaced the toner", now))
    internal.add_comment(case_id, Comment("ann", "Customer's contract lapsed", now))
    default.add_comment(case_id, Comment("ann", "Escalating to tier 2", now), public=False)
    internal.add_comment(case_id, Comment("ann", "We are on it", now), public=True)
    posted = [(c.body, c.published) for c in salesforce.fake.case(case_id).comments]
    assert posted == [
        ("Replaced the toner", True),
        ("Customer's contract lapsed", False),
        ("Escalating to tier 2", False),
        ("We are on it", True),
    ]
    assert [c.text for c in default.fetch(case_id).comments] == ["Replaced the toner", "We are on it"]
    assert len(internal.fetch(case_id).comments) == 4  # read back only where private comments are read

    Ticket.register_backend("sf", internal)
    Ticket.comment(case_id, "Through the facade", author="qa-bot")
    assert salesforce.fake.case(case_id).comments[-1].published is False


def test_comment_visibility_is_validated_and_warned_about() -> None:
    with pytest.raises(ConfigError, match=r"comment_visibility: must be one of public, internal"):
        SalesforceBackend(instance_url="https://x.my.salesforce.com", access_token="t", comment_visibility="secret")
    section = {
        "enabled": True,
        "instance_url": "https://x.my.salesforce.com",
        "access_token": "t",
        "webhook_secret": "s",
    }
    loaded = parse_config(
        {"data_manager": {"sources": {"tickets": {"salesforce": {**section, "comment_visibility": "internal"}}}}},
        env={},
    )
    assert any("comment_visibility is internal but include_private_comments is false" in w for w in loaded.warnings)
    with pytest.raises(ConfigError, match=r"salesforce\.comment_visibility: Must be one of"):
        parse_config({"data_manager": {"sources": {"tickets": {"salesforce": {**section, "comment_visibility": "x"}}}}})

"""Jira as a `TicketBackend` behind the `Ticket` facade: create, read, update (with transitions), comment."""

from __future__ import annotations

import pytest

from data_manager.collectors.tickets.errors import (
    ConfigError,
    PermanentError,
    TicketGone,
    TicketNotFound,
    UnknownFieldError,
)
from data_manager.collectors.tickets.model import Status, Ticket, TicketBackend
from tests.integrations.jira.conftest import JiraSetup
from tests.integrations.jira.fake_server import STATUSES

UNICODE = "Grüße — 你好 — 👩‍💻"


@pytest.fixture
def backend(jira: JiraSetup):
    client = jira.client(project_key="PROJ", issue_type="Bug")
    Ticket.set_backend(client)
    return client


def transitions_posted(setup: JiraSetup) -> int:
    return sum(1 for method, path, _ in setup.fake.requests if method == "POST" and path.endswith("/transitions"))


def test_jira_is_a_ticket_backend(backend) -> None:
    assert isinstance(backend, TicketBackend)


def test_create_and_read_round_trip(jira: JiraSetup, backend) -> None:
    key = Ticket.create(
        title=f"Printer on fire {UNICODE}",
        description=f"It smokes.\nA lot.\n\nSecond paragraph {UNICODE}",
        assignee=jira.user_id("bob"),
        requester=jira.user_id("chen"),
    )
    stored = jira.fake.issue(key)
    assert key == "PROJ-1" and stored.issue_type == "10004"  # Bug
    # The fake refuses a string description on v3 and ADF on v2, so this proves the format per version.
    assert isinstance(stored.description, dict if jira.deployment == "cloud" else str)

    ticket = Ticket.read(key)
    assert ticket.data.title == f"Printer on fire {UNICODE}"
    assert ticket.data.description == f"It smokes.\nA lot.\n\nSecond paragraph {UNICODE}"
    assert (ticket.data.assignee, ticket.data.requester) == ("Bob Müller", "陈伟")
    assert ticket.data.status is Status.OPEN
    assert ticket.comments == []


def test_create_in_a_closed_state_uses_a_transition(jira: JiraSetup, backend) -> None:
    key = Ticket.create(title="Already done", status=Status.CLOSED)
    assert STATUSES[jira.fake.issue(key).status].name == "Done"
    assert Ticket.read(key).data.status is Status.CLOSED


def test_create_takes_the_project_from_a_single_project_jql(jira: JiraSetup) -> None:
    client = jira.client('project = "OPS" ORDER BY key')
    data = Ticket(ticket_id="").data
    data.title = "Where does it go?"
    assert client.create(data) == "OPS-1"
    with pytest.raises(ConfigError, match=r"jira\.project_key: is required to create issues"):
        jira.client("project in (A, B)").create(data)


def test_create_errors_carry_jiras_field_message(jira: JiraSetup, backend) -> None:
    with pytest.raises(PermanentError, match="summary: You must specify a summary of the issue"):
        Ticket.create(title="")
    with pytest.raises(UnknownFieldError, match="communication"):
        Ticket.create(title="x", communication="email")


def test_update_fields(jira: JiraSetup, backend) -> None:
    key = Ticket.create(title="Old title", description="old")
    Ticket.update(
        key,
        title="New title",
        description=f"new {UNICODE}",
        assignee=jira.user_id("ann"),
        requester=jira.user_id("bob"),
    )
    ticket = Ticket.read(key)
    assert (ticket.data.title, ticket.data.description) == ("New title", f"new {UNICODE}")
    assert (ticket.data.assignee, ticket.data.requester) == ("Ann Example", "Bob Müller")

    Ticket.update(key, assignee=None, description="")
    ticket = Ticket.read(key)
    assert ticket.data.assignee is None and ticket.data.description == ""


def test_update_custom_fields_by_field_id(jira: JiraSetup, backend) -> None:
    key = Ticket.create(title="Custom")
    Ticket.update(key, custom_fields={"customfield_10010": {"value": "Gold"}})
    assert jira.fake.issue(key).custom == {"customfield_10010": {"value": "Gold"}}


def test_user_given_the_wrong_way_is_refused_with_jiras_message(jira: JiraSetup, backend) -> None:
    key = Ticket.create(title="Assign me")
    with pytest.raises(PermanentError, match="assignee: User 'nobody-here' does not exist"):
        Ticket.update(key, assignee="nobody-here")


def test_status_changes_walk_the_workflow(jira: JiraSetup, backend) -> None:
    key = Ticket.create(title="Workflow")
    Ticket.update(key, status=Status.IN_PROGRESS)
    assert STATUSES[jira.fake.issue(key).status].name == "In Progress"

    Ticket.update(key, status="resolved")  # "Resolve issue" requires a resolution: the client fills one in
    issue = jira.fake.issue(key)
    assert STATUSES[issue.status].name == "Resolved" and issue.resolution == "10002"  # Fixed
    assert Ticket.read(key).data.status is Status.RESOLVED

    posted = transitions_posted(jira)
    Ticket.update(key, status=Status.RESOLVED)  # already there: no transition
    assert transitions_posted(jira) == posted

    Ticket.update(key, status=Status.OPEN)  # Reopen
    assert Ticket.read(key).data.status is Status.OPEN
    Ticket.update(key, status=Status.CLOSED)
    assert STATUSES[jira.fake.issue(key).status].name == "Done"


def test_no_matching_transition_is_a_clear_error_and_changes_nothing(jira: JiraSetup, backend) -> None:
    key = Ticket.create(title="Finished", status=Status.CLOSED)
    before = jira.fake.issue(key).updated
    with pytest.raises(PermanentError) as caught:
        Ticket.update(key, status=Status.IN_PROGRESS, title="should not be written")
    message = str(caught.value)
    assert f"Jira issue {key}: no transition from status 'Done' leads to a status that maps to in_progress" in message
    assert "'Reopen' → To Do" in message
    issue = jira.fake.issue(key)
    assert issue.summary == "Finished" and issue.updated == before


def test_comment(jira: JiraSetup, backend) -> None:
    key = Ticket.create(title="Talk to me")
    Ticket.comment(key, f"First line\nsecond line\n\n{UNICODE}", author="someone")
    stored = jira.fake.issue(key).comments[0]
    assert isinstance(stored.body, dict if jira.deployment == "cloud" else str)
    assert stored.author == "bot"  # Jira records the API user as the author
    [comment] = Ticket.read(key).comments
    assert comment.text == f"First line\nsecond line\n\n{UNICODE}"
    assert comment.author == "Sync Bot"


def test_missing_ticket(jira: JiraSetup, backend) -> None:
    with pytest.raises(TicketNotFound):
        Ticket.read("PROJ-999")
    with pytest.raises(TicketGone):
        Ticket.update("PROJ-999", title="x")
    with pytest.raises(TicketGone):
        Ticket.comment("PROJ-999", "hello", author="me")


def test_unsupported_field_is_refused_before_any_request(jira: JiraSetup, backend) -> None:
    key = Ticket.create(title="x")
    sent = len(jira.fake.requests)
    with pytest.raises(UnknownFieldError, match="Jira cannot update communication"):
        Ticket.update(key, communication="phone")
    assert len(jira.fake.requests) == sent

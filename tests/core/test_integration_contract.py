"""The one contract class every ticket system implements: checked at definition, read-only systems, defaults."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from data_manager.collectors.tickets import Ticket, TicketData
from data_manager.collectors.tickets.errors import (
    ConfigError,
    CredentialsRefused,
    PermanentError,
    ReadOnlySystemError,
    TicketGone,
)
from data_manager.collectors.tickets.integration import (
    IntegrationSettings,
    SharedResources,
    TicketEvent,
    TicketIntegration,
    TicketRef,
    TicketSnapshot,
    WebhookReply,
    WebhookRequest,
)
from data_manager.collectors.tickets.integrations.jira import JiraTickets
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.integrations.redmine import RedmineTickets
from data_manager.collectors.tickets.model import Comment


class _Reader(TicketIntegration):
    """An intermediate base (no `system=`): not checked until a concrete system names itself."""

    ticket_id_pattern = re.compile(r"R[0-9]+")
    tickets: dict[str, str]

    def __init__(self) -> None:
        self.tickets = {"R1": "one", "R2": "two"}

    @classmethod
    def from_settings(cls, settings: IntegrationSettings, *, name: str, shared: SharedResources | None = None) -> Any:
        integration = cls()
        integration.apply_settings(settings, name=name)
        return integration

    def fetch(self, ticket_id: str) -> TicketSnapshot:
        if ticket_id not in self.tickets:
            raise TicketGone(ticket_id, "the test system")
        return TicketSnapshot(ticket_id, TicketData(title=self.tickets[ticket_id]))

    def iter_changed(self, since: datetime | None) -> Iterator[TicketRef]:
        yield from (TicketRef(ticket_id) for ticket_id in self.tickets)

    def verify_credentials(self) -> None:
        return None

    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        return None

    def parse_webhook(self, request: WebhookRequest) -> list[TicketEvent]:
        return []


def test_a_system_that_forgets_write_methods_fails_when_defined() -> None:
    with pytest.raises(TypeError) as refused:

        class Forgetful(_Reader, system="forgetful"):
            def create(self, data: TicketData) -> str:
                return "R3"

    message = str(refused.value)
    assert "add_comment" in message and "read" in message and "update" in message and "create" not in message
    assert "read_only = True" in message


def test_a_system_without_an_id_pattern_fails_when_defined() -> None:
    with pytest.raises(TypeError, match="ticket_id_pattern"):

        class NoPattern(TicketIntegration, system="nopattern"):
            pass


def test_every_missing_method_is_named() -> None:
    with pytest.raises(TypeError) as refused:

        class Empty(TicketIntegration, system="empty"):
            ticket_id_pattern = re.compile(r"[0-9]+")

    for method in (
        "fetch",
        "iter_changed",
        "verify_credentials",
        "verify_webhook",
        "parse_webhook",
        "from_settings",
        "create",
        "read",
        "update",
        "add_comment",
    ):
        assert method in str(refused.value)


class ReadOnly(_Reader, system="readonly"):
    read_only = True


def test_a_read_only_system_refuses_writes_clearly_and_reads_through_fetch() -> None:
    system = ReadOnly()
    with pytest.raises(ReadOnlySystemError, match="'readonly' is read-only: it cannot create") as refused:
        system.create(TicketData(title="x"))
    assert isinstance(refused.value, PermanentError)
    with pytest.raises(ReadOnlySystemError, match="update"):
        system.update("R1", {"title": "y"})
    with pytest.raises(ReadOnlySystemError, match="add_comment"):
        system.add_comment("R1", Comment("a", "b", datetime.now(UTC)))
    data, comments = system.read("R1")
    assert (data.title, comments) == ("one", [])


def test_the_facade_reads_a_read_only_system_and_refuses_writes() -> None:
    class Facade(Ticket):
        pass

    Facade.register_backend("ro", ReadOnly())
    assert Facade.read("R2").data.title == "two"
    with pytest.raises(ReadOnlySystemError):
        Facade.update("R2", title="changed")


def test_fetch_many_defaults_to_one_fetch_per_id_and_reports_gone_ones() -> None:
    found = ReadOnly().fetch_many(["R1", "R9"])
    assert set(found) == {"R1", "R9"}
    assert isinstance(found["R1"], TicketSnapshot) and found["R1"].data.title == "one"
    assert isinstance(found["R9"], TicketGone)


def test_a_listing_may_carry_the_complete_ticket() -> None:
    snapshot = TicketSnapshot("R1", TicketData(title="one"))
    assert TicketRef("R1").snapshot is None
    assert TicketRef("R1", None, snapshot).snapshot is snapshot


def test_instance_name_defaults_to_the_system_and_comes_from_settings() -> None:
    assert ReadOnly().name == "readonly"
    built = ReadOnly.from_config({"webhook_secret": "s"}, name="readonly_eu")
    assert (built.system, built.name, built.webhook_secret) == ("readonly", "readonly_eu", "s")
    assert "readonly_eu" in repr(built)


def test_from_config_names_the_instance_in_errors() -> None:
    with pytest.raises(ConfigError, match=r"data_manager\.sources\.tickets\.redmine_eu\.api_key"):
        RedmineTickets.from_config({"base_url": "https://r.example.com"}, name="redmine_eu")


def test_webhook_reply_defaults_to_none() -> None:
    assert ReadOnly().webhook_reply([TicketEvent("R1")]) is None
    assert WebhookReply(200, b"ok", "text/plain").content_type == "text/plain"


@pytest.mark.parametrize(
    ("cls", "good", "bad"),
    [
        (InMemoryTickets, ["T1", "T000042"], ["t1", "T", "1", "T1 ", "T١"]),
        (RedmineTickets, ["1", "42"], ["", "x1", "1.5", "١٢"]),
        (JiraTickets, ["PROJ-7", "AB_1-12", "10001"], ["proj-7", "P-", "PROJ-", "-7", "PROJ 7"]),
    ],
)
def test_ticket_id_patterns(cls: type[TicketIntegration], good: list[str], bad: list[str]) -> None:
    assert all(cls.ticket_id_pattern.fullmatch(ticket_id) for ticket_id in good)
    assert not any(cls.ticket_id_pattern.fullmatch(ticket_id) for ticket_id in bad)


def test_memory_proves_nothing_and_builds_from_settings() -> None:
    integration = InMemoryTickets.from_config({"store": "contract"}, name="memory_two")
    integration.verify_credentials()
    assert integration.name == "memory_two" and integration.system == "memory"


def test_settings_are_typed_and_read_as_a_mapping() -> None:
    settings = InMemoryTickets.config_schema().load({"enabled": True, "store": "s"})
    assert settings.store == "s" and settings["store"] == "s" and settings.get("nope") is None
    assert dict(settings)["resync_concurrency"] == 8
    with pytest.raises(Exception):
        settings.store = "other"  # type: ignore[misc]


def test_seed_attributes() -> None:
    redmine = RedmineTickets(base_url="https://r.example.com", api_key="k" * 40, project_id="ops")
    assert (redmine.base_url, redmine.api_key, redmine.project_id) == ("https://r.example.com", "k" * 40, "ops")
    assert "k" * 40 not in repr(redmine)
    jira = JiraTickets(
        base_url="https://j.example.com", username="bot@example.com", api_token="t0ken-123", jql_query="project = P"
    )
    assert (jira.base_url, jira.username, jira.api_token, jira.jql_query) == (
        "https://j.example.com",
        "bot@example.com",
        "t0ken-123",
        "project = P",
    )
    assert "t0ken-123" not in repr(jira)


def test_credentials_refused_is_a_permanent_401() -> None:
    error = CredentialsRefused("Jira refused the credentials")
    assert isinstance(error, PermanentError) and error.status == 401


def test_shared_resources_make_each_once_and_refuse_another_kind() -> None:
    shared = SharedResources()
    first = shared.get("memory:store:x", list, list)
    assert shared.get("memory:store:x", list, lambda: ["never made"]) is first and "memory:store:x" in shared
    with pytest.raises(TypeError, match="'memory:store:x' is a list, not a dict"):
        shared.get("memory:store:x", dict, dict)

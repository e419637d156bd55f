from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from data_manager.collectors.tickets import Ticket, TicketData, TicketGone
from data_manager.collectors.tickets.errors import ConfigError, WebhookAuthError, WebhookPayloadError
from data_manager.collectors.tickets.integration import (
    EventAction,
    TicketEvent,
    WebhookRequest,
    integration_class,
    known_systems,
)
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets


def signed(body: bytes, secret: str = "s3cret") -> WebhookRequest:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(body=body, headers={"x-signature-256": f"sha256={digest}"})


def test_registry_finds_the_module_by_system_name() -> None:
    assert "memory" in known_systems()
    assert integration_class("memory") is InMemoryTickets
    with pytest.raises(ConfigError, match="unknown ticket system 'nope'"):
        integration_class("nope", "data_manager.sources.tickets.nope")


def test_webhook_signature_is_checked_in_constant_time_against_the_raw_body() -> None:
    integration = InMemoryTickets(webhook_secret="s3cret")
    body = b'{"ticket_id": "T000001", "action": "updated"}'
    integration.authenticate_webhook(signed(body))
    with pytest.raises(WebhookAuthError, match="does not match"):
        integration.authenticate_webhook(signed(body, "wrong"))
    with pytest.raises(WebhookAuthError, match="does not match"):
        integration.authenticate_webhook(WebhookRequest(body=body + b" ", headers=dict(signed(body).headers)))
    with pytest.raises(WebhookAuthError, match="missing"):
        integration.authenticate_webhook(WebhookRequest(body=body, headers={}))
    with pytest.raises(WebhookAuthError, match="sha256="):
        integration.authenticate_webhook(WebhookRequest(body=body, headers={"X-Signature-256": "md5=abc"}))


def test_without_a_secret_webhooks_are_rejected_unless_waived() -> None:
    integration = InMemoryTickets()
    request = WebhookRequest(body=b"{}", headers={})
    with pytest.raises(WebhookAuthError, match="no webhook_secret"):
        integration.authenticate_webhook(request)
    integration.webhook_unauthenticated = True
    integration.authenticate_webhook(request)


@pytest.mark.parametrize(
    ("payload", "events"),
    [
        ({"ticket_id": "T1"}, [TicketEvent("T1", EventAction.UPSERT)]),
        ({"ticket_id": "T1", "action": "deleted", "delivery_id": 7}, [TicketEvent("T1", EventAction.DELETE, "7")]),
        ({"ticket_id": "T1", "action": "viewed"}, []),
    ],
)
def test_parse_webhook(payload: dict, events: list) -> None:
    assert InMemoryTickets().parse_webhook(WebhookRequest(json.dumps(payload).encode(), {})) == events


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b'{"action": "updated"}', "ticket_id"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_webhooks_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        InMemoryTickets().parse_webhook(WebhookRequest(body, {}))


def test_fetch_of_a_deleted_ticket_is_gone_and_the_facade_works_through_it() -> None:
    integration = InMemoryTickets()
    Ticket.register_backend("memory", integration)
    ticket_id = Ticket.create(title="x")
    Ticket.comment(ticket_id, "hi", "ann")
    snapshot = integration.fetch(ticket_id)
    assert snapshot.data.title == "x" and [c.text for c in snapshot.comments] == ["hi"]
    integration.backend.delete(ticket_id)
    with pytest.raises(TicketGone):
        integration.fetch(ticket_id)


def test_repr_never_shows_the_secret() -> None:
    assert "s3cret" not in repr(InMemoryTickets(webhook_secret="s3cret"))
    assert TicketData().status.value == "open"

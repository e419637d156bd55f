"""Redmine webhooks: the plugin's and Redmine 7's payloads, replayed from fixtures, and how each is authenticated."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from data_manager.collectors.tickets.errors import WebhookAuthError, WebhookPayloadError
from data_manager.collectors.tickets.integration import EventAction, TicketEvent, WebhookRequest
from data_manager.collectors.tickets.integrations.redmine import RedmineTickets

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECRET = "s3cret-for-tests"


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def signature(raw: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


@pytest.fixture
def redmine() -> RedmineTickets:
    return RedmineTickets("https://redmine.example.com", "k" * 40, webhook_secret=SECRET)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("plugin_opened.json", [TicketEvent("196", EventAction.UPSERT, "redmine:issue.created:196")]),
        ("plugin_updated.json", [TicketEvent("196", EventAction.UPSERT, "redmine:journal:1201")]),
        ("native_issue_created.json", [TicketEvent("42", EventAction.UPSERT, "redmine:issue.created:42")]),
        ("native_issue_updated.json", [TicketEvent("42", EventAction.UPSERT, "redmine:journal:901")]),
        ("native_issue_deleted.json", [TicketEvent("42", EventAction.DELETE, "redmine:issue.deleted:42")]),
        ("native_wiki_page_updated.json", []),  # acknowledged, nothing to sync
    ],
)
def test_payloads_become_events(redmine: RedmineTickets, fixture: str, expected: list[TicketEvent]) -> None:
    assert redmine.parse_webhook(WebhookRequest(body(fixture), {})) == expected


@pytest.mark.parametrize("kind", ["time_entry.created", "news.updated", "version.deleted", "wiki_page.deleted"])
def test_other_native_event_kinds_are_ignored(redmine: RedmineTickets, kind: str) -> None:
    raw = f'{{"type": "{kind}", "timestamp": "2026-07-01T10:00:00Z", "data": {{}}}}'.encode()
    assert redmine.parse_webhook(WebhookRequest(raw, {})) == []


def test_plugin_update_without_journal_still_upserts(redmine: RedmineTickets) -> None:
    raw = b'{"payload": {"action": "updated", "issue": {"id": "77"}}}'
    assert redmine.parse_webhook(WebhookRequest(raw, {})) == [TicketEvent("77", EventAction.UPSERT, None)]


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("malformed_plugin_issue_without_id.json", "payload.issue.id missing"),
        ("malformed_native_issue_not_an_object.json", "data.issue must be an object"),
        ("malformed_native_bad_issue_id.json", "data.issue.id must be a positive integer"),
        ("malformed_unknown_shape.json", "neither a redmine_webhook plugin payload"),
        ("malformed_truncated.json", "not valid JSON"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(redmine: RedmineTickets, fixture: str, message: str) -> None:
    with pytest.raises(WebhookPayloadError) as refused:
        redmine.parse_webhook(WebhookRequest(body(fixture), {}))
    assert message in str(refused.value)
    assert refused.value.http_status == 400


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2]", "JSON object"),
        (b'{"payload": "x"}', "payload must be an object"),
        (b'{"payload": {"issue": {"id": 1}}}', "payload.action missing"),
        (b'{"payload": {"action": "updated"}}', "payload.issue missing"),
        (b'{"payload": {"action": "updated", "issue": {"id": 0}}}', "payload.issue.id must be a positive integer"),
        (b'{"payload": {"action": "updated", "issue": {"id": true}}}', "payload.issue.id must be a positive integer"),
        (b'{"type": "issue.updated", "data": {"issue": {}}}', "data.issue.id missing"),
        (b'{"type": "issue.updated"}', "data missing"),
        (b'{"type": 7}', "type must look like 'issue.updated'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_shape_errors_name_the_field(redmine: RedmineTickets, raw: bytes, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        redmine.parse_webhook(WebhookRequest(raw, {}))


# -- authentication --------------------------------------------------------------------------------
def test_native_signature_is_verified(redmine: RedmineTickets) -> None:
    raw = body("native_issue_updated.json")
    redmine.authenticate_webhook(WebhookRequest(raw, {"X-Redmine-Signature-256": signature(raw)}))
    redmine.authenticate_webhook(
        WebhookRequest(raw, {"x-redmine-signature-256": signature(raw).upper().replace("SHA256", "sha256")})
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Redmine-Signature-256": signature(b"another body")},
        {"X-Redmine-Signature-256": signature(b"", "wrong secret")},
        {"X-Redmine-Signature-256": "sha256="},
        {"X-Redmine-Signature-256": "md5=abc"},
        {"X-Redmine-Signature-256": ""},
        # a present signature must verify: a right token does not rescue a wrong signature
        {"X-Redmine-Signature-256": signature(b"another body"), "X-Webhook-Token": SECRET},
    ],
)
def test_bad_native_signatures_are_refused(redmine: RedmineTickets, headers: dict[str, str]) -> None:
    raw = body("native_issue_updated.json")
    with pytest.raises(WebhookAuthError) as refused:
        redmine.authenticate_webhook(WebhookRequest(raw, headers))
    assert refused.value.http_status == 401


def test_plugin_token_in_header_or_query(redmine: RedmineTickets) -> None:
    raw = body("plugin_updated.json")
    redmine.authenticate_webhook(WebhookRequest(raw, {"X-Webhook-Token": SECRET}))
    redmine.authenticate_webhook(WebhookRequest(raw, {}, {"token": SECRET}))


@pytest.mark.parametrize(
    ("headers", "query", "message"),
    [
        ({"X-Webhook-Token": "wrong"}, {}, "does not match"),
        ({}, {"token": SECRET + "x"}, "does not match"),
        ({"X-Webhook-Token": ""}, {"token": SECRET}, "does not match"),  # the header, when sent, is what counts
        ({}, {}, "missing X-Redmine-Signature-256"),
    ],
)
def test_bad_or_missing_tokens_are_refused(
    redmine: RedmineTickets, headers: dict[str, str], query: dict[str, str], message: str
) -> None:
    with pytest.raises(WebhookAuthError, match=message) as refused:
        redmine.authenticate_webhook(WebhookRequest(body("plugin_updated.json"), headers, query))
    assert SECRET not in str(refused.value)


def test_without_a_secret_webhooks_are_refused_unless_waived() -> None:
    redmine = RedmineTickets("https://redmine.example.com", "k" * 40)
    request = WebhookRequest(body("plugin_opened.json"), {"X-Webhook-Token": "anything"})
    with pytest.raises(WebhookAuthError, match="no webhook_secret"):
        redmine.authenticate_webhook(request)
    redmine.webhook_unauthenticated = True
    redmine.authenticate_webhook(request)

"""Jira webhooks: replay each fixture through authenticate + parse, and refuse what Jira would never send."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from data_manager.collectors.tickets.errors import WebhookAuthError, WebhookPayloadError
from data_manager.collectors.tickets.integration import EventAction, TicketEvent, WebhookRequest
from data_manager.collectors.tickets.integrations.jira import JiraTickets

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "webhook-secret-for-tests"
DELIVERY = "8d3f6a2e-1111-4c4c-9999-0123456789ab"


@pytest.fixture
def jira() -> JiraTickets:
    integration = JiraTickets(
        "https://example.atlassian.net", "bot@example.com", "api-token-1234", "project = PROJ", webhook_secret=SECRET
    )
    yield integration
    integration.close()


def signed(body: bytes, secret: str = SECRET, algorithm: str = "sha256", **headers: str) -> WebhookRequest:
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()
    return WebhookRequest(
        body=body,
        headers={"X-Hub-Signature": f"{algorithm}={digest}", "X-Atlassian-Webhook-Identifier": DELIVERY, **headers},
    )


def fixture_body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("webhook_jira_issue_created.json", [TicketEvent("PROJ-7", EventAction.UPSERT, DELIVERY)]),
        ("webhook_jira_issue_updated.json", [TicketEvent("PROJ-7", EventAction.UPSERT, DELIVERY)]),
        ("webhook_jira_issue_deleted.json", [TicketEvent("PROJ-7", EventAction.DELETE, DELIVERY)]),
        ("webhook_comment_created.json", [TicketEvent("PROJ-7", EventAction.UPSERT, DELIVERY)]),
        ("webhook_comment_updated.json", [TicketEvent("PROJ-7", EventAction.UPSERT, DELIVERY)]),
        ("webhook_comment_deleted.json", [TicketEvent("PROJ-7", EventAction.UPSERT, DELIVERY)]),
        ("webhook_datacenter_issue_updated.json", [TicketEvent("PROJ-7", EventAction.UPSERT, DELIVERY)]),
        (
            "webhook_jira_issue_updated_moved.json",
            [
                TicketEvent("PROJ-7", EventAction.DELETE, f"{DELIVERY}:moved-from"),
                TicketEvent("OPS-12", EventAction.UPSERT, DELIVERY),
            ],
        ),
        ("webhook_worklog_updated.json", []),
        # Server / Data Center comment events without an `issue`: the issue id comes from comment.self.
        ("webhook_datacenter_comment_created_no_issue.json", [TicketEvent("10001", EventAction.UPSERT, DELIVERY)]),
        ("webhook_datacenter_comment_updated_no_issue.json", [TicketEvent("10001", EventAction.UPSERT, DELIVERY)]),
        ("webhook_datacenter_comment_deleted_no_issue.json", [TicketEvent("10001", EventAction.UPSERT, DELIVERY)]),
        ("webhook_datacenter_comment_created_no_id.json", []),  # no id anywhere: acknowledged, ignored
    ],
)
def test_fixture_events(jira: JiraTickets, fixture: str, expected: list[TicketEvent]) -> None:
    request = signed(fixture_body(fixture))
    jira.authenticate_webhook(request)
    assert jira.parse_webhook(request) == expected


def test_every_event_kind_has_a_fixture() -> None:
    kinds = {json.loads(path.read_text(encoding="utf-8"))["webhookEvent"] for path in FIXTURES.glob("webhook_*.json")}
    assert {
        "jira:issue_created",
        "jira:issue_updated",
        "jira:issue_deleted",
        "comment_created",
        "comment_updated",
        "comment_deleted",
    } <= kinds


def test_delivery_id_is_optional(jira: JiraTickets) -> None:
    body = fixture_body("webhook_comment_created.json")
    request = WebhookRequest(body=body, headers={"X-Hub-Signature": signed(body).headers["X-Hub-Signature"]})
    jira.authenticate_webhook(request)
    assert jira.parse_webhook(request) == [TicketEvent("PROJ-7", EventAction.UPSERT, None)]


def test_header_names_are_case_insensitive(jira: JiraTickets) -> None:
    body = fixture_body("webhook_jira_issue_updated.json")
    good = signed(body)
    request = WebhookRequest(body=body, headers={k.lower(): v for k, v in good.headers.items()})
    jira.authenticate_webhook(request)
    assert jira.parse_webhook(request)[0].delivery_id == DELIVERY


# -- authentication ------------------------------------------------------------------------------------
def test_the_algorithm_is_read_from_the_prefix(jira: JiraTickets) -> None:
    jira.authenticate_webhook(signed(fixture_body("webhook_jira_issue_updated.json"), algorithm="sha512"))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing X-Hub-Signature"),
        ({"X-Hub-Signature": ""}, "missing X-Hub-Signature"),
        ({"X-Hub-Signature": "0123abcd"}, "must look like 'sha256=<hex digest>'"),
        ({"X-Hub-Signature": "md5=0123abcd"}, "must look like 'sha256=<hex digest>'"),
        ({"X-Hub-Signature": "sha256=" + "0" * 64}, "does not match"),
    ],
)
def test_missing_or_wrong_signature_is_refused(jira: JiraTickets, headers: dict[str, str], message: str) -> None:
    request = WebhookRequest(body=fixture_body("webhook_jira_issue_updated.json"), headers=headers)
    with pytest.raises(WebhookAuthError, match=message):
        jira.authenticate_webhook(request)


def test_signature_with_another_secret_is_refused(jira: JiraTickets) -> None:
    with pytest.raises(WebhookAuthError, match="does not match"):
        jira.authenticate_webhook(signed(fixture_body("webhook_jira_issue_updated.json"), secret="not-the-secret"))


def test_a_changed_body_breaks_the_signature(jira: JiraTickets) -> None:
    body = fixture_body("webhook_jira_issue_deleted.json")
    request = signed(body)
    tampered = WebhookRequest(body=body.replace(b"PROJ-7", b"PROJ-8"), headers=request.headers)
    with pytest.raises(WebhookAuthError):
        jira.authenticate_webhook(tampered)


def test_no_secret_configured_refuses_unless_waived() -> None:
    jira = JiraTickets("https://example.atlassian.net", "bot@example.com", "api-token-1234", "project = PROJ")
    request = WebhookRequest(body=fixture_body("webhook_jira_issue_updated.json"), headers={})
    with pytest.raises(WebhookAuthError, match="no webhook_secret is configured for jira"):
        jira.authenticate_webhook(request)
    jira.webhook_unauthenticated = True
    jira.authenticate_webhook(request)
    assert jira.parse_webhook(request)[0].ticket_id == "PROJ-7"


# -- malformed bodies ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"issue": {"key": "PROJ-1"}}', "missing 'webhookEvent'"),
        (b'{"webhookEvent": "", "issue": {"key": "PROJ-1"}}', "missing 'webhookEvent'"),
        (b'{"webhookEvent": "jira:issue_updated"}', "jira:issue_updated payload has no 'issue' object"),
        (b'{"webhookEvent": "comment_created", "issue": "PROJ-1"}', "comment_created payload has no 'issue' object"),
        (
            b'{"webhookEvent": "jira:issue_deleted", "issue": {"id": "10001"}}',
            "jira:issue_deleted payload has no 'issue.key'",
        ),
        (b'{"webhookEvent": "comment_deleted", "issue": {"key": "  "}}', "comment_deleted payload has no 'issue.key'"),
    ],
)
def test_malformed_payloads_name_what_is_missing(jira: JiraTickets, body: bytes, message: str) -> None:
    request = signed(body)
    jira.authenticate_webhook(request)
    with pytest.raises(WebhookPayloadError, match=message):
        jira.parse_webhook(request)


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ({"self": "https://jira.example.com/rest/api/2/issue/10001/comment/10050"}, "10001"),
        ({"self": "https://jira.example.com/jira/rest/api/latest/issue/PROJ-7/comment/10050/"}, "PROJ-7"),
        ({"self": "https://jira.example.com/rest/api/2/comment/10050"}, None),
        ({"self": 12}, None),
        ({"id": "10050"}, None),
        ("not an object", None),
        (None, None),
    ],
)
def test_comment_events_without_issue_take_the_id_from_comment_self(
    jira: JiraTickets, comment: object, expected: str | None
) -> None:
    payload: dict[str, object] = {"webhookEvent": "comment_updated"}
    if comment is not None:
        payload["comment"] = comment
    events = jira.parse_webhook(signed(json.dumps(payload).encode()))
    assert events == ([TicketEvent(expected, EventAction.UPSERT, DELIVERY)] if expected else [])


def test_unknown_event_without_issue_is_acknowledged(jira: JiraTickets) -> None:
    assert jira.parse_webhook(signed(b'{"webhookEvent": "jira:version_released", "version": {"id": "1"}}')) == []

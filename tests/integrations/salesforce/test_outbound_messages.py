"""Outbound Messages: SOAP 1.1 `notifications` (≤ 100), Case and CaseComment (ParentId), the Ack, hardened XML.

Sources: SOAP API Developer Guide "Understanding the Outbound Messaging WSDL" and "Understanding
Notifications"; Help "Considerations for Outbound Messages" (a record deleted before delivery is sent
without data); "Outbound Messaging Security" (unsigned: authenticate by URL token and OrganizationId).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring

from data_manager.collectors.tickets.errors import WebhookAuthError, WebhookPayloadError
from data_manager.collectors.tickets.integration import EventAction, WebhookRequest
from data_manager.collectors.tickets.integrations.salesforce import SalesforceBackend
from data_manager.collectors.tickets.integrations.salesforce._outbound import ACK_ENVELOPE, parse_outbound_message
from tests.integrations.salesforce.fake_server import FakeSalesforce

FIXTURES = Path(__file__).parent / "fixtures"


def backend(**kwargs: object) -> SalesforceBackend:
    return SalesforceBackend(instance_url="https://acme.my.salesforce.com", access_token="00Dx!token-value", **kwargs)  # type: ignore[arg-type]


def request(body: bytes, token: str | None = "s3cret-token") -> WebhookRequest:
    return WebhookRequest(body, {"Content-Type": "text/xml; charset=utf-8"}, {"token": token} if token else {})


def test_case_notifications_become_upserts_with_the_notification_id() -> None:
    body = (FIXTURES / "outbound_case.xml").read_bytes()
    events = backend().parse_webhook(request(body))
    assert [(e.ticket_id, e.action, e.delivery_id) for e in events] == [
        ("500xx000000bZ3QAAU", EventAction.UPSERT, "04l5e00000Gx7QzAAJ"),
        ("500xx000000bZ3RAAU", EventAction.UPSERT, "04l5e00000Gx7R0AAJ"),
    ]


def test_case_comment_notifications_name_their_parent_case_and_empty_ones_are_skipped() -> None:
    body = (FIXTURES / "outbound_case_comment.xml").read_bytes()
    message = parse_outbound_message(body)
    assert [(n.object_type, n.case_id) for n in message.notifications] == [
        ("CaseComment", "500xx000000bZ3QAAU"),
        ("CaseComment", None),  # deleted before delivery: no data
    ]
    assert [e.ticket_id for e in backend().parse_webhook(request(body))] == ["500xx000000bZ3QAAU"]


def test_a_comment_message_without_parent_id_says_how_to_fix_it() -> None:
    body = (
        (FIXTURES / "outbound_case_comment.xml")
        .read_bytes()
        .replace(b"<sf:ParentId>500xx000000bZ3QAAU</sf:ParentId>", b"")
    )
    with pytest.raises(WebhookPayloadError, match="ParentId"):
        backend().parse_webhook(request(body))


def test_up_to_100_notifications_and_not_more() -> None:
    fake = FakeSalesforce()
    ids = fake.seed(101, comments=lambda i: 0)
    assert len(backend().parse_webhook(request(fake.outbound_message(ids[:100])))) == 100
    with pytest.raises(WebhookPayloadError, match="at most 100"):
        backend().parse_webhook(request(fake.outbound_message(ids)))


def test_token_is_required_and_compared_exactly() -> None:
    body = (FIXTURES / "outbound_case.xml").read_bytes()
    integration = backend(webhook_secret="s3cret-token")
    integration.authenticate_webhook(request(body))
    for token in (None, "s3cret-toke", "s3cret-token ", "S3CRET-TOKEN"):
        with pytest.raises(WebhookAuthError):
            integration.authenticate_webhook(request(body, token))


def test_organization_id_is_checked_when_configured() -> None:
    body = (FIXTURES / "outbound_case.xml").read_bytes()
    assert backend(organization_id="00D5e000000KQ2e").parse_webhook(request(body))  # 15-character form accepted
    with pytest.raises(WebhookAuthError, match="another organization"):
        backend(organization_id="00D5e000000ZZZZ").parse_webhook(request(body))


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>',
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        b"<not-closed>",
        b'{"json": "instead"}',
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body/></soapenv:Envelope>',
    ],
)
def test_hostile_or_wrong_xml_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        backend().parse_webhook(request(body))


def test_other_sobject_types_are_refused() -> None:
    body = (FIXTURES / "outbound_case.xml").read_bytes().replace(b'xsi:type="sf:Case"', b'xsi:type="sf:Account"')
    with pytest.raises(WebhookPayloadError, match="Account"):
        backend().parse_webhook(request(body))


def test_the_ack_is_the_documented_notifications_response() -> None:
    assert (FIXTURES / "ack.xml").read_bytes() == ACK_ENVELOPE
    root = fromstring(ACK_ENVELOPE)
    ack = root.find(
        "{http://schemas.xmlsoap.org/soap/envelope/}Body/{http://soap.sforce.com/2005/09/outbound}notificationsResponse"
        "/{http://soap.sforce.com/2005/09/outbound}Ack"
    )
    assert ack is not None and ack.text == "true"


def test_the_reply_is_the_ack_even_when_no_notification_carried_a_case() -> None:
    """A message whose records were all deleted before delivery still needs its Ack, or Salesforce retries it for 24 h."""
    body = (FIXTURES / "outbound_case_comment.xml").read_bytes()
    integration = backend()
    events = integration.parse_webhook(request(body))[1:]  # the deleted record's notification yields no event
    reply = integration.webhook_reply(events)
    assert events == [] and reply is not None and reply.status == 200 and reply.body == ACK_ENVELOPE
    assert reply.content_type.startswith("text/xml")

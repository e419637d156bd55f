"""Outbound Messages: Salesforce's SOAP 1.1 notifications, parsed safely, and the acknowledgement it expects.

Shape (SOAP API Developer Guide, "Understanding the Outbound Messaging WSDL"): a `notifications`
element in `http://soap.sforce.com/2005/09/outbound` with `OrganizationId`, `ActionId`, `SessionId`
(nillable), `EnterpriseUrl`, `PartnerUrl` and up to 100 `Notification {Id, sObject}`; the sObject's
fields are in `urn:sobject.enterprise.soap.sforce.com` and its type in `xsi:type` (`sf:Case`,
`sf:CaseComment`). Salesforce treats anything but a `notificationsResponse` with `<Ack>true</Ack>`
as a failed delivery and retries (for up to 24 hours, out of order, possibly more than once).
A notification for a record deleted before delivery carries no data ("Considerations for outbound
messages"): there is nothing to act on, and the next incremental resync's getDeleted removes it.

Parsing uses defusedxml: no DTDs, no entity expansion, no external entities.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from data_manager.collectors.tickets.errors import WebhookPayloadError
from data_manager.collectors.tickets.integrations.salesforce._ids import to_18

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
MAX_BODY_BYTES = 4 * 1024 * 1024

ACK_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}">'
    "<soapenv:Body>"
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body>"
    "</soapenv:Envelope>"
).encode()
ACK_CONTENT_TYPE = "text/xml; charset=utf-8"


@dataclass(frozen=True)
class OutboundNotification:
    notification_id: str
    object_type: str  # Case, CaseComment, ...
    case_id: str | None  # the Case it is about (18 characters), None when the message carries no data


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str
    notifications: tuple[OutboundNotification, ...]


def _text(parent: Element, tag: str) -> str:
    child = parent.find(tag)
    return (child.text or "").strip() if child is not None and child.text else ""


def _notifications_element(body: bytes) -> Element:
    if len(body) > MAX_BODY_BYTES:
        raise WebhookPayloadError(f"outbound message larger than {MAX_BODY_BYTES} bytes")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise WebhookPayloadError(f"refused XML construct in outbound message: {type(exc).__name__}") from None
    except SafeET.ParseError as exc:
        raise WebhookPayloadError(f"body is not well-formed XML: {exc}") from None
    if not isinstance(root, Element) or root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise WebhookPayloadError("body is not a SOAP 1.1 envelope")
    found: Element | None = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND_NS}}}notifications")
    if found is None:
        raise WebhookPayloadError("SOAP body has no outbound-messaging 'notifications' element")
    return found


def _case_id(object_type: str, sobject: Element, notification_id: str) -> str | None:
    fields = {child.tag.split("}", 1)[-1]: (child.text or "").strip() for child in sobject}
    if not any(fields.values()):
        return None  # the record was deleted before the message went out: no data
    key = "ParentId" if object_type == "CaseComment" else "Id"
    value = fields.get(key, "")
    if not value:
        if object_type == "CaseComment":
            raise WebhookPayloadError(
                f"notification {notification_id}: a CaseComment message must include ParentId "
                f"(add it to the outbound message's fields)"
            )
        raise WebhookPayloadError(f"notification {notification_id}: the {object_type} has no Id")
    try:
        case_id = to_18(value)
    except ValueError as exc:
        raise WebhookPayloadError(f"notification {notification_id}: {exc}") from None
    return case_id


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """The message's organization, action and notifications; `WebhookPayloadError` when it is not one."""
    notifications_el = _notifications_element(body)
    organization_id = _text(notifications_el, f"{{{OUTBOUND_NS}}}OrganizationId")
    if not organization_id:
        raise WebhookPayloadError("outbound message has no OrganizationId")
    items = notifications_el.findall(f"{{{OUTBOUND_NS}}}Notification")
    if len(items) > MAX_NOTIFICATIONS:
        raise WebhookPayloadError(f"outbound message holds {len(items)} notifications; Salesforce sends at most 100")
    notifications = []
    for item in items:
        notification_id = _text(item, f"{{{OUTBOUND_NS}}}Id")
        sobject = item.find(f"{{{OUTBOUND_NS}}}sObject")
        if not notification_id or sobject is None:
            raise WebhookPayloadError("a Notification needs an Id and an sObject")
        declared = sobject.get(f"{{{XSI_NS}}}type") or ""
        object_type = declared.split(":", 1)[-1]
        if object_type not in ("Case", "CaseComment"):
            raise WebhookPayloadError(
                f"notification {notification_id}: outbound messages for {object_type or 'an untyped sObject'} "
                f"are not supported (Case and CaseComment are)"
            )
        notifications.append(
            OutboundNotification(notification_id, object_type, _case_id(object_type, sobject, notification_id))
        )
    return OutboundMessage(organization_id, _text(notifications_el, f"{{{OUTBOUND_NS}}}ActionId"), tuple(notifications))


def organization_id_of(body: bytes) -> str:
    return parse_outbound_message(body).organization_id

"""An integration may answer its webhooks in its own format (Salesforce's SOAP Ack), after the jobs are queued."""

from __future__ import annotations

import redis

from data_manager.collectors.tickets.integration import TicketEvent, WebhookReply
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from tests.pipeline_support.configs import SECRET
from tests.pipeline_support.signing import signed
from webhooks import create_app

ACK = b'<?xml version="1.0"?><Ack>true</Ack>'


class AckingMemory(InMemoryTickets):
    """Answers like a system whose sender wants a SOAP acknowledgement, and records what it was asked."""

    replied: list[list[TicketEvent]]

    def webhook_reply(self, events: list[TicketEvent]) -> WebhookReply | None:
        self.replied.append(list(events))
        return WebhookReply(200, ACK, "text/xml; charset=utf-8")


def acking_app(app_config, conn: redis.Redis):  # type: ignore[no-untyped-def]
    app = create_app(app_config)
    service = app.extensions["tickets"]
    acking = AckingMemory(service.integrations["memory"].backend, webhook_secret=SECRET)
    acking.replied = []
    service.integrations["memory"] = acking
    return app, acking


def test_the_systems_reply_is_sent_once_the_job_is_queued(app_config, redis_conn: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    app, acking = acking_app(app_config, redis_conn)
    body, headers = signed({"ticket_id": "T000001"})
    response = app.test_client().post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 200
    assert response.content_type == "text/xml; charset=utf-8"
    assert response.get_data() == ACK
    assert acking.replied == [[TicketEvent("T000001")]]
    assert len(redis_conn.lrange("rq:queue:tickets-live", 0, -1)) == 1


def test_ignored_events_get_the_systems_reply_too(app_config, redis_conn: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    app, acking = acking_app(app_config, redis_conn)
    body, headers = signed({"ticket_id": "T000001", "action": "commented"})
    response = app.test_client().post("/webhooks/memory", data=body, headers=headers)
    assert (response.status_code, response.get_data()) == (200, ACK)
    assert acking.replied == [[]]
    assert redis_conn.lrange("rq:queue:tickets-live", 0, -1) == []


def test_refused_requests_never_get_the_reply(app_config, redis_conn: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    app, acking = acking_app(app_config, redis_conn)
    body, _ = signed({"ticket_id": "T000001"})
    response = app.test_client().post("/webhooks/memory", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and response.is_json
    assert acking.replied == []

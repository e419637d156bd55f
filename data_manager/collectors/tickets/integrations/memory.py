"""The in-memory ticket system: an `InMemoryBackend` behind the full integration interface.

For tests and prototypes: it has webhooks (a small signed JSON payload), listing and fetching like
a real system, so the whole pipeline can run without any external server. The tickets live in a
store owned by whoever built the integration (`TicketManager`, hence the runtime): instances built
together that name the same `store` share it, and nothing is process-wide. With
`store_path: /some/tickets.json` the tickets live in that file instead, shared by every process
(web server, workers, scripts) and kept across restarts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from marshmallow import fields

from data_manager.collectors.tickets.errors import (
    PermanentError,
    TicketGone,
    TicketNotFound,
    TransientError,
    WebhookPayloadError,
)
from data_manager.collectors.tickets.integration import (
    EventAction,
    IntegrationConfigSchema,
    IntegrationSettings,
    SharedResources,
    TicketEvent,
    TicketIntegration,
    TicketRef,
    TicketSnapshot,
    WebhookRequest,
    json_object,
    verify_hmac_signature,
)
from data_manager.collectors.tickets.memory_backend import FileBackedBackend, InMemoryBackend
from data_manager.collectors.tickets.model import Comment, TicketData

SIGNATURE_HEADER = "X-Signature-256"
_ACTIONS = {"created": EventAction.UPSERT, "updated": EventAction.UPSERT, "deleted": EventAction.DELETE}


@dataclass(frozen=True, eq=False, kw_only=True)
class InMemorySettings(IntegrationSettings):
    store: str = "default"
    store_path: str | None = None


class InMemoryConfigSchema(IntegrationConfigSchema):
    settings_class = InMemorySettings

    store = fields.String(load_default="default")
    # A JSON file holding the tickets, shared across processes and restarts (instead of `store`).
    store_path = fields.String(load_default=None, allow_none=True)


def shared_store(settings: InMemorySettings, shared: SharedResources) -> InMemoryBackend:
    """The store the settings name, from `shared`: one per `store` name, one handle per resolved `store_path`."""
    if settings.store_path:
        path = Path(settings.store_path).expanduser()
        return shared.get(f"memory:file:{path.resolve()}", FileBackedBackend, lambda: FileBackedBackend(path))
    return shared.get(f"memory:store:{settings.store}", InMemoryBackend, InMemoryBackend)


class InMemoryTickets(TicketIntegration, system="memory"):
    """An integration over an `InMemoryBackend`; also a `TicketBackend` for the `Ticket` facade."""

    ticket_id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"T[0-9]{1,18}")
    config_schema = InMemoryConfigSchema

    def __init__(self, backend: InMemoryBackend | None = None, *, webhook_secret: str | None = None) -> None:
        self.backend = backend if backend is not None else InMemoryBackend()
        self.webhook_secret = webhook_secret

    @classmethod
    def from_settings(
        cls, settings: InMemorySettings, *, name: str, shared: SharedResources | None = None
    ) -> InMemoryTickets:
        """Over the store `settings` name, taken from `shared` (a store of its own when nothing is shared)."""
        integration = cls(shared_store(settings, shared if shared is not None else SharedResources()))
        integration.apply_settings(settings, name=name)
        return integration

    # -- TicketIntegration -----------------------------------------------------------------------
    def fetch(self, ticket_id: str) -> TicketSnapshot:
        fault = self.backend.record_fetch(ticket_id)
        if fault.error:
            error = TransientError if fault.error == "transient" else PermanentError
            message = fault.message or f"simulated {fault.error} failure fetching {ticket_id}"
            raise error(message, status=fault.status, retry_after=fault.retry_after)
        try:
            data, comments = self.backend.read(ticket_id)
            created_at, updated_at = self.backend.times(ticket_id)
        except TicketNotFound:
            raise TicketGone(ticket_id, "the in-memory backend") from None
        if fault.delay_seconds:
            time.sleep(fault.delay_seconds)  # a slow upstream: the data was read before the stall
        return TicketSnapshot(
            ticket_id=ticket_id,
            data=data,
            comments=tuple(comments),
            url=f"memory://tickets/{ticket_id}",
            created_at=created_at,
            updated_at=updated_at,
        )

    def iter_changed(self, since: datetime | None) -> Iterator[TicketRef]:
        for ticket_id, updated_at in self.backend.ids_changed_since(since):
            yield TicketRef(ticket_id, updated_at)

    def verify_credentials(self) -> None:
        """In-process tickets need no credentials."""

    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        verify_hmac_signature(request.headers.get(SIGNATURE_HEADER), request.body, secret, header_name=SIGNATURE_HEADER)

    def parse_webhook(self, request: WebhookRequest) -> list[TicketEvent]:
        """`{"ticket_id": "T000001", "action": "created|updated|deleted", "delivery_id": "..."}`."""
        payload = json_object(request.body)
        ticket_id = payload.get("ticket_id")
        if not isinstance(ticket_id, str) or not ticket_id.strip():
            raise WebhookPayloadError("'ticket_id' must be a non-empty string")
        action = payload.get("action", "updated")
        if not isinstance(action, str) or action not in _ACTIONS:
            return []  # an event kind we do not act on: acknowledged, ignored
        delivery = payload.get("delivery_id")
        return [TicketEvent(ticket_id.strip(), _ACTIONS[action], str(delivery) if delivery is not None else None)]

    # -- TicketBackend ---------------------------------------------------------------------------
    def create(self, data: TicketData) -> str:
        return self.backend.create(data)

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        return self.backend.read(ticket_id)

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        self.backend.update(ticket_id, fields)

    def add_comment(self, ticket_id: str, comment: Comment) -> None:
        self.backend.add_comment(ticket_id, comment)

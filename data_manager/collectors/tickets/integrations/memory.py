"""The in-memory ticket system: an `InMemoryBackend` behind the full integration interface.

For tests and prototypes: it has webhooks (a small signed JSON payload), listing and fetching like
a real system, so the whole pipeline can run without any external server. Backends are looked up
by name within the process, so the config names which one (`store: default`); with
`store_path: /some/tickets.json` the tickets live in that file instead, shared by every process
(web server, workers, scripts) and kept across restarts.
"""

from __future__ import annotations

import re
import threading
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

_stores: dict[str, InMemoryBackend] = {}  # by name, and file-backed ones by "file:<path>"
_stores_lock = threading.Lock()


def named_store(name: str) -> InMemoryBackend:
    """The process-wide backend called `name`, created on first use."""
    with _stores_lock:
        return _stores.setdefault(name, InMemoryBackend())


def file_store(path: str) -> FileBackedBackend:
    """The process-wide handle on the file-backed store at `path` (one per resolved path)."""
    key = f"file:{Path(path).expanduser().resolve()}"
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = FileBackedBackend(Path(path).expanduser())
        assert isinstance(store, FileBackedBackend)
        return store


def reset_stores() -> None:
    with _stores_lock:
        _stores.clear()


@dataclass(frozen=True, eq=False, kw_only=True)
class InMemorySettings(IntegrationSettings):
    store: str = "default"
    store_path: str | None = None


class InMemoryConfigSchema(IntegrationConfigSchema):
    settings_class = InMemorySettings

    store = fields.String(load_default="default")
    # A JSON file holding the tickets, shared across processes and restarts (instead of `store`).
    store_path = fields.String(load_default=None, allow_none=True)


class InMemoryTickets(TicketIntegration, system="memory"):
    """An integration over an `InMemoryBackend`; also a `TicketBackend` for the `Ticket` facade."""

    ticket_id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"T[0-9]{1,18}")
    config_schema = InMemoryConfigSchema

    def __init__(self, backend: InMemoryBackend | None = None, *, webhook_secret: str | None = None) -> None:
        self.backend = backend if backend is not None else InMemoryBackend()
        self.webhook_secret = webhook_secret

    @classmethod
    def from_settings(cls, settings: InMemorySettings, *, name: str) -> InMemoryTickets:
        backend = file_store(settings.store_path) if settings.store_path else named_store(settings.store)
        integration = cls(backend)
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

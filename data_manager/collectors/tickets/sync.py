"""Sync one ticket: the single fetch → normalise → upsert path shared by webhooks jobs and resync."""

from __future__ import annotations

import logging
from enum import Enum

from data_manager.collectors.persistence import PersistenceService, UpsertOutcome
from data_manager.collectors.tickets.errors import TicketGone
from data_manager.collectors.tickets.integration import TicketIntegration
from data_manager.collectors.tickets.normalise import normalise

log = logging.getLogger(__name__)


class SyncOutcome(str, Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    STALE = "stale"  # a newer copy was already stored
    DELETED = "deleted"  # gone upstream; our copy removed
    ABSENT = "absent"  # gone upstream and we had no copy


_FROM_UPSERT = {
    UpsertOutcome.WRITTEN: SyncOutcome.WRITTEN,
    UpsertOutcome.UNCHANGED: SyncOutcome.UNCHANGED,
    UpsertOutcome.STALE: SyncOutcome.STALE,
}


def sync_ticket(integration: TicketIntegration, persistence: PersistenceService, ticket_id: str) -> SyncOutcome:
    """Store the ticket's current upstream state, or remove our copy if it is gone upstream.

    Integration errors (`TransientError`, `PermanentError`) propagate: the caller decides on retries.
    """
    try:
        snapshot = integration.fetch(ticket_id)
    except TicketGone:
        return delete_ticket(integration, persistence, ticket_id)
    resource = normalise(integration.system, snapshot)
    return _FROM_UPSERT[persistence.upsert(resource, updated_at=snapshot.updated_at)]


def delete_ticket(integration: TicketIntegration, persistence: PersistenceService, ticket_id: str) -> SyncOutcome:
    """Remove our copy of a ticket the system says is gone."""
    removed = persistence.delete(integration.system, ticket_id)
    return SyncOutcome.DELETED if removed else SyncOutcome.ABSENT

"""Sync one ticket: the single fetch → normalise → upsert path shared by webhooks jobs and resync."""

from __future__ import annotations

import logging
from datetime import datetime
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
    OUT_OF_SCOPE = "out_of_scope"  # exists upstream but outside what the listing covers; our copy removed


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
    resource = normalise(integration.name, snapshot)
    return _FROM_UPSERT[persistence.upsert(resource, updated_at=snapshot.updated_at)]


def delete_ticket(integration: TicketIntegration, persistence: PersistenceService, ticket_id: str) -> SyncOutcome:
    """Remove our copy of a ticket the system says is gone."""
    removed = persistence.delete(integration.name, ticket_id)
    return SyncOutcome.DELETED if removed else SyncOutcome.ABSENT


def reconcile_unlisted(
    integration: TicketIntegration, persistence: PersistenceService, ticket_id: str, *, unchanged_since: datetime
) -> SyncOutcome:
    """Settle a ticket we store but a full listing did not return.

    Gone upstream: delete. Still there, unchanged since before `unchanged_since` (the listing's start
    minus a grace period for search indexes that lag), and the integration says it is outside the
    configured scope (moved to another project, or brought in by a webhook the scope does not cover):
    our copy goes. Otherwise keep it fresh: a short or lagging listing must never cost a live ticket.
    """
    try:
        snapshot = integration.fetch(ticket_id)
    except TicketGone:
        return delete_ticket(integration, persistence, ticket_id)
    long_unchanged = snapshot.updated_at is not None and snapshot.updated_at < unchanged_since
    if long_unchanged and integration.in_scope(ticket_id) is False:
        persistence.delete(integration.name, ticket_id)
        log.info(
            "%s %s exists upstream but is outside the listing's scope; removed our copy", integration.name, ticket_id
        )
        return SyncOutcome.OUT_OF_SCOPE
    resource = normalise(integration.name, snapshot)
    return _FROM_UPSERT[persistence.upsert(resource, updated_at=snapshot.updated_at)]

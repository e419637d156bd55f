"""Sync one ticket: the single fetch → normalise → upsert path shared by webhooks jobs and resync.

A copy is only ever removed after `prove_credentials` has shown that the system accepts our
credentials: a system that serves a refused key as the anonymous user says "not found" for every
ticket, and believing it would empty the store. A removed copy goes to the trash, with its reason
in the catalog's removal log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from enum import Enum

from data_manager.collectors.persistence import RemovalReason, UpsertOutcome
from data_manager.collectors.store import TicketStore
from data_manager.collectors.tickets.credentials import prove_credentials
from data_manager.collectors.tickets.errors import TicketGone
from data_manager.collectors.tickets.group_commit import GroupCommitter
from data_manager.collectors.tickets.integration import TicketIntegration, TicketSnapshot
from data_manager.collectors.tickets.normalise import normalise
from data_manager.collectors.tickets.ticket_resource import TicketResource

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


def outcome_of_upsert(outcome: UpsertOutcome) -> SyncOutcome:
    """What a store's upsert outcome means for the sync (a group commit's outcomes, one per ticket)."""
    return _FROM_UPSERT[outcome]


def sync_ticket(
    integration: TicketIntegration,
    persistence: TicketStore,
    ticket_id: str,
    *,
    removal_reason: RemovalReason = RemovalReason.DELETED_UPSTREAM,
) -> SyncOutcome:
    """Store the ticket's current upstream state, or remove our copy if it is gone upstream.

    Integration errors (`TransientError`, `PermanentError`, `CredentialsRefused` from the proof)
    propagate: the caller decides on retries. `removal_reason` is what the removal log says if the
    copy goes (a job started by a delete webhook says so).
    """
    try:
        snapshot = integration.fetch(ticket_id)
    except TicketGone:
        return delete_ticket(integration, persistence, ticket_id, reason=removal_reason)
    return store_snapshot(integration, persistence, snapshot)


def resource_of(integration: TicketIntegration, snapshot: TicketSnapshot) -> TicketResource:
    """The ticket as stored: normalised, under the name its integration gives it."""
    return normalise(integration.name, snapshot, display_name=integration.display_name(snapshot))


def store_snapshot(integration: TicketIntegration, persistence: TicketStore, snapshot: TicketSnapshot) -> SyncOutcome:
    """Normalise and upsert a complete ticket, fetched or brought by a listing; an older copy never wins."""
    resource = resource_of(integration, snapshot)
    return _FROM_UPSERT[persistence.upsert(resource, updated_at=snapshot.updated_at)]


Settled = Callable[[SyncOutcome | None, Exception | None], None]  # (outcome, None) or (None, error)


def submit_ticket(
    integration: TicketIntegration,
    persistence: TicketStore,
    committer: GroupCommitter,
    ticket_id: str,
    settled: Settled,
) -> SyncOutcome | None:
    """`sync_ticket` for a resync's group commit: fetch now and store with the committer's next batch.

    Returns None when the ticket went to the committer (`settled` gets its outcome once its batch is
    durable), or the outcome of a removal, which happens here and now.
    """
    try:
        snapshot = integration.fetch(ticket_id)
    except TicketGone:
        return delete_ticket(integration, persistence, ticket_id)
    submit_snapshot(integration, committer, snapshot, settled)
    return None


def submit_snapshot(
    integration: TicketIntegration, committer: GroupCommitter, snapshot: TicketSnapshot, settled: Settled
) -> None:
    """Normalise a complete ticket and hand it to the committer; `settled` gets the outcome of its batch."""
    resource = resource_of(integration, snapshot)

    def done(outcome: UpsertOutcome | None, error: Exception | None) -> None:
        settled(_FROM_UPSERT[outcome] if outcome is not None else None, error)

    committer.submit(resource, snapshot.updated_at, done)


def delete_ticket(
    integration: TicketIntegration,
    persistence: TicketStore,
    ticket_id: str,
    *,
    reason: RemovalReason = RemovalReason.DELETED_UPSTREAM,
) -> SyncOutcome:
    """Remove our copy of a ticket the system says is gone, once the system has accepted our credentials."""
    if not persistence.has_copy(integration.name, ticket_id):
        return SyncOutcome.ABSENT  # nothing to lose, nothing to prove
    prove_credentials(integration)
    removed = persistence.delete(integration.name, ticket_id, reason=reason)
    if removed:
        log.info("%s %s removed (%s); the copy is in the trash", integration.name, ticket_id, reason)
    return SyncOutcome.DELETED if removed else SyncOutcome.ABSENT


def reconcile_unlisted(
    integration: TicketIntegration, persistence: TicketStore, ticket_id: str, *, unchanged_since: datetime
) -> SyncOutcome:
    """Settle a ticket we store but a full listing did not return.

    Gone upstream: delete. Still there, unchanged since before `unchanged_since` (the listing's start
    minus a grace period for search indexes that lag), and the integration says it is outside the
    configured scope (moved to another project, or brought in by a webhook the scope does not cover):
    our copy goes. Otherwise keep it fresh: a short or lagging listing must never cost a live ticket.
    Either removal waits for the credential proof.
    """
    try:
        snapshot = integration.fetch(ticket_id)
    except TicketGone:
        return delete_ticket(integration, persistence, ticket_id)
    long_unchanged = snapshot.updated_at is not None and snapshot.updated_at < unchanged_since
    if long_unchanged and integration.in_scope(ticket_id) is False:
        prove_credentials(integration)  # an anonymous search finds nothing in scope
        persistence.delete(integration.name, ticket_id, reason=RemovalReason.OUT_OF_SCOPE)
        log.info(
            "%s %s exists upstream but is outside the listing's scope; removed our copy", integration.name, ticket_id
        )
        return SyncOutcome.OUT_OF_SCOPE
    resource = resource_of(integration, snapshot)
    return _FROM_UPSERT[persistence.upsert(resource, updated_at=snapshot.updated_at)]

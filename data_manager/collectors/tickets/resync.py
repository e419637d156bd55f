"""Resync: list what changed upstream (or everything), fetch it with bounded concurrency, upsert.

A full resync also removes what no longer exists upstream, or no longer falls inside the listing's
scope; every such candidate is fetched first, and one changed within `UNLISTED_GRACE` of the listing
is kept (search indexes can lag, and deleting a live ticket is the worse error).
The per-system cursor is the newest upstream update time seen, so our clock never matters, and it
only advances when nothing failed, so a failed ticket is retried by the next incremental run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integration import TicketIntegration, TicketRef
from data_manager.collectors.tickets.sync import SyncOutcome, reconcile_unlisted, sync_ticket

log = logging.getLogger(__name__)

Progress = Callable[[str, SyncOutcome | None], None]  # (ticket id, outcome or None on failure)

# How long a stored ticket that a full listing did not return must have been unchanged before it is
# taken to be out of scope (Jira Cloud's search is eventually consistent; clocks may differ a little).
UNLISTED_GRACE = timedelta(hours=1)


@dataclass
class ResyncPlan:
    system: str
    refs: list[TicketRef]
    full: bool
    since_used: datetime | None
    previous_cursor: datetime | None
    new_cursor: datetime | None
    to_delete: set[str] = field(default_factory=set)  # stored here, not listed upstream (full only)
    listed_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # when the listing started


@dataclass
class ResyncSummary:
    system: str
    mode: str = "incremental"
    since: str = ""
    fetched: int = 0
    written: int = 0
    unchanged: int = 0
    stale: int = 0
    deleted: int = 0
    out_of_scope: int = 0  # stored copies removed: the ticket exists but is outside the configured scope
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    error: str = ""  # the whole system failed (e.g. listing failed)
    duration_seconds: float = 0.0
    cursor: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def count(self, outcome: SyncOutcome) -> None:
        if outcome is SyncOutcome.WRITTEN:
            self.written += 1
        elif outcome is SyncOutcome.UNCHANGED:
            self.unchanged += 1
        elif outcome is SyncOutcome.STALE:
            self.stale += 1
        elif outcome is SyncOutcome.DELETED:
            self.deleted += 1
        elif outcome is SyncOutcome.OUT_OF_SCOPE:
            self.out_of_scope += 1


def _dedupe(refs: Iterable[TicketRef]) -> list[TicketRef]:
    """Listings that page by offset can repeat a ticket that changed mid-listing; keep its newest ref."""
    newest: dict[str, TicketRef] = {}
    for ref in refs:
        seen = newest.get(ref.ticket_id)
        if seen is None or (ref.updated_at and (seen.updated_at is None or ref.updated_at > seen.updated_at)):
            newest[ref.ticket_id] = ref
    return list(newest.values())


def plan_resync(
    integration: TicketIntegration,
    persistence: PersistenceService,
    *,
    since: datetime | None = None,
    full: bool = False,
    use_cursor: bool = True,
) -> ResyncPlan:
    """What to fetch (and, for a full resync, what may have to go)."""
    system = integration.name
    listed_at = datetime.now(UTC)
    previous = persistence.get_cursor(system)
    if full:
        since_used = None
    elif since is not None:
        since_used = since if since.tzinfo else since.replace(tzinfo=UTC)
    elif use_cursor and previous is not None:
        since_used = previous - timedelta(seconds=integration.resync_overlap_seconds)
    else:
        since_used = None
    refs = _dedupe(integration.iter_changed(since_used))
    times = [ref.updated_at for ref in refs if ref.updated_at is not None]
    new_cursor = max([*times, *([previous] if previous else [])], default=None)
    to_delete = persistence.ticket_ids(system) - {ref.ticket_id for ref in refs} if full else set()
    return ResyncPlan(system, refs, full, since_used, previous, new_cursor, to_delete, listed_at)


def run_resync(
    integration: TicketIntegration,
    persistence: PersistenceService,
    plan: ResyncPlan,
    *,
    concurrency: int | None = None,
    progress: Progress | None = None,
) -> ResyncSummary:
    """Fetch and store every planned ticket with at most `concurrency` requests in flight."""
    started = time.monotonic()
    summary = ResyncSummary(
        system=plan.system,
        mode="full" if plan.full else ("incremental" if plan.since_used else "all"),
        since=plan.since_used.isoformat() if plan.since_used else "",
    )
    lock = threading.Lock()
    unchanged_since = plan.listed_at - UNLISTED_GRACE
    ticket_ids = [ref.ticket_id for ref in plan.refs] + sorted(plan.to_delete)

    def one(ticket_id: str) -> None:
        try:
            if ticket_id in plan.to_delete:
                outcome = reconcile_unlisted(integration, persistence, ticket_id, unchanged_since=unchanged_since)
            else:
                outcome = sync_ticket(integration, persistence, ticket_id)
        except Exception as exc:  # one ticket's failure never stops the others; it is reported
            log.warning("resync %s %s failed: %s", plan.system, ticket_id, exc)
            with lock:
                summary.failed += 1
                summary.failures.append({"ticket_id": ticket_id, "error": f"{type(exc).__name__}: {exc}"})
            if progress:
                progress(ticket_id, None)
            return
        with lock:
            summary.fetched += 1
            summary.count(outcome)
        if progress:
            progress(ticket_id, outcome)

    workers = max(1, concurrency or integration.resync_concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"resync-{plan.system}") as pool:
        in_flight: set[Future[None]] = set()
        for ticket_id in ticket_ids:  # bounded submission: memory stays flat for 100k tickets
            if len(in_flight) >= workers * 4:
                _, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            in_flight.add(pool.submit(one, ticket_id))
        wait(in_flight)

    if summary.failed == 0 and plan.new_cursor is not None:
        persistence.set_cursor(plan.system, plan.new_cursor)
    cursor = persistence.get_cursor(plan.system)
    summary.cursor = cursor.isoformat() if cursor else ""
    summary.duration_seconds = round(time.monotonic() - started, 3)
    return summary


def resync_system(
    integration: TicketIntegration,
    persistence: PersistenceService,
    *,
    since: datetime | None = None,
    full: bool = False,
    use_cursor: bool = True,
    concurrency: int | None = None,
    progress_factory: Callable[[ResyncPlan], Progress | None] | None = None,
) -> ResyncSummary:
    """Plan and run a resync of one system; a failed listing is reported in the summary, not raised.

    `progress_factory` sees the plan (so a progress bar knows its total) and returns the per-ticket callback.
    """
    started = time.monotonic()
    try:
        plan = plan_resync(integration, persistence, since=since, full=full, use_cursor=use_cursor)
    except Exception as exc:
        log.error("resync %s: listing failed: %s", integration.name, exc)
        failed = ResyncSummary(
            system=integration.name,
            mode="full" if full else "incremental",
            error=f"listing failed: {type(exc).__name__}: {exc}",
            duration_seconds=round(time.monotonic() - started, 3),
        )
        persistence.record_resync(integration.name, failed.as_dict())
        return failed
    progress = progress_factory(plan) if progress_factory else None
    summary = run_resync(integration, persistence, plan, concurrency=concurrency, progress=progress)
    persistence.record_resync(integration.name, summary.as_dict())
    return summary

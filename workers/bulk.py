"""Resync by handing every ticket to the workers (bulk queue) instead of fetching inline.

Used by `tickets resync --enqueue` and the periodic resync. Listing happens here; fetching happens
in the workers, with their retries and the failed registry. Deletion candidates of a full resync
(stored, but not listed) are settled here, inline, by the resync engine's own rule: fetched first,
removed when gone or long unchanged outside the listing's scope; they are few, and a sync job
could not tell them from an ordinary ticket. The cursor
advances once every listed ticket has a durable job, because from then on a failure is visible
(and requeueable) in `tickets failed list`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from data_manager.collectors.tickets.resync import ResyncPlan, plan_resync, run_resync
from service.coalesce import Submission
from service.logs import log_event
from service.runtime import Runtime

log = logging.getLogger("tickets.resync")


@dataclass
class EnqueueSummary:
    system: str
    mode: str = "incremental"
    since: str = ""
    listed: int = 0
    deletion_candidates: int = 0
    deleted: int = 0  # candidates gone upstream
    out_of_scope: int = 0  # candidates that exist but are outside the listing's scope
    enqueued: int = 0
    coalesced: int = 0
    failed: int = 0  # tickets that could not be queued, or candidates that could not be settled
    error: str = ""  # the listing failed
    cursor: str = ""
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "queued_to": "bulk"}


def enqueue_resync(
    runtime: Runtime,
    *,
    systems: Iterable[str] | None = None,
    since: datetime | None = None,
    full: bool = False,
) -> dict[str, EnqueueSummary]:
    persistence = runtime.persistence
    coalescer = runtime.coalescer
    summaries: dict[str, EnqueueSummary] = {}
    for system in systems or runtime.manager.systems:
        started = time.monotonic()
        summary = summaries[system] = EnqueueSummary(system, mode="full" if full else "incremental")
        try:
            plan = plan_resync(runtime.integration(system), persistence, since=since, full=full)
        except Exception as exc:
            summary.error = f"listing failed: {type(exc).__name__}: {exc}"
            log_event(log, "resync_listing_failed", logging.ERROR, system=system, error=summary.error)
            persistence.record_resync(system, summary.as_dict())
            continue
        summary.since = plan.since_used.isoformat() if plan.since_used else ""
        summary.listed = len(plan.refs)
        summary.deletion_candidates = len(plan.to_delete)
        for ref in plan.refs:
            result = coalescer.submit(system, ref.ticket_id, queue=runtime.names.bulk_queue)
            if result.outcome is Submission.ENQUEUED:
                summary.enqueued += 1
            else:
                summary.coalesced += 1
        if plan.to_delete:
            candidates_only = ResyncPlan(
                system, [], True, plan.since_used, plan.previous_cursor, None, plan.to_delete, plan.listed_at
            )
            settled = run_resync(runtime.integration(system), persistence, candidates_only)
            summary.deleted, summary.out_of_scope = settled.deleted, settled.out_of_scope
            summary.failed += settled.failed
        if plan.new_cursor is not None:
            persistence.set_cursor(system, plan.new_cursor)
        cursor = persistence.get_cursor(system)
        summary.cursor = cursor.isoformat() if cursor else ""
        summary.duration_seconds = round(time.monotonic() - started, 3)
        persistence.record_resync(system, summary.as_dict())
        log_event(
            log,
            "resync_enqueued",
            system=system,
            mode=summary.mode,
            listed=summary.listed,
            enqueued=summary.enqueued,
            coalesced=summary.coalesced,
            deletion_candidates=summary.deletion_candidates,
            deleted=summary.deleted,
            out_of_scope=summary.out_of_scope,
        )
    return summaries

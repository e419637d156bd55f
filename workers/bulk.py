"""Resync by handing every listed ticket to the workers (bulk queue) instead of fetching inline.

Used by `tickets resync --enqueue` and the periodic resync. It is the resync engine
(`data_manager.collectors.tickets.resync`) with a different dispatcher: the plan, the credential
proof, the mass-deletion guard, the inline settling of deletion candidates, the summary and the
cursor rules are the engine's. The cursor advances once every listed ticket has a durable job,
because from then on a failure is visible (and requeueable) in `tickets failed list`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from data_manager.collectors.store import TicketStore
from data_manager.collectors.tickets.integration import TicketIntegration, TicketRef
from data_manager.collectors.tickets.resync import (
    DeleteGuard,
    Progress,
    ResyncPlan,
    ResyncSummary,
    resync_system,
)
from service.coalesce import Coalescer, Submission
from service.logs import log_event
from service.runtime import Runtime

log = logging.getLogger("tickets.resync")

EnqueueSummary = ResyncSummary  # one summary type for both dispatchers (the old name, kept for callers)


@dataclass
class BulkDispatcher:
    """Queues one sync job per listed ticket on the bulk queue (coalesced with any job already waiting)."""

    coalescer: Coalescer
    queue: str
    kind: str = "bulk"

    def dispatch(
        self,
        integration: TicketIntegration,
        persistence: TicketStore,
        plan: ResyncPlan,
        refs: Iterable[TicketRef],
        summary: ResyncSummary,
        progress: Progress | None,
    ) -> None:
        for ref in refs:  # as the listing streams: the workers start on the first page
            result = self.coalescer.submit(plan.system, ref.ticket_id, queue=self.queue)
            if result.outcome is Submission.ENQUEUED:
                summary.enqueued += 1
            else:
                summary.coalesced += 1


def enqueue_resync(
    runtime: Runtime,
    *,
    systems: Iterable[str] | None = None,
    since: datetime | None = None,
    full: bool = False,
    allow_mass_delete: bool = False,
) -> dict[str, ResyncSummary]:
    dispatcher = BulkDispatcher(runtime.coalescer, runtime.names.bulk_queue)
    guard = DeleteGuard.from_config(runtime.config.resync, allow_mass_delete=allow_mass_delete)
    summaries: dict[str, ResyncSummary] = {}
    for system in systems or runtime.manager.systems:
        summary = summaries[system] = resync_system(
            runtime.integration(system),
            runtime.persistence,
            since=since,
            full=full,
            dispatcher=dispatcher,
            guard=guard,
        )
        log_event(
            log,
            "resync_enqueued",
            logging.ERROR if summary.error else logging.INFO,
            system=system,
            mode=summary.mode,
            listed=summary.listed,
            enqueued=summary.enqueued,
            coalesced=summary.coalesced,
            deletion_candidates=summary.deletion_candidates,
            deleted=summary.deleted,
            out_of_scope=summary.out_of_scope,
            error=summary.error or None,
        )
    return summaries

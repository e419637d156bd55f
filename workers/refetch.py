"""Tickets whose files the start-up check found gone are fetched again, as a webhook's event would have them.

Nothing accepted is ever lost: files deleted by hand, an incomplete backup restored or a disk problem leave
catalog rows without files, which `housekeeping.reconcile` reports in `files_lost`. Each is submitted
through the coalescer, so the ordinary job decides: stored again if it exists upstream, removed through the
proven-credentials path if it is gone. They go on the bulk queue: a partial restore can lose thousands, and
webhooks must not wait behind them (a webhook for one of them promotes its job to the live queue). The worker
drops their rows (`housekeeping.drop_lost`) only once this returns: a kill before leaves them to the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable

from redis.exceptions import RedisError

from data_manager.collectors.housekeeping import LostTicket
from service.coalesce import Coalescer
from service.logs import log_event

log = logging.getLogger("tickets.worker")


def refetch_lost(
    coalescer: Coalescer,
    configured: Collection[str],
    lost: Iterable[LostTicket],
    wait_for_redis: Callable[[], None],
) -> list[LostTicket]:
    """Submit a sync for each lost ticket of a `configured` system; returns those submitted.

    A ticket of a system no longer configured is logged and left: no job could fetch it. Redis being away
    only delays the submissions (`wait_for_redis`): the rows are dropped next, so a skipped ticket would stay lost.
    """
    submitted = []
    for ticket in lost:
        if ticket.system not in configured:
            log_event(
                log,
                "lost_files_not_refetched",
                logging.ERROR,
                system=ticket.system,
                ticket=ticket.ticket_id,
                reason="system not configured",
            )
            continue
        while True:
            try:
                result = coalescer.submit(ticket.system, ticket.ticket_id, queue=coalescer.names.bulk_queue)
                break
            except RedisError as exc:
                log_event(log, "lost_files_refetch_waiting", logging.WARNING, error=type(exc).__name__)
                wait_for_redis()
        log_event(
            log,
            "lost_files_refetch",
            logging.WARNING,
            system=ticket.system,
            ticket=ticket.ticket_id,
            job=result.job_id,
            outcome=result.outcome.value,
        )
        submitted.append(ticket)
    return submitted

"""The optional periodic resyncs, so missed webhooks heal, and the worker's periodic housekeeping.

- `resync.interval_minutes`: an incremental resync that often.
- `resync.full_interval_hours`: a full resync that often (it also corrects what no webhook and no
  update time reports, such as an edited Redmine note), held by the same lock and by the
  mass-deletion guard: one that would remove too much removes nothing and fails loudly.
- Housekeeping (at most once an hour across all workers): trashed copies older than
  `persistence.trash_days` are purged.

Each period boundary gets exactly one scheduled job: whichever worker first claims the slot key
(SET NX) schedules it, and every worker re-checks on each maintenance tick, so the chain never
depends on one job re-scheduling the next. The job itself takes a Redis lock, so a resync that
outlasts its period never overlaps the next one. It lists what changed and queues the tickets on
the bulk queue (see `bulk`); the workers do the fetching.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue

from service.logs import log_event
from service.runtime import Runtime
from service.settings import Names
from workers.bulk import enqueue_resync
from workers.jobs import takes_runtime

log = logging.getLogger("tickets.periodic")
PERIODIC_FUNCTION = "workers.periodic.periodic_resync_job"
LOCK_TIMEOUT_SECONDS = 2 * 3600


def ensure_scheduled(
    connection: Redis, names: Names, interval_minutes: float, now: float | None = None, *, full: bool = False
) -> str | None:
    """Schedule the job for the next period boundary unless some worker already did; returns its id."""
    if interval_minutes <= 0:
        return None
    period = interval_minutes * 60
    slot = int((now if now is not None else time.time()) // period) + 1
    kind = "full-resync" if full else "resync"
    slot_key = names.periodic_slot(slot) if not full else f"{names.periodic_slot(slot)}:full"
    if not connection.set(slot_key, "1", nx=True, ex=int(period * 2) + 60):
        return None
    job_id = f"{names.safe_prefix}-periodic-{kind}-{slot}"
    Queue(names.bulk_queue, connection=connection).enqueue_at(
        datetime.fromtimestamp(slot * period, UTC),
        PERIODIC_FUNCTION,
        kwargs={"full": True} if full else {},
        job_id=job_id,
        job_timeout=LOCK_TIMEOUT_SECONDS,
        result_ttl=24 * 3600,
        description=(
            f"periodic full resync (every {interval_minutes / 60:g} h)"
            if full
            else f"periodic incremental resync (every {interval_minutes:g} min)"
        ),
    )
    return job_id


def ensure_all_scheduled(connection: Redis, names: Names, resync: dict[str, Any], now: float | None = None) -> None:
    """The incremental and the full periodic resync, as `resync.interval_minutes` / `full_interval_hours` say."""
    ensure_scheduled(connection, names, int(resync.get("interval_minutes", 0)), now)
    ensure_scheduled(connection, names, int(resync.get("full_interval_hours", 0)) * 60, now, full=True)


@takes_runtime
def periodic_resync_job(full: bool = False, runtime: Runtime | None = None) -> dict[str, Any]:
    runtime = runtime or Runtime.load()
    lock = runtime.redis.lock(runtime.names.lock("resync"), timeout=LOCK_TIMEOUT_SECONDS, blocking=False)
    if not lock.acquire(blocking=False):
        log_event(log, "periodic_resync_skipped", reason="another resync holds the lock", full=full)
        return {"skipped": True}
    try:
        summaries = enqueue_resync(runtime, full=full)
    finally:
        lock.release()
    result = {system: summary.as_dict() for system, summary in summaries.items()}
    refused = {system: s.error for system, s in summaries.items() if s.error}
    if refused:
        # Fail the job so it shows in `tickets failed list` as well as in `tickets status`.
        raise PeriodicResyncFailed("; ".join(f"{system}: {error}" for system, error in sorted(refused.items())))
    return result


class PeriodicResyncFailed(RuntimeError):
    """A periodic resync ended with a system failed (listing, credentials, or the mass-deletion guard)."""


HOUSEKEEPING_EVERY_SECONDS = 3600


def housekeeping(connection: Redis, names: Names, persistence: Any, trash_days: float) -> int | None:
    """Purge trashed copies older than `trash_days`, at most once per hour across every worker."""
    if not connection.set(f"{names.prefix}:housekeeping", "1", nx=True, ex=HOUSEKEEPING_EVERY_SECONDS):
        return None
    purged = int(persistence.purge_trash(timedelta(days=trash_days)))
    if purged:
        log_event(log, "trash_purged", count=purged, older_than_days=trash_days)
    return purged

"""The optional periodic incremental resync (`resync.interval_minutes`), so missed webhooks heal.

Each period boundary gets exactly one scheduled job: whichever worker first claims the slot key
(SET NX) schedules it, and every worker re-checks on each maintenance tick, so the chain never
depends on one job re-scheduling the next. The job itself takes a Redis lock, so a resync that
outlasts its period never overlaps the next one. It lists what changed and queues the tickets on
the bulk queue (see `bulk`); the workers do the fetching.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
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


def ensure_scheduled(connection: Redis, names: Names, interval_minutes: int, now: float | None = None) -> str | None:
    """Schedule the job for the next period boundary unless some worker already did; returns its id."""
    if interval_minutes <= 0:
        return None
    period = interval_minutes * 60
    slot = int((now if now is not None else time.time()) // period) + 1
    if not connection.set(names.periodic_slot(slot), "1", nx=True, ex=int(period * 2) + 60):
        return None
    job_id = f"{names.safe_prefix}-periodic-resync-{slot}"
    Queue(names.bulk_queue, connection=connection).enqueue_at(
        datetime.fromtimestamp(slot * period, UTC),
        PERIODIC_FUNCTION,
        job_id=job_id,
        job_timeout=LOCK_TIMEOUT_SECONDS,
        result_ttl=24 * 3600,
        description=f"periodic incremental resync (every {interval_minutes} min)",
    )
    return job_id


@takes_runtime
def periodic_resync_job(runtime: Runtime | None = None) -> dict[str, Any]:
    runtime = runtime or Runtime.load()
    lock = runtime.redis.lock(runtime.names.lock("resync"), timeout=LOCK_TIMEOUT_SECONDS, blocking=False)
    if not lock.acquire(blocking=False):
        log_event(log, "periodic_resync_skipped", reason="another resync holds the lock")
        return {"skipped": True}
    try:
        summaries = enqueue_resync(runtime)
    finally:
        lock.release()
    return {system: summary.as_dict() for system, summary in summaries.items()}

"""A job that does only the catalog part of a sync (one upsert through the runtime), for WAL and cost tests."""

from __future__ import annotations

import time

from data_manager.collectors.tickets import TicketResource
from service.runtime import Runtime
from workers.jobs import takes_runtime

WAL_SIZES_KEY = "test:wal-sizes"


@takes_runtime
def write_ticket(n: int, tickets: int, runtime: Runtime | None = None) -> float:
    """Upsert ticket `n % tickets` with new content; record the WAL's size after it; return the upsert's seconds."""
    runtime = runtime or Runtime.load()
    store = runtime.persistence
    store.fsync = False  # the files' fsyncs are not what is measured, and cost 4-20 ms each on a busy disk
    resource = TicketResource(ticket_id=str(n % tickets), content=f"written by job {n}\n" * 20, source_type="memory")
    started = time.perf_counter()
    store.upsert(resource)
    elapsed = time.perf_counter() - started
    runtime.redis.rpush(WAL_SIZES_KEY, store.catalog.wal_size())
    return elapsed

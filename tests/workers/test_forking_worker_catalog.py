"""5,000 jobs through real forking `tickets worker --fork`s on real Redis: the catalog's WAL stays bounded.

Each RQ work horse is a fresh process that leaves with `os._exit`; before the fix every horse was the
first to open the catalog, rebuilt the WAL index from the whole WAL and could never reset it, so the
WAL grew ~13 KiB per job without end.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from rq import Queue

from data_manager.collectors.catalog import WAL_LIMIT_BYTES
from data_manager.collectors.persistence import PersistenceService
from tests.pipeline_support.catalog_job import WAL_SIZES_KEY, write_ticket
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import start_worker

JOBS = 5000
TICKETS = 200
WORKERS = 4
BUDGET_SECONDS = 400  # about 60 s on an idle 2-core machine; far longer when many test runs share it


@pytest.mark.slow
@pytest.mark.timeout(BUDGET_SECONDS + 60)
def test_the_catalog_wal_stays_bounded_over_5000_forking_jobs(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url)
    conn = redis.Redis.from_url(redis_url)
    queue = Queue("tickets-live", connection=conn)
    for start in range(0, JOBS, 1000):
        queue.enqueue_many(
            [
                Queue.prepare_data(write_ticket, args=(n, TICKETS), result_ttl=0)
                for n in range(start, min(JOBS, start + 1000))
            ]
        )
    started = time.monotonic()
    # Several workers at once: quicker on a shared machine, and their horses write concurrently.
    workers = [
        start_worker(config, tmp_path, "--fork", "--burst", "--no-scheduler", "--queue", "live", name=f"worker-{n}")
        for n in range(WORKERS)
    ]
    try:
        for worker in workers:
            assert worker.popen.wait(timeout=max(1.0, started + BUDGET_SECONDS - time.monotonic())) == 0, worker.log()
    finally:
        for worker in workers:
            worker.stop()
    elapsed = time.monotonic() - started
    sizes = [int(size) for size in conn.lrange(WAL_SIZES_KEY, 0, -1)]
    assert len(sizes) == JOBS, f"{len(sizes)} of {JOBS} jobs ran in {elapsed:.0f}s"
    # Bounded: at most the checkpoint threshold plus what one job adds, at any point and at the end.
    assert max(sizes) <= WAL_LIMIT_BYTES + 64 * 1024, max(sizes)
    store = PersistenceService(tmp_path / "data")
    assert store.count("memory") == TICKETS
    assert store.get("memory", str(TICKETS - 1)).content.startswith(f"written by job {JOBS - 1}\n")

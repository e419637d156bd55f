"""The sync job, its retries, the failed registry, recovery and the periodic resync, run in-process.

A `SimpleWorker` runs the real job function in this process against a real Redis; the upstream is
the memory integration's file store with injected faults.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry

from data_manager.collectors.tickets.memory_backend import FileBackedBackend
from data_manager.collectors.tickets.model import TicketData
from data_manager.config import load_config
from service.runtime import Runtime
from tests.pipeline_support.configs import write_config
from workers import ops
from workers.jobs import job_class_for
from workers.periodic import ensure_scheduled, periodic_resync_job
from workers.recovery import host_identity, recover_abandoned


@pytest.fixture
def runtime(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    path = write_config(
        tmp_path, redis_url, workers={"retry_base_seconds": 0.1, "retry_max_seconds": 0.2, "max_attempts": 3}
    )
    monkeypatch.setenv("TICKETS_CONFIG", str(path))  # for job functions run without a worker (as plain `rq worker`)
    return Runtime(load_config(path))


@pytest.fixture
def upstream(tmp_path: Path) -> FileBackedBackend:
    return FileBackedBackend(tmp_path / "upstream.json")


def work(runtime: Runtime, *, timeout: float = 10) -> None:
    """Run queued jobs, and delayed retries as they come due, until nothing is left."""
    queues = [Queue(q, connection=runtime.redis) for q in runtime.names.queues]
    deadline = time.monotonic() + timeout
    while True:
        SimpleWorker(queues, connection=runtime.redis, job_class=job_class_for(runtime)).work(
            burst=True, with_scheduler=True
        )
        if not any(q.count or q.scheduled_job_registry.count for q in queues):
            return
        assert time.monotonic() < deadline, "jobs still pending"
        time.sleep(0.1)


def stored(runtime: Runtime, ticket_id: str) -> str | None:
    ticket = runtime.persistence.get("memory", ticket_id)
    return ticket.content if ticket else None


def test_job_stores_the_ticket_and_logs_one_line(
    runtime: Runtime, upstream: FileBackedBackend, caplog: pytest.LogCaptureFixture
) -> None:
    ticket_id = upstream.create(TicketData(title="Printer on fire"))
    job_id = runtime.coalescer.submit("memory", ticket_id).job_id
    with caplog.at_level(logging.INFO, logger="tickets.jobs"):
        work(runtime)
    assert "Title: Printer on fire" in (stored(runtime, ticket_id) or "")
    [line] = [r.getMessage() for r in caplog.records if r.name == "tickets.jobs"]
    assert line.startswith("job_done ")
    for part in ("system=memory", f"ticket={ticket_id}", f"job={job_id}", "outcome=written", "duration_ms="):
        assert part in line
    assert runtime.coalescer.state("memory", ticket_id) == {}


def test_transient_failures_are_retried_then_succeed(runtime: Runtime, upstream: FileBackedBackend) -> None:
    ticket_id = upstream.create(TicketData(title="flaky"))
    upstream.inject_fault(ticket_id, fail_next=2, error="transient", status=503)
    job_id = runtime.coalescer.submit("memory", ticket_id).job_id
    work(runtime)
    assert stored(runtime, ticket_id) is not None
    assert upstream.fetch_count(ticket_id) == 3
    assert Job.fetch(job_id, connection=runtime.redis).number_of_retries == 2
    counts = runtime.metrics.read()
    assert counts[("job", "memory", "retried")] == 2 and counts[("job", "memory", "written")] == 1


def test_permanent_failure_lands_in_failed_registry_then_requeue_succeeds(
    runtime: Runtime, upstream: FileBackedBackend
) -> None:
    ticket_id = upstream.create(TicketData(title="forbidden"))
    upstream.inject_fault(
        ticket_id, fail_next=1, error="permanent", status=403, message="GET /issues/1 answered 403: no access"
    )
    job_id = runtime.coalescer.submit("memory", ticket_id).job_id
    work(runtime)
    assert upstream.fetch_count(ticket_id) == 1  # no retry for a permanent error
    [failed] = ops.failed_jobs(runtime.redis, runtime.names)
    assert (failed.job_id, failed.system, failed.ticket_id, failed.attempts) == (job_id, "memory", ticket_id, 1)
    assert "403: no access" in failed.error and failed.failed_at is not None
    assert runtime.coalescer.state("memory", ticket_id) == {}  # new events are not swallowed by a failed job

    new_id = ops.requeue(runtime.redis, runtime.coalescer, failed)
    assert new_id != job_id
    work(runtime)
    assert stored(runtime, ticket_id) is not None
    assert ops.failed_jobs(runtime.redis, runtime.names) == []


def test_retries_exhausted_fail_with_the_reason(runtime: Runtime, upstream: FileBackedBackend) -> None:
    ticket_id = upstream.create(TicketData(title="down"))
    upstream.inject_fault(ticket_id, fail_next=10, error="transient", status=502)
    runtime.coalescer.submit("memory", ticket_id)
    work(runtime)
    [failed] = ops.failed_jobs(runtime.redis, runtime.names)
    assert failed.attempts == 3 and "gave up after 3 attempts" in failed.error
    assert "TransientError" in ops._exc_string(Job.fetch(failed.job_id, connection=runtime.redis))
    ops.purge(runtime.redis, failed)
    assert ops.failed_jobs(runtime.redis, runtime.names) == []
    assert not Job.exists(failed.job_id, connection=runtime.redis)


def test_ticket_gone_upstream_is_deleted(runtime: Runtime, upstream: FileBackedBackend) -> None:
    ticket_id = upstream.create(TicketData(title="short-lived"))
    runtime.coalescer.submit("memory", ticket_id)
    work(runtime)
    assert stored(runtime, ticket_id) is not None
    upstream.delete(ticket_id)
    runtime.coalescer.submit("memory", ticket_id)
    work(runtime)
    assert stored(runtime, ticket_id) is None


def _start_as(runtime: Runtime, job_id: str, worker_name: str) -> None:
    """Put a queued job into the state a worker leaves it in when it dies mid-job."""
    conn = runtime.redis
    job = Job.fetch(job_id, connection=conn)
    queue = Queue(job.origin, connection=conn)
    with conn.pipeline() as pipe:
        queue.remove(job, pipeline=pipe)
        job.prepare_for_execution(worker_name, pipe)
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=worker_name)
        pipe.execute()
    runtime.coalescer.begin(job.meta["system"], job.meta["ticket_id"], job_id)


def test_job_of_a_worker_whose_lease_expired_is_recovered(runtime: Runtime, upstream: FileBackedBackend) -> None:
    ticket_id = upstream.create(TicketData(title="orphaned"))
    job_id = runtime.coalescer.submit("memory", ticket_id).job_id
    _start_as(runtime, job_id, "ghost")
    runtime.redis.sadd(runtime.names.leased_workers, "ghost")  # a tickets worker, and its lease is gone
    assert recover_abandoned(runtime.redis, runtime.names, runtime.coalescer) == [job_id]
    assert StartedJobRegistry(runtime.names.live_queue, connection=runtime.redis).count == 0
    assert runtime.coalescer.state("memory", ticket_id)["state"] == "queued"
    work(runtime)
    assert stored(runtime, ticket_id) is not None


def test_job_of_a_worker_killed_between_registering_and_starting_it_is_recovered(
    runtime: Runtime, upstream: FileBackedBackend
) -> None:
    """RQ registers a job's execution, then marks the job started in a second transaction: a kill in
    between leaves a registered execution of a job still "queued" with no worker name on it."""
    ticket_id = upstream.create(TicketData(title="caught in between"))
    job_id = runtime.coalescer.submit("memory", ticket_id).job_id
    conn = runtime.redis
    job = Job.fetch(job_id, connection=conn)
    with conn.pipeline() as pipe:
        Queue(job.origin, connection=conn).remove(job, pipeline=pipe)
        Execution.create(job, ttl=600, pipeline=pipe, worker_name="killed-early")
        pipe.execute()
    assert Job.fetch(job_id, connection=conn).get_status() == "queued"
    conn.sadd(runtime.names.leased_workers, "killed-early")  # a tickets worker whose lease is gone
    assert recover_abandoned(conn, runtime.names, runtime.coalescer) == [job_id]
    assert StartedJobRegistry(runtime.names.live_queue, connection=conn).count == 0
    work(runtime)
    assert stored(runtime, ticket_id) is not None


def test_job_of_a_dead_process_on_this_host_is_recovered_before_its_lease_expires(
    runtime: Runtime, upstream: FileBackedBackend
) -> None:
    ticket_id = upstream.create(TicketData(title="orphaned"))
    job_id = runtime.coalescer.submit("memory", ticket_id).job_id
    _start_as(runtime, job_id, "crashed")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a pid that certainly is dead now
    conn = runtime.redis
    conn.sadd(runtime.names.leased_workers, "crashed")
    conn.set(runtime.names.worker_lease("crashed"), "1", ex=60)
    conn.set(runtime.names.worker_lease("crashed") + ":info", f'{{"host": "{host_identity()}", "pid": {pid}}}')
    assert recover_abandoned(conn, runtime.names, runtime.coalescer) == [job_id]


def test_jobs_of_live_workers_are_left_alone(runtime: Runtime, upstream: FileBackedBackend) -> None:
    conn = runtime.redis
    busy = runtime.coalescer.submit("memory", upstream.create(TicketData(title="busy"))).job_id
    _start_as(runtime, busy, "alive")
    conn.sadd(runtime.names.leased_workers, "alive")
    conn.set(runtime.names.worker_lease("alive"), "1", ex=60)
    conn.set(runtime.names.worker_lease("alive") + ":info", f'{{"host": "{host_identity()}", "pid": {os.getpid()}}}')
    plain = runtime.coalescer.submit("memory", upstream.create(TicketData(title="plain rq worker"))).job_id
    _start_as(runtime, plain, "plain-rq-worker")
    conn.hset("rq:worker:plain-rq-worker", "state", "busy")  # registered, no lease: RQ's registration decides
    assert recover_abandoned(conn, runtime.names, runtime.coalescer) == []
    conn.delete("rq:worker:plain-rq-worker")  # its registration expired
    assert recover_abandoned(conn, runtime.names, runtime.coalescer) == [plain]


def test_periodic_resync_is_scheduled_once_per_slot_and_never_overlaps(
    runtime: Runtime, upstream: FileBackedBackend
) -> None:
    conn, names = runtime.redis, runtime.names
    now = 1_700_000_000.0
    first = ensure_scheduled(conn, names, 5, now=now)
    assert first is not None
    assert ensure_scheduled(conn, names, 5, now=now + 10) is None  # another worker, same slot
    assert ensure_scheduled(conn, names, 0, now=now) is None  # turned off
    assert Queue(names.bulk_queue, connection=conn).scheduled_job_registry.get_job_ids() == [first]

    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(3)]
    lock = conn.lock(names.lock("resync"), timeout=30)
    assert lock.acquire(blocking=False)
    assert periodic_resync_job() == {"skipped": True}
    lock.release()
    result = periodic_resync_job()
    assert result["memory"]["listed"] == 3 and result["memory"]["enqueued"] == 3
    assert Queue(names.bulk_queue, connection=conn).count == 3
    work(runtime)
    assert all(stored(runtime, t) for t in ids)
    assert runtime.persistence.get_cursor("memory") is not None

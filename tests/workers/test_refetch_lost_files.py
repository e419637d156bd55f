"""A ticket whose files were lost (deleted by hand, a partial restore) is fetched again when a worker starts.

The worker's real start-up path (`run_worker`, in-process, burst, on the live queue only) must leave a sync job
on the bulk queue for each such ticket; draining it brings the files, the row and a WRITTEN feed entry back.
A row of a system no longer configured is logged and left, and the worker still starts. A start killed while
it submits (Redis away, the worker restarted meanwhile) must leave the next start able to submit them again.
"""

from __future__ import annotations

import logging
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue
from rq.job import Job

from data_manager.collectors.changes import ChangeKind
from data_manager.collectors.housekeeping import LostTicket
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.memory_backend import FileBackedBackend
from data_manager.collectors.tickets.model import TicketData
from data_manager.collectors.tickets.ticket_resource import TicketResource
from data_manager.config import load_config
from service.coalesce import Coalescer
from service.runtime import Runtime
from tests.pipeline_support.configs import write_config
from tests.workers.test_jobs_and_recovery import work
from workers.refetch import refetch_lost
from workers.worker import WorkerMode, run_worker


@pytest.fixture
def runtime(tmp_path: Path, redis_url: str) -> Runtime:
    return Runtime(load_config(write_config(tmp_path, redis_url)))


def store_of(runtime: Runtime) -> PersistenceService:
    store = runtime.persistence
    assert isinstance(store, PersistenceService)
    return store


def lose_files(store: PersistenceService, system: str, ticket_id: str) -> None:
    """What a hand delete or an incomplete backup leaves: the row, no files."""
    [entry] = [e for e in store.list_entries(system) if e.ticket_id == ticket_id]
    store.content_path(entry.hash).unlink()
    store.metadata_path(entry.hash).unlink()


def start_worker(runtime: Runtime) -> None:
    """The worker's start-up path; it runs only the live queue, so the re-fetch (bulk) stays queued."""
    run_worker(runtime, queues=[runtime.names.live_queue], burst=True, mode=WorkerMode.INLINE, with_scheduler=False)


def bulk_jobs(runtime: Runtime) -> list[tuple[str, str]]:
    queue = Queue(runtime.names.bulk_queue, connection=runtime.redis)
    jobs = [Job.fetch(job_id, connection=runtime.redis) for job_id in queue.job_ids]
    return [(job.kwargs["system"], job.kwargs["ticket_id"]) for job in jobs]


def test_a_ticket_whose_files_were_lost_is_fetched_again_at_start(runtime: Runtime, tmp_path: Path) -> None:
    upstream = FileBackedBackend(tmp_path / "upstream.json")
    ids = [upstream.create(TicketData(title=f"ticket {n}")) for n in range(3)]
    for ticket_id in ids:
        runtime.coalescer.submit("memory", ticket_id)
    work(runtime)
    store = store_of(runtime)
    lost = ids[1]
    lose_files(store, "memory", lost)
    seq = store.last_change_seq()

    start_worker(runtime)

    assert bulk_jobs(runtime) == [("memory", lost)]
    assert store.get("memory", lost) is None  # the row went with its files, until the job runs
    work(runtime)
    ticket = store.get("memory", lost)
    assert ticket is not None and "Title: ticket 1" in ticket.content
    [entry] = [e for e in store.list_entries("memory") if e.ticket_id == lost]
    assert store.content_path(entry.hash).exists() and store.metadata_path(entry.hash).exists()
    # The feed said the copy was gone, then that it is back: an indexer ends with the ticket.
    assert [(c.ticket_id, c.kind) for c in store.changes(after=seq)] == [
        (lost, ChangeKind.REMOVED),
        (lost, ChangeKind.WRITTEN),
    ]
    assert bulk_jobs(runtime) == []


def test_a_start_killed_before_submitting_leaves_the_next_start_to_fetch_it(runtime: Runtime, tmp_path: Path) -> None:
    upstream = FileBackedBackend(tmp_path / "upstream.json")
    lost = upstream.create(TicketData(title="lost"))
    runtime.coalescer.submit("memory", lost)
    work(runtime)
    store = store_of(runtime)
    lose_files(store, "memory", lost)
    seq = store.last_change_seq()

    pid = os.fork()
    if pid == 0:  # the worker's start-up path, killed as it submits (as when it waits for Redis and is restarted)
        try:
            Coalescer.submit = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)  # type: ignore[assignment,method-assign,misc,return-value]
            start_worker(runtime)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL  # killed at the submission
    assert bulk_jobs(runtime) == []

    start_worker(runtime)  # the next start, Redis back

    assert bulk_jobs(runtime) == [("memory", lost)]
    work(runtime)
    ticket = store.get("memory", lost)
    assert ticket is not None and "Title: lost" in ticket.content
    [entry] = [e for e in store.list_entries("memory") if e.ticket_id == lost]
    assert store.content_path(entry.hash).exists() and store.metadata_path(entry.hash).exists()
    assert [(c.ticket_id, c.kind) for c in store.changes(after=seq)] == [
        (lost, ChangeKind.REMOVED),
        (lost, ChangeKind.WRITTEN),
    ]


def test_a_lost_ticket_of_a_system_no_longer_configured_is_logged_and_left(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_of(runtime)
    when = datetime(2024, 5, 1, tzinfo=UTC)
    content = f"Title: old\nTicket: retired:R-1\nUpdated: {when.isoformat()}\n\nold\n"
    store.upsert(TicketResource(ticket_id="R-1", content=content, source_type="retired", metadata={"updated_at": when}))
    lose_files(store, "retired", "R-1")

    with caplog.at_level(logging.WARNING, logger="tickets.worker"):
        start_worker(runtime)  # must not raise

    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lost_files_not_refetched")]
    assert "system=retired" in line and "ticket=R-1" in line and "not configured" in line
    assert bulk_jobs(runtime) == []


def test_redis_away_delays_the_refetch_but_never_drops_it(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    coalescer = runtime.coalescer
    submit, calls, waits = coalescer.submit, [], []

    def flaky_submit(*args: object, **kwargs: object) -> object:
        calls.append(args)
        if len(calls) == 1:
            raise RedisConnectionError("Redis restarting")
        return submit(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(coalescer, "submit", flaky_submit)
    lost = [LostTicket("memory", "T1")]
    assert refetch_lost(coalescer, ["memory"], lost, lambda: waits.append(1)) == lost
    assert waits == [1] and bulk_jobs(runtime) == [("memory", "T1")]

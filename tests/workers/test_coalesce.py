"""Per-ticket coalescing against a real Redis: one waiting job per ticket, one re-run per running job."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
import redis
from rq import Queue
from rq.job import Job, validate_job_id

from service.coalesce import Coalescer, Submission, decode_ticket_key, new_job_id, ticket_key
from service.settings import Names

NAMES = Names("tickets")


@pytest.fixture
def coalescer(redis_conn: redis.Redis) -> Coalescer:
    return Coalescer(redis_conn, NAMES)


def queue_ids(conn: redis.Redis, name: str) -> list[str]:
    return [i.decode() for i in conn.lrange(f"rq:queue:{name}", 0, -1)]


@pytest.mark.parametrize("ticket_id", ["T1", "PROJ-12", "a/b c:ü\0x", "x" * 300])
def test_job_ids_are_rq_safe_and_encode_the_ticket(ticket_id: str) -> None:
    key = ticket_key("jira", ticket_id)
    job_id = new_job_id(NAMES, key)
    validate_job_id(job_id)  # RQ accepts only [A-Za-z0-9_-]
    assert decode_ticket_key(job_id.split("-")[1]) == ("jira", ticket_id)
    assert new_job_id(NAMES, key) != job_id  # one id per run


def test_waiting_job_absorbs_further_events(coalescer: Coalescer, redis_conn: redis.Redis) -> None:
    first = coalescer.submit("memory", "T1")
    assert first.outcome is Submission.ENQUEUED
    again = [coalescer.submit("memory", "T1") for _ in range(3)]
    assert {r.outcome for r in again} == {Submission.COALESCED}
    assert {r.job_id for r in again} == {first.job_id}
    assert coalescer.submit("memory", "T2").outcome is Submission.ENQUEUED  # other tickets are independent
    assert coalescer.submit("other", "T1").outcome is Submission.ENQUEUED  # so are other systems
    assert len(queue_ids(redis_conn, NAMES.live_queue)) == 3


def test_event_during_a_run_schedules_exactly_one_rerun(coalescer: Coalescer, redis_conn: redis.Redis) -> None:
    job_id = coalescer.submit("memory", "T1").job_id
    redis_conn.lpop(f"rq:queue:{NAMES.live_queue}")
    redis_conn.hset(f"rq:job:{job_id}", "status", "started")  # what the worker does when it takes the job
    assert coalescer.begin("memory", "T1", job_id)

    during = [coalescer.submit("memory", "T1") for _ in range(4)]
    assert [r.outcome for r in during] == [Submission.RERUN_SCHEDULED] + [Submission.COALESCED] * 3
    assert queue_ids(redis_conn, NAMES.live_queue) == []  # nothing runs concurrently with the running job

    rerun = coalescer.finish("memory", "T1", job_id)
    assert rerun is not None and rerun != job_id
    assert queue_ids(redis_conn, NAMES.live_queue) == [rerun]
    assert coalescer.state("memory", "T1")["state"] == "queued"


def test_finish_without_events_clears_the_state(coalescer: Coalescer, redis_conn: redis.Redis) -> None:
    job_id = coalescer.submit("memory", "T1").job_id
    assert coalescer.begin("memory", "T1", job_id)
    assert coalescer.finish("memory", "T1", job_id) is None
    assert coalescer.state("memory", "T1") == {}
    assert coalescer.submit("memory", "T1").outcome is Submission.ENQUEUED


def test_retrying_job_keeps_absorbing_events(coalescer: Coalescer, redis_conn: redis.Redis) -> None:
    job_id = coalescer.submit("memory", "T1").job_id
    redis_conn.hset(f"rq:job:{job_id}", "status", "started")
    coalescer.begin("memory", "T1", job_id)
    coalescer.submit("memory", "T1")  # asks for a re-run...
    assert coalescer.finish("memory", "T1", job_id, retrying=True) is None  # ...which the retry covers
    redis_conn.hset(f"rq:job:{job_id}", "status", "scheduled")
    result = coalescer.submit("memory", "T1")
    assert (result.outcome, result.job_id) == (Submission.COALESCED, job_id)


def test_a_stray_run_never_touches_another_jobs_state(coalescer: Coalescer) -> None:
    job_id = coalescer.submit("memory", "T1").job_id
    assert not coalescer.begin("memory", "T1", "some-other-job")
    assert coalescer.finish("memory", "T1", "some-other-job") is None
    assert coalescer.state("memory", "T1")["job"] == job_id


@pytest.mark.parametrize("fate", ["finished", "failed", "deleted"])
def test_state_pointing_at_a_dead_job_is_ignored(coalescer: Coalescer, redis_conn: redis.Redis, fate: str) -> None:
    job_id = coalescer.submit("memory", "T1").job_id
    if fate == "deleted":
        redis_conn.delete(f"rq:job:{job_id}")
    else:
        redis_conn.hset(f"rq:job:{job_id}", "status", fate)
    result = coalescer.submit("memory", "T1")
    assert result.outcome is Submission.ENQUEUED and result.job_id != job_id


def test_webhook_promotes_a_waiting_bulk_job_to_the_live_queue(coalescer: Coalescer, redis_conn: redis.Redis) -> None:
    bulk = coalescer.submit("memory", "T1", queue=NAMES.bulk_queue)
    for n in range(5):
        coalescer.submit("memory", f"other-{n}", queue=NAMES.bulk_queue)
    live = coalescer.submit("memory", "T1")
    assert (live.outcome, live.job_id, live.queue) == (Submission.COALESCED, bulk.job_id, NAMES.live_queue)
    assert queue_ids(redis_conn, NAMES.live_queue) == [bulk.job_id]
    assert bulk.job_id not in queue_ids(redis_conn, NAMES.bulk_queue)
    assert Job.fetch(bulk.job_id, connection=redis_conn).origin == NAMES.live_queue
    assert coalescer.submit("memory", "T1", queue=NAMES.bulk_queue).queue == NAMES.live_queue  # never demoted


def test_concurrent_burst_from_threads_adds_one_job(redis_url: str, redis_conn: redis.Redis) -> None:
    results = []
    lock = threading.Lock()

    def hammer() -> None:
        own = Coalescer(redis.Redis.from_url(redis_url), NAMES)
        for _ in range(10):
            result = own.submit("memory", "T1")
            with lock:
                results.append(result)

    threads = [threading.Thread(target=hammer) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 100
    assert sum(r.outcome is Submission.ENQUEUED for r in results) == 1
    assert len({r.job_id for r in results}) == 1
    assert Queue(NAMES.live_queue, connection=redis_conn).count == 1


def _submit_many(redis_url: str, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    coalescer = Coalescer(redis.Redis.from_url(redis_url), NAMES)
    out.put([coalescer.submit("memory", "T1").outcome.value for _ in range(count)])


def test_concurrent_burst_from_processes_adds_one_job_and_running_adds_one_rerun(
    redis_url: str, redis_conn: redis.Redis
) -> None:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_submit_many, args=(redis_url, 25, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outcomes = [o for _ in procs for o in out.get(timeout=30)]
    for proc in procs:
        proc.join(10)
    assert outcomes.count("enqueued") == 1 and len(outcomes) == 100

    coalescer = Coalescer(redis_conn, NAMES)
    [job_id] = queue_ids(redis_conn, NAMES.live_queue)
    redis_conn.lpop(f"rq:queue:{NAMES.live_queue}")
    redis_conn.hset(f"rq:job:{job_id}", "status", "started")
    coalescer.begin("memory", "T1", job_id)
    procs = [ctx.Process(target=_submit_many, args=(redis_url, 25, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outcomes = [o for _ in procs for o in out.get(timeout=30)]
    for proc in procs:
        proc.join(10)
    assert outcomes.count("rerun_scheduled") == 1 and outcomes.count("coalesced") == 99
    assert coalescer.finish("memory", "T1", job_id) is not None
    assert len(queue_ids(redis_conn, NAMES.live_queue)) == 1

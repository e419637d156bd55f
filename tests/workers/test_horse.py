"""`tickets worker`'s long-lived work horse, as real processes on a real Redis.

The horse keeps its connections across jobs; a horse that dies or overruns a job's timeout costs its
started jobs one retry each and is replaced; the horse never outlives its worker; `--concurrency N`
runs N jobs at once and a webhook during a running job still gives exactly one re-run.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from werkzeug.wrappers import Request

from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import FileBackedBackend
from data_manager.collectors.tickets.model import TicketData
from data_manager.config import load_config
from service.runtime import Runtime
from tests.integrations.bugzilla.fake_server import ADMIN_KEY as BUGZILLA_KEY
from tests.integrations.bugzilla.fake_server import DEFAULT_PRODUCT, start_fake_bugzilla
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME, start_fake_jira
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import cli, start_worker, wait_for
from workers import ops
from workers.horse import horse_worker_class
from workers.recovery import pid_alive

FAST_RETRIES = {"retry_base_seconds": 0.2, "retry_max_seconds": 0.5, "max_attempts": 4, "lease_seconds": 3}


@pytest.fixture
def upstream(tmp_path: Path) -> FileBackedBackend:
    return FileBackedBackend(tmp_path / "upstream.json")


def runtime_for(config: Path) -> Runtime:
    return Runtime(load_config(config))


def horse_pid(runtime: Runtime) -> int:
    for raw in runtime.redis.smembers(runtime.names.leased_workers):
        info = runtime.redis.get(runtime.names.worker_lease(raw.decode()) + ":info")
        if info and json.loads(info).get("horse_pid"):
            return int(json.loads(info)["horse_pid"])
    return 0


def with_timeout(runtime: Runtime, job_id: str, seconds: int) -> None:
    """A shorter timeout than config allows (`workers.job_timeout_seconds` >= 10), for one job."""
    runtime.redis.hset(Job.key_for(job_id), "timeout", seconds)


def stored(runtime: Runtime, ticket_id: str) -> str:
    ticket = runtime.persistence.get("memory", ticket_id)
    return ticket.content if ticket else ""


@pytest.mark.parametrize(("flags", "proofs"), [((), 1), (("--fork",), 6)])
def test_the_horse_keeps_its_integrations_across_jobs(
    tmp_path: Path, redis_url: str, workers: list, flags: tuple[str, ...], proofs: int
) -> None:
    """A removal proves the credentials first, and an integration remembers its proof for a minute: six
    removals prove once when one integration (with its HTTP session) serves them all, six times with a
    horse per job."""
    with start_fake_jira(issues=6, deployment="cloud") as jira:
        source = {"enabled": True, "base_url": jira.url, "username": DEFAULT_USERNAME, "api_token": DEFAULT_TOKEN}
        config = write_config(tmp_path, redis_url, sources={"jira": {**source, "jql_query": "project = PROJ"}})
        runtime = runtime_for(config)
        keys = sorted(jira.fake.issues)
        for key in keys:
            runtime.coalescer.submit("jira", key)
        run = start_worker(config, tmp_path, "--burst", "--no-scheduler", *flags, name="store", redis_url=redis_url)
        workers.append(run)
        assert run.popen.wait(timeout=120) == 0, run.log()
        assert runtime.persistence.count("jira") == len(keys)

        for key in keys:
            jira.fake.delete_issue(key)
            runtime.coalescer.submit("jira", key, delete=True)
        before = len(jira.fake.requests)
        run = start_worker(config, tmp_path, "--burst", "--no-scheduler", *flags, name="remove", redis_url=redis_url)
        workers.append(run)
        assert run.popen.wait(timeout=120) == 0, run.log()
        assert runtime.persistence.count("jira") == 0
        assert [path for _, path, _ in jira.fake.requests[before:]].count("/rest/api/3/myself") == proofs


def test_a_killed_horse_costs_its_job_one_retry_and_a_new_horse_takes_over(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend, workers: list
) -> None:
    config = write_config(tmp_path, redis_url, workers=FAST_RETRIES)
    runtime = runtime_for(config)
    slow = upstream.create(TicketData(title="slow one"))
    upstream.inject_fault(slow, delay_next=1, delay_seconds=30)
    job_id = runtime.coalescer.submit("memory", slow).job_id
    workers.append(start_worker(config, tmp_path, redis_url=redis_url))
    wait_for(lambda: runtime.coalescer.state("memory", slow).get("state") == "running", 20, what="the slow job")
    wait_for(lambda: horse_pid(runtime), 10, what="the lease to name the horse")
    first = horse_pid(runtime)
    assert pid_alive(first)
    os.kill(first, signal.SIGKILL)

    wait_for(lambda: "slow one" in stored(runtime, slow), 30, what="the retried job to store the ticket")
    job = Job.fetch(job_id, connection=runtime.redis)
    assert job.meta["attempts"] == 1 and "work horse died (signal 9)" in job.meta["error"]
    assert job.get_status() == "finished" and upstream.fetch_count(slow) == 2
    assert horse_pid(runtime) not in (0, first)  # a fresh horse runs the next jobs
    assert ops.failed_jobs(runtime.redis, runtime.names) == []


def test_a_job_overrunning_its_timeout_is_retried_through_the_policy(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend, workers: list
) -> None:
    config = write_config(tmp_path, redis_url, workers=FAST_RETRIES)
    runtime = runtime_for(config)
    hung = upstream.create(TicketData(title="hangs once"))
    upstream.inject_fault(hung, delay_next=1, delay_seconds=60)
    job_id = runtime.coalescer.submit("memory", hung).job_id
    with_timeout(runtime, job_id, 2)
    proc = start_worker(config, tmp_path, redis_url=redis_url)
    workers.append(proc)
    wait_for(lambda: "hangs once" in stored(runtime, hung), 30, what="the retry after the timeout")
    job = Job.fetch(job_id, connection=runtime.redis)
    assert "timed out after 2 s" in job.meta["error"], job.meta
    assert upstream.fetch_count(hung) == 2
    assert "job_timeout" in proc.log()


def test_a_job_that_always_overruns_ends_in_the_failed_registry(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend, workers: list
) -> None:
    config = write_config(tmp_path, redis_url, workers={**FAST_RETRIES, "max_attempts": 2})
    runtime = runtime_for(config)
    hung = upstream.create(TicketData(title="always hangs"))
    upstream.inject_fault(hung, delay_next=5, delay_seconds=60)
    with_timeout(runtime, runtime.coalescer.submit("memory", hung).job_id, 1)
    workers.append(start_worker(config, tmp_path, redis_url=redis_url))
    wait_for(lambda: ops.failed_jobs(runtime.redis, runtime.names) != [], 40, what="the job to fail")
    [failed] = ops.failed_jobs(runtime.redis, runtime.names)
    assert failed.attempts == 2 and "timed out" in failed.error
    assert runtime.coalescer.state("memory", hung) == {}  # the next webhook is not swallowed


def test_the_horse_dies_with_its_worker_and_the_lease_recovers_the_job(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend, workers: list
) -> None:
    config = write_config(tmp_path, redis_url, workers=FAST_RETRIES)
    runtime = runtime_for(config)
    slow = upstream.create(TicketData(title="outlived"))
    upstream.inject_fault(slow, delay_next=1, delay_seconds=30)
    runtime.coalescer.submit("memory", slow)
    first = start_worker(config, tmp_path, name="first", redis_url=redis_url)
    workers.append(first)
    wait_for(lambda: runtime.coalescer.state("memory", slow).get("state") == "running", 20, what="the slow job")
    wait_for(lambda: horse_pid(runtime), 10, what="the lease to name the horse")
    horse = horse_pid(runtime)
    os.kill(first.pid, signal.SIGKILL)  # the worker only: its horse must not go on taking jobs
    wait_for(lambda: not pid_alive(horse), 5, what="the horse to die with its worker")
    workers.append(start_worker(config, tmp_path, name="second", redis_url=redis_url))
    wait_for(lambda: "outlived" in stored(runtime, slow), 30, what="the job recovered through the lease")


def test_concurrency_runs_jobs_at_once_and_a_webhook_during_a_run_gives_one_rerun(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend, workers: list
) -> None:
    config = write_config(tmp_path, redis_url, workers=FAST_RETRIES)
    runtime = runtime_for(config)
    ids = [upstream.create(TicketData(title=f"parallel {n}")) for n in range(4)]
    for ticket_id in ids:
        upstream.inject_fault(ticket_id, delay_next=1, delay_seconds=1.5)
    job_ids = [runtime.coalescer.submit("memory", t).job_id for t in ids]
    workers.append(start_worker(config, tmp_path, "--concurrency", "4", redis_url=redis_url))
    busy = ids[0]
    wait_for(lambda: runtime.coalescer.state("memory", busy).get("state") == "running", 20, what="a running job")
    upstream.update(busy, {"title": "changed while running"})
    submissions = [runtime.coalescer.submit("memory", busy).outcome.value for _ in range(3)]
    assert submissions == ["rerun_scheduled", "coalesced", "coalesced"]

    wait_for(lambda: "changed while running" in stored(runtime, busy), 30, what="the change stored")
    wait_for(lambda: all(stored(runtime, t) for t in ids), 30, what="every ticket")
    wait_for(lambda: runtime.coalescer.state("memory", busy) == {}, 30, what="the re-run to end")
    assert upstream.fetch_count(busy) == 2  # the run and exactly one re-run
    spans = []
    for job_id in job_ids:
        job = Job.fetch(job_id, connection=runtime.redis)
        assert job.started_at and job.ended_at
        spans.append((job.started_at, job.ended_at))
    latest_start, earliest_end = max(s for s, _ in spans), min(e for _, e in spans)
    assert latest_start < earliest_end  # all four ran at the same time in one worker


def test_concurrency_needs_the_long_lived_horse(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url)
    for flag in ("--fork", "--no-fork"):
        result = cli(config, "worker", "--burst", "--concurrency", "2", flag)
        assert result.returncode == 2 and "--concurrency" in result.stderr, result.stderr


def test_each_thread_gets_its_own_integrations_over_the_shared_memory_store(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url, memory={"store_path": None, "store": "shared-by-threads"})
    runtime = runtime_for(config)
    main = runtime.integration("memory")
    runtime.integrations_per_thread()
    seen: list[object] = []

    def in_thread() -> None:
        seen.extend([runtime.integration("memory"), runtime.integration("memory")])

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, again, second, _ = seen
    assert first is again and first is not second and main not in seen  # one per thread, kept across calls
    assert isinstance(main, InMemoryTickets) and isinstance(first, InMemoryTickets)
    ticket_id = main.backend.create(TicketData(title="seen by every thread"))
    assert first.fetch(ticket_id).data.title == "seen by every thread"


def test_a_burst_of_one_batching_system_is_drained_with_batched_fetches(
    tmp_path: Path, redis_url: str, workers: list
) -> None:
    """12 queued Bugzilla jobs (one of them for a bug deleted upstream) with `--batch 5`: three batched
    fetches instead of twelve, each job still settled on its own, the gone bug removed from the store."""
    with start_fake_bugzilla(bugs=12) as bugzilla:
        source = {"enabled": True, "base_url": bugzilla.url, "api_key": BUGZILLA_KEY, "products": [DEFAULT_PRODUCT]}
        config = write_config(tmp_path, redis_url, sources={"bugzilla": source})
        runtime = runtime_for(config)
        ids = [str(i) for i in sorted(bugzilla.fake.bugs)]
        for bug_id in ids:
            runtime.coalescer.submit("bugzilla", bug_id)
        run = start_worker(config, tmp_path, "--burst", "--no-scheduler", name="store", redis_url=redis_url)
        workers.append(run)
        assert run.popen.wait(timeout=120) == 0, run.log()
        assert runtime.persistence.count("bugzilla") == len(ids)

        gone = ids[3]
        bugzilla.fake.delete_bug(int(gone))
        bugzilla.fake.add_comment(int(ids[0]), "a new comment")
        job_ids = [runtime.coalescer.submit("bugzilla", bug_id).job_id for bug_id in ids]
        before = bugzilla.fake.request_count(r"/rest/bug$")
        run = start_worker(
            config, tmp_path, "--burst", "--no-scheduler", "--batch", "5", name="batched", redis_url=redis_url
        )
        workers.append(run)
        assert run.popen.wait(timeout=120) == 0, run.log()
        assert bugzilla.fake.request_count(r"/rest/bug$") - before == 3  # 12 jobs: batches of 5, 5 and 2
        assert runtime.persistence.count("bugzilla") == len(ids) - 1
        assert "a new comment" in (runtime.persistence.get("bugzilla", ids[0]).content or "")
        for job_id in job_ids:
            assert Job.fetch(job_id, connection=runtime.redis).get_status() == "finished"
        assert run.log().count("job_done ") == len(ids)
        assert all(runtime.coalescer.state("bugzilla", bug_id) == {} for bug_id in ids)


def test_a_horse_killed_mid_batch_loses_nothing(tmp_path: Path, redis_url: str, workers: list) -> None:
    """The horse dies while its batched fetch waits for the server: the batch's started jobs are retried
    through the policy, the rest of the burst is drained by the next horse, nothing is failed."""
    stalled, release = threading.Event(), threading.Event()

    def stall_first_batch(fake: object, request: Request) -> None:
        if request.path.endswith("/rest/bug") and not stalled.is_set():
            stalled.set()
            release.wait(30)

    with start_fake_bugzilla(bugs=10) as bugzilla:
        bugzilla.fake.after_request.append(stall_first_batch)
        source = {"enabled": True, "base_url": bugzilla.url, "api_key": BUGZILLA_KEY, "products": [DEFAULT_PRODUCT]}
        config = write_config(tmp_path, redis_url, workers=FAST_RETRIES, sources={"bugzilla": source})
        runtime = runtime_for(config)
        ids = [str(i) for i in sorted(bugzilla.fake.bugs)]
        job_ids = [runtime.coalescer.submit("bugzilla", bug_id).job_id for bug_id in ids]
        workers.append(start_worker(config, tmp_path, "--batch", "4", redis_url=redis_url))
        wait_for(stalled.is_set, 20, what="the first batched fetch")
        wait_for(lambda: horse_pid(runtime), 10, what="the lease to name the horse")
        os.kill(horse_pid(runtime), signal.SIGKILL)
        release.set()
        wait_for(lambda: runtime.persistence.count("bugzilla") == len(ids), 60, what="every bug stored")
        retried = [j for j in job_ids if Job.fetch(j, connection=runtime.redis).meta.get("attempts") == 1]
        assert len(retried) == 4  # the batch the horse had started; the others waited on the queue
        assert ops.failed_jobs(runtime.redis, runtime.names) == []
        wait_for(lambda: all(runtime.coalescer.state("bugzilla", b) == {} for b in ids), 10, what="states cleared")


def test_a_horse_killed_between_registering_and_starting_a_job_retries_it(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend
) -> None:
    """RQ registers a job's execution, then marks the job started in a second transaction: a horse killed
    in between leaves a registered execution of a job that reads "queued" with no worker name. The
    worker still knows it for its own (the execution record names it) and retries it."""
    config = write_config(tmp_path, redis_url, workers=FAST_RETRIES)
    runtime = runtime_for(config)
    ticket_id = upstream.create(TicketData(title="caught in between"))
    job_id = runtime.coalescer.submit("memory", ticket_id).job_id
    conn = runtime.redis
    worker_class = horse_worker_class(runtime, concurrency=1)
    worker = worker_class([Queue(q, connection=conn) for q in runtime.names.queues], connection=conn, name="settling")
    job = Job.fetch(job_id, connection=conn)
    with conn.pipeline() as pipe:
        Queue(job.origin, connection=conn).remove(job, pipeline=pipe)
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=worker.name)
        pipe.execute()
    assert job.get_status(refresh=True) == "queued" and job.worker_name is None

    worker._settle_jobs_of_dead_horse(signal.SIGKILL)  # waitpid's status of a horse killed by SIGKILL

    assert StartedJobRegistry(job.origin, connection=conn).count == 0
    job = Job.fetch(job_id, connection=conn)
    assert job.meta["attempts"] == 1 and "work horse died (signal 9)" in job.meta["error"]
    assert job.get_status() in ("scheduled", "queued")

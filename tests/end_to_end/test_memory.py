"""The pipeline end to end with real processes: gunicorn + `tickets worker` + Redis + the file upstream.

The upstream is the memory integration's file-backed store, shared by this test, the web server and
the workers; faults injected into it make the upstream flaky, failing or slow on demand.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path

import pytest
import redis
import requests

from data_manager.collectors.tickets.memory_backend import FileBackedBackend
from data_manager.collectors.tickets.model import Comment, TicketData
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import Process, RedisServer, cli, start_web, start_worker, wait_for
from tests.pipeline_support.signing import signed

pytestmark = pytest.mark.slow


class Stack:
    def __init__(self, tmp_path: Path, redis_url: str, **config: object) -> None:
        self.dir = tmp_path
        self.redis_url = redis_url
        self.config = write_config(tmp_path, redis_url, **config)  # type: ignore[arg-type]
        self.upstream = FileBackedBackend(tmp_path / "upstream.json")
        self.redis = redis.Redis.from_url(redis_url)
        self.processes: list[Process] = []
        self.url = ""

    def web(self) -> str:
        proc, self.url = start_web(self.config, self.dir)
        self.processes.append(proc)
        return self.url

    def worker(self, *args: str, name: str = "worker") -> Process:
        proc = start_worker(self.config, self.dir, *args, name=name, redis_url=self.redis_url)
        self.processes.append(proc)
        return proc

    def post(self, ticket_id: str, action: str = "updated") -> requests.Response:
        body, headers = signed({"ticket_id": ticket_id, "action": action})
        return requests.post(f"{self.url}/webhooks/memory", data=body, headers=headers, timeout=5)

    def stored(self, ticket_id: str) -> str:
        path = self.dir / "data" / "tickets" / f"memory_{ticket_id}.txt"
        return path.read_text() if path.exists() else ""

    def wait_stored(self, ticket_id: str, text: str, timeout: float = 20) -> float:
        started = time.monotonic()
        try:
            wait_for(lambda: text in self.stored(ticket_id), timeout, what=f"{ticket_id} stored with {text!r}")
        except AssertionError:
            raise AssertionError(self.logs()) from None
        return time.monotonic() - started

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in self.processes)

    def close(self) -> None:
        for proc in self.processes:
            proc.stop()


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[Stack]:
    stack = Stack(tmp_path, redis_url)
    yield stack
    stack.close()


def test_signed_webhook_stores_the_latest_state(stack: Stack) -> None:
    stack.web()
    stack.worker()
    ticket_id = stack.upstream.create(TicketData(title="Printer jam", requester="bob"))
    stack.upstream.add_comment(ticket_id, Comment("ann", "Tray 2 is stuck", time_at(1)))
    response = stack.post(ticket_id)
    assert response.status_code == 202, response.text
    assert response.json()["jobs"][0]["outcome"] == "enqueued"
    stack.wait_stored(ticket_id, "Tray 2 is stuck")

    stack.upstream.update(ticket_id, {"title": "Printer fixed", "status": "resolved"})
    stack.upstream.add_comment(ticket_id, Comment("ann", "Replaced the roller", time_at(2)))
    assert stack.post(ticket_id).status_code == 202
    stack.wait_stored(ticket_id, "Replaced the roller")
    content = stack.stored(ticket_id)
    assert "Title: Printer fixed" in content and "Status: resolved" in content and "Comments (2):" in content

    stack.upstream.delete(ticket_id)
    assert stack.post(ticket_id, action="deleted").status_code == 202
    wait_for(lambda: not stack.stored(ticket_id), 20, what="deleted ticket's file to go")

    # A chunked body over the limit is refused by the real server too, and nothing is queued.
    body, headers = signed({"ticket_id": ticket_id, "pad": "x" * 8000})
    response = requests.post(f"{stack.url}/webhooks/memory", data=iter([body]), headers=headers, timeout=5)
    assert response.status_code == 413


def time_at(hour: int):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime(2024, 5, 1, hour, tzinfo=UTC)


def test_burst_of_100_webhooks_costs_one_fetch(stack: Stack) -> None:
    stack.web()
    ticket_id = stack.upstream.create(TicketData(title="hot ticket"))
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: stack.post(ticket_id), range(100)))
    assert [r.status_code for r in responses] == [202] * 100
    jobs = [r.json()["jobs"][0] for r in responses]
    assert [j["outcome"] for j in jobs].count("enqueued") == 1
    assert len({j["job_id"] for j in jobs}) == 1
    assert stack.redis.llen("rq:queue:tickets-live") == 1

    stack.worker()
    stack.wait_stored(ticket_id, "hot ticket")
    time.sleep(0.5)
    assert stack.upstream.fetch_count(ticket_id) == 1
    # Each gunicorn process flushes its counters once a second: eventually consistent, so poll.
    wait_for(
        lambda: (
            'tickets_events_coalesced_total{state="queued",system="memory"} 99.0'
            in requests.get(f"{stack.url}/metrics", timeout=5).text
        ),
        5,
        interval=0.2,
        what="coalesced count 99",
    )


def test_event_during_a_running_job_causes_exactly_one_more_run(stack: Stack) -> None:
    stack.web()
    stack.worker()
    ticket_id = stack.upstream.create(TicketData(title="version 1"))
    stack.upstream.inject_fault(ticket_id, delay_next=1, delay_seconds=3)  # the first fetch reads, then stalls
    assert stack.post(ticket_id).status_code == 202
    wait_for(lambda: stack.upstream.fetch_count(ticket_id) == 1, 10, what="the first run to start fetching")

    stack.upstream.update(ticket_id, {"title": "version 2"})
    outcomes = [stack.post(ticket_id).json()["jobs"][0]["outcome"] for _ in range(5)]
    assert outcomes == ["rerun_scheduled"] + ["coalesced"] * 4

    stack.wait_stored(ticket_id, "Title: version 2")  # the stalled run stored version 1; the re-run fixed it
    time.sleep(1)
    assert stack.upstream.fetch_count(ticket_id) == 2


def test_flaky_upstream_is_retried_with_backoff_then_succeeds(stack: Stack) -> None:
    stack.web()
    stack.worker()
    ticket_id = stack.upstream.create(TicketData(title="eventually"))
    stack.upstream.inject_fault(ticket_id, fail_next=2, error="transient", status=503, retry_after=1)
    started = time.monotonic()
    assert stack.post(ticket_id).status_code == 202
    stack.wait_stored(ticket_id, "eventually")
    assert time.monotonic() - started >= 2  # two Retry-After: 1 waits
    assert stack.upstream.fetch_count(ticket_id) == 3
    written = 'tickets_job_outcomes_total{outcome="written",system="memory"} 1.0'
    # The job counts its outcome just after the file is in place: give a loaded machine a moment.

    def scrape_once_written() -> str:
        text = requests.get(f"{stack.url}/metrics", timeout=5).text
        return text if written in text else ""

    metrics = str(wait_for(scrape_once_written, 10, what="the written outcome in /metrics"))
    assert 'tickets_job_outcomes_total{outcome="retried",system="memory"} 2.0' in metrics
    assert written in metrics


def test_permanent_failure_is_listed_and_requeued(stack: Stack) -> None:
    stack.web()
    stack.worker()
    ticket_id = stack.upstream.create(TicketData(title="needs access"))
    stack.upstream.inject_fault(
        ticket_id, fail_next=1, error="permanent", status=403, message="answered 403: no permission"
    )
    job_id = stack.post(ticket_id).json()["jobs"][0]["job_id"]

    def listed() -> list[dict]:  # type: ignore[type-arg]
        return json.loads(cli(stack.config, "failed", "list", "--json").stdout or "[]")

    [failed] = wait_for(listed, 20, what="the failed job to be listed")  # type: ignore[misc]
    assert (failed["job_id"], failed["ticket_id"], failed["attempts"]) == (job_id, ticket_id, 1)
    assert "403: no permission" in failed["error"]
    assert stack.upstream.fetch_count(ticket_id) == 1 and not stack.stored(ticket_id)

    result = cli(stack.config, "failed", "requeue", "--all")
    assert result.returncode == 0 and "1 job(s) requeued" in result.stdout
    stack.wait_stored(ticket_id, "needs access")
    assert listed() == []


def test_worker_killed_mid_job_loses_nothing(stack: Stack) -> None:
    stack.web()
    victim = stack.worker(name="victim")
    ticket_id = stack.upstream.create(TicketData(title="survives a crash"))
    stack.upstream.inject_fault(ticket_id, delay_next=1, delay_seconds=120)
    assert stack.post(ticket_id).status_code == 202
    wait_for(lambda: stack.upstream.fetch_count(ticket_id) == 1, 10, what="the job to be running")
    victim.kill9()
    assert not stack.stored(ticket_id)

    started = time.monotonic()
    stack.worker(name="successor")
    took = stack.wait_stored(ticket_id, "survives a crash", timeout=30)
    assert time.monotonic() - started < 10, f"recovery took {took:.1f}s"
    assert stack.upstream.fetch_count(ticket_id) == 2
    status = cli(stack.config, "status").stdout
    assert "workers: 1" in status and "DEAD" not in status


def test_live_webhooks_are_not_starved_by_a_bulk_resync(stack: Stack) -> None:
    ids = [stack.upstream.create(TicketData(title=f"bulk {n}")) for n in range(150)]
    result = cli(stack.config, "resync", "--enqueue")
    assert result.returncode == 0 and "enqueued 150" in result.stdout
    stack.web()
    stack.worker()
    live = stack.upstream.create(TicketData(title="customer is waiting"))
    assert stack.post(live).status_code == 202
    stack.wait_stored(live, "customer is waiting")
    assert stack.redis.llen("rq:queue:tickets-bulk") > 50  # the live job jumped the bulk queue
    wait_for(lambda: stack.redis.llen("rq:queue:tickets-bulk") == 0, 60, what="the bulk queue to drain")
    stack.wait_stored(ids[-1], "bulk 149")


def test_plain_rq_worker_also_runs_the_jobs(stack: Stack) -> None:
    stack.web()
    ticket_id = stack.upstream.create(TicketData(title="plain rq"))
    assert stack.post(ticket_id).status_code == 202
    rq = Path(sys.executable).parent / "rq"  # RQ's own command, installed beside the interpreter
    proc = Process(
        "rq-worker",
        [str(rq), "worker", "--burst", "--with-scheduler", "--url", stack.redis_url, "tickets-live", "tickets-bulk"],
        stack.dir,
        env={"TICKETS_CONFIG": str(stack.config)},
    )
    stack.processes.append(proc)
    proc.popen.wait(60)
    assert proc.popen.returncode == 0, proc.log()
    assert "plain rq" in stack.stored(ticket_id)


def test_redis_outage_answers_503_within_two_seconds(tmp_path: Path, redis_url: str) -> None:
    server = RedisServer(tmp_path)
    stack = Stack(tmp_path, server.url)
    try:
        stack.web()
        ticket_id = stack.upstream.create(TicketData(title="during an outage"))
        assert stack.post(ticket_id).status_code == 202

        os.kill(server.proc.pid, signal.SIGSTOP)  # a hung Redis: accepts connections, never answers
        try:
            started = time.monotonic()
            response = stack.post("T999999")
            assert time.monotonic() - started < 2.0
            assert response.status_code == 503
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert stack.post("T999999").status_code == 202  # and it recovers by itself

        server.stop()
        for _ in range(3):
            started = time.monotonic()
            response = stack.post(ticket_id)
            assert time.monotonic() - started < 2.0
            assert response.status_code == 503 and response.json()["error"] == "queue_unavailable"
        started = time.monotonic()
        assert requests.get(f"{stack.url}/healthz", timeout=5).status_code == 503
        assert time.monotonic() - started < 2.0
    finally:
        stack.close()
        server.stop()

"""The kill run: 500 tickets by webhook, work horses and whole workers killed with SIGKILL mid-backlog.

Promise: 500/500 persisted with no human (no `tickets failed requeue`): a killed work horse's job is
retried like a transient error, a killed worker's job is taken over through its lease. And a job
lost between a worker taking it off the queue and starting it is back within `lease_seconds`.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from data_manager.collectors.tickets.model import TicketData
from tests.faults.support import FaultStack, PrivateRedis, elapsed, figure, wait_until

pytestmark = pytest.mark.faults
TICKETS = 500
LEASE_SECONDS = 3
WORKERS = {"lease_seconds": LEASE_SECONDS, "retry_base_seconds": 0.5, "retry_max_seconds": 2, "max_attempts": 12}


@pytest.fixture
def stack(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = PrivateRedis(tmp_path)
    stack = FaultStack(tmp_path, server.url, workers=WORKERS)
    yield stack
    stack.close()
    server.stop()


def kill_a_horse(stack: FaultStack) -> bool:
    """SIGKILL one worker's work horse while it runs a job (its pid from the worker's lease info)."""
    live = {p.pid: p for p in stack.workers if p.alive()}
    for _, horse in stack.horse_pids().items():
        if any(horse in proc.descendants() for proc in live.values()):
            try:
                os.kill(horse, signal.SIGKILL)
                return True
            except ProcessLookupError:
                continue
    return False


def test_500_tickets_survive_killed_horses_and_workers(stack: FaultStack) -> None:
    ids = [stack.upstream.create(TicketData(title=f"kill run {n}")) for n in range(TICKETS)]
    for ticket_id in ids[::20]:  # a few slow fetches, so kills land mid-job
        stack.upstream.inject_fault(ticket_id, delay_next=1, delay_seconds=0.6)
    stack.web()
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda t: stack.post(t).status_code, ids))
    assert statuses == [202] * TICKETS

    for _ in range(3):
        stack.worker()
    horse_kills = worker_kills = 0
    plan = ["horse", "horse", "worker", "horse", "horse", "worker", "horse", "horse"]
    deadline = time.monotonic() + 60
    while plan and stack.stored_count(ids) < TICKETS and time.monotonic() < deadline:
        time.sleep(0.5)
        if plan[0] == "worker":
            next(p for p in stack.workers if p.alive()).kill9()  # the worker, its horse and its scheduler
            stack.worker()
            worker_kills += 1
            plan.pop(0)
        elif kill_a_horse(stack):
            horse_kills += 1
            plan.pop(0)

    wait_until(lambda: stack.stored_count(ids) == TICKETS, 300, "every ticket stored", stack)
    took = elapsed(started)
    failed = stack.failed_count()
    figure("kill", "persisted", f"{stack.stored_count(ids)}/{TICKETS}", f"{TICKETS}/{TICKETS}, no requeue")
    figure("kill", "horses / workers killed", f"{horse_kills} / {worker_kills}", "")
    figure("kill", "in failed registry", failed, "0")
    figure("kill", "time to drain", took, "")
    assert horse_kills >= 3 and worker_kills == 2, stack.logs()
    assert failed == 0, stack.logs()


def test_a_job_lost_between_dequeue_and_start_is_back_within_the_lease(stack: FaultStack) -> None:
    ticket_id = stack.upstream.create(TicketData(title="lost in transit"))
    stack.web()
    job_id = stack.post(ticket_id).json()["jobs"][0]["job_id"]
    # What a worker on both queues does when it takes a job (BLPOP), and then it dies before starting it.
    assert stack.redis.lpop(f"rq:queue:{stack.names.live_queue}") == job_id.encode()
    stack.worker()  # registered: from here on, the worker's scans are looking
    lost_at = time.monotonic()
    wait_until(
        lambda: stack.redis.hget(f"rq:job:{job_id}", "status") != b"queued",
        LEASE_SECONDS + 5,
        "the lost job to start again",
        stack,
    )
    took = time.monotonic() - lost_at
    wait_until(lambda: stack.stored_path(ticket_id).exists(), 20, "the lost job to run", stack)
    figure("kill", "job lost before start: running again in", f"{took:.1f} s", f"≤ lease_seconds ({LEASE_SECONDS} s)")
    assert took <= LEASE_SECONDS
    assert stack.failed_count() == 0

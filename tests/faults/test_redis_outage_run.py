"""The Redis freeze and restart run: webhooks at about 10/s while Redis is frozen (SIGSTOP) and then
killed and restarted (with `appendonly yes`), and delayed retries are waiting in the scheduler.

Promise: every request answered within 2 s (a 503 with Retry-After while Redis is in trouble), every
202 persisted with no human (the workers' schedulers come back by themselves), `/healthz` within 2 s.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from data_manager.collectors.tickets.model import TicketData
from tests.faults.support import FaultStack, PrivateRedis, figure, wait_until

pytestmark = pytest.mark.faults
RATE = 10  # webhooks per second
DURATION = 14.0


def test_every_202_is_persisted_and_every_503_comes_within_two_seconds(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path, persistent=True)
    stack = FaultStack(
        tmp_path, server.url, workers={"lease_seconds": 3, "retry_base_seconds": 2, "retry_max_seconds": 3}
    )
    try:
        ids = [stack.upstream.create(TicketData(title=f"outage {n}")) for n in range(int(RATE * DURATION) + 20)]
        for ticket_id in ids[::4]:  # delayed retries are waiting in the scheduler when Redis goes
            stack.upstream.inject_fault(ticket_id, fail_next=1, error="transient", status=503, retry_after=3)
        stack.web(threads=8)
        stack.worker()
        stack.worker()

        # The scheduler process (only the worker holding the queues' scheduler locks has one; idle, it is
        # that worker's only child) killed outright: the worker restarts it within seconds.
        time.sleep(1)
        holder, scheduler_pid = next((w, w.descendants()[0]) for w in stack.workers if w.descendants())
        os.kill(scheduler_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: "scheduler_restart" in holder.log(), 10, "the scheduler restarted", stack)
        figure("redis", "killed scheduler restarted in", f"{time.monotonic() - killed_at:.1f} s", "seconds")

        answers: list[tuple[str, int, float, str | None]] = []  # ticket, status, seconds, Retry-After
        health: list[tuple[int, float]] = []
        stop = threading.Event()

        def send() -> None:
            for ticket_id in ids:
                if stop.is_set():
                    return
                began = time.monotonic()
                try:
                    response = stack.post(ticket_id, timeout=10)
                    answers.append(
                        (ticket_id, response.status_code, time.monotonic() - began, response.headers.get("Retry-After"))
                    )
                except requests.RequestException:
                    answers.append((ticket_id, 0, time.monotonic() - began, None))
                time.sleep(max(0.0, 1 / RATE - (time.monotonic() - began)))

        def probe_health() -> None:
            while not stop.wait(0.5):
                began = time.monotonic()
                try:
                    status = requests.get(f"{stack.url}/healthz", timeout=10).status_code
                except requests.RequestException:
                    status = 0
                health.append((status, time.monotonic() - began))

        threads = [threading.Thread(target=send), threading.Thread(target=probe_health)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        server.freeze()  # connections accepted, never answered
        time.sleep(3)
        server.thaw()
        time.sleep(3)
        server.kill()  # and a crash: refused connections, then a restart that reloads the append-only file
        time.sleep(2)
        server.start()
        time.sleep(DURATION - 11)
        stop.set()
        for thread in threads:
            thread.join(30)

        accepted = [a[0] for a in answers if a[1] == 202]
        unavailable = [a for a in answers if a[1] == 503]
        slowest = max(a[2] for a in answers)
        slowest_503 = max((a[2] for a in unavailable), default=0.0)
        wait_until(lambda: stack.stored_count(accepted) == len(accepted), 90, "every 202 stored", stack)

        def schedulers_running() -> bool:
            body = requests.get(f"{stack.url}/healthz", timeout=5).json()
            return body["status"] == "ok" and any(w["scheduler"] == "running" for w in body["workers"].values())

        wait_until(schedulers_running, 30, "a running scheduler reported by /healthz", stack)
        restarts = sum(p.log().count("worker_lost_redis") for p in stack.workers)
        figure(
            "redis",
            "webhooks sent / 202 / 503 / other",
            f"{len(answers)} / {len(accepted)} / "
            f"{len(unavailable)} / {len(answers) - len(accepted) - len(unavailable)}",
            "only 202 or 503",
        )
        figure("redis", "slowest answer (503)", f"{slowest:.2f} s ({slowest_503:.2f} s)", "< 2 s")
        figure("redis", "slowest /healthz", f"{max(h[1] for h in health):.2f} s", "< 2 s")
        figure("redis", "202s persisted", f"{stack.stored_count(accepted)}/{len(accepted)}", "all")
        figure("redis", "RQ workers restarted after losing Redis", restarts, "")
        assert {a[1] for a in answers} <= {202, 503}, [a for a in answers if a[1] not in (202, 503)]
        assert unavailable, "Redis trouble never reached a webhook: the run tested nothing"
        assert all(a[3] for a in unavailable), "a 503 without Retry-After"
        assert slowest < 2.0 and max(h[1] for h in health) < 2.0
        assert stack.failed_count() == 0, stack.logs()
    finally:
        stack.close()
        server.stop()

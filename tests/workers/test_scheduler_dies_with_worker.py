"""The scheduler process a `tickets worker` forks ends when that worker dies, however it dies.

An orphaned scheduler would keep the queues' scheduler locks and keep firing, and a restarted worker would
run a second one. Each test SIGKILLs the worker process only (not its group: nothing else is there to
clean up after it) and watches the scheduler stop, releasing its locks, within a bounded time.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis
from rq.scheduler import RQScheduler

from data_manager.config import load_config
from service.runtime import Runtime
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import Process, start_worker, wait_for
from workers.recovery import pid_alive

BOUND_SECONDS = 10
LEASE_SECONDS = 3  # the lease thread checks (and restarts) the scheduler every second


def scheduler_pid(conn: redis.Redis, queue: str) -> int:
    """The pid of the scheduler holding `queue`'s scheduler lock (0 while none does)."""
    name = conn.get(RQScheduler.get_locking_key(queue))
    if name is None:
        return 0
    try:
        return RQScheduler.fetch(name.decode(), conn).pid
    except Exception:  # its hash not written yet
        return 0


def kill_and_time(proc: Process, pid: int) -> float:
    """SIGKILL the worker process alone; seconds until its scheduler `pid` is gone (fails past the bound)."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.popen.wait(10)
    killed = time.monotonic()
    try:
        wait_for(lambda: not pid_alive(pid), BOUND_SECONDS, 0.1, what=f"scheduler {pid} to end with its worker")
        return time.monotonic() - killed
    finally:
        try:  # only when the assertion failed: leave no orphan behind (the test run's tether would, later)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("flags", [(), ("--fork",), ("--no-fork",)], ids=["horse", "fork", "no-fork"])
def test_the_scheduler_ends_and_releases_its_locks_when_its_worker_is_killed(
    tmp_path: Path, redis_url: str, redis_conn: redis.Redis, workers: list[Process], flags: tuple[str, ...]
) -> None:
    config = write_config(tmp_path, redis_url, workers={"lease_seconds": LEASE_SECONDS})
    proc = start_worker(config, tmp_path, *flags, redis_url=redis_url)
    workers.append(proc)
    queue = Runtime(load_config(config)).names.live_queue
    pid = int(wait_for(lambda: scheduler_pid(redis_conn, queue), 20, what="the worker's scheduler"))
    assert pid != proc.pid and pid_alive(pid)

    took = kill_and_time(proc, pid)

    print(f"scheduler {pid} ended {took:.2f} s after its worker was killed")
    assert redis_conn.get(RQScheduler.get_locking_key(queue)) is None  # released, not left to expire


def test_a_scheduler_restarted_by_the_lease_thread_also_ends_with_its_worker(
    tmp_path: Path, redis_url: str, redis_conn: redis.Redis, workers: list[Process]
) -> None:
    """The lease thread, not the main thread, forks a restarted scheduler: it must be tied to the process."""
    config = write_config(tmp_path, redis_url, workers={"lease_seconds": LEASE_SECONDS})
    proc = start_worker(config, tmp_path, redis_url=redis_url)
    workers.append(proc)
    queue = Runtime(load_config(config)).names.live_queue
    first = int(wait_for(lambda: scheduler_pid(redis_conn, queue), 20, what="the worker's scheduler"))
    os.kill(first, signal.SIGTERM)  # it stops cleanly (locks released); the lease thread starts another
    pid = int(
        wait_for(
            lambda: scheduler_pid(redis_conn, queue) not in (0, first) and scheduler_pid(redis_conn, queue),
            20,
            what="the lease thread to restart the scheduler",
        )
    )

    took = kill_and_time(proc, pid)

    print(f"restarted scheduler {pid} ended {took:.2f} s after its worker was killed")
    assert redis_conn.get(RQScheduler.get_locking_key(queue)) is None

"""`tickets worker`'s default mode: one long-lived work horse that runs many jobs, `concurrency` at a time.

RQ's forking worker forks a fresh work horse per job, so every job rebuilds its HTTP connections (a TLS
handshake to Jira Cloud each time) and its SQLite connection. Here the worker forks one horse that keeps
them: it takes jobs off the queues in `concurrency` threads (the work is I/O), each thread with its own
integrations and HTTP sessions (`Runtime.integrations_per_thread`) and its own catalog connection. The
worker keeps everything else it did before (its RQ registration and lease, the scheduler, recovery) and
watches the horse:

- the horse dies (SIGKILL, out of memory, a crash in C code): every job it had started goes through the
  retry policy like a transient error (`WorkHorseDied`, attempts counted) and a fresh horse is forked. A job
  it had taken off a queue but not started is found by the lost-in-transit scan, as for any dead worker.
- a job overruns its timeout: a thread cannot be stopped safely, so the worker kills the horse and the same
  happens; the overrunning job's reason says it timed out.
- the worker dies (kill -9): the horse dies with it (PR_SET_PDEATHSIG, its parent pid as a fallback) and
  the lease recovers their jobs, as before.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.sharedctypes import RawArray, RawValue
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.timeouts import BaseDeathPenalty
from rq.utils import now
from rq.worker import BaseWorker, DequeueStrategy, WorkerStatus

from service.logs import log_event
from service.runtime import Runtime
from workers.abandoned import RetryAbandonedJobs
from workers.batch import batchable, batches, run_batch, take_more
from workers.jobs import job_class_for
from workers.recovery import runner_of
from workers.scheduler import StartsTetheredScheduler

log = logging.getLogger("tickets.worker")
JOB_ID_BYTES = 512  # room for a job id in the shared slot table (ours are < 200 characters)
POLL_SECONDS = 0.1  # how soon the worker notices its horse died
HEARTBEAT_SECONDS = 5.0
OVERRUN_GRACE_SECONDS = 1.0  # past a job's timeout before its horse is killed
PR_SET_PDEATHSIG = 1


class JobSlots:
    """Which job each horse thread runs and until when, in memory the worker shares with its horse.

    Shared memory made before the fork outlives the horse, so after a kill the worker still knows which
    job overran. `done` counts finished jobs across horses (for `--max-jobs`).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._deadlines = RawArray(ctypes.c_double, count)
        self._ids = [RawArray(ctypes.c_char, JOB_ID_BYTES) for _ in range(count)]
        self._done = RawValue(ctypes.c_longlong, 0)

    def start(self, slot: int, job_id: str, deadline: float) -> None:
        self._ids[slot].value = job_id.encode()[: JOB_ID_BYTES - 1]
        self._deadlines[slot] = deadline

    def finish(self, slot: int) -> None:
        self._deadlines[slot] = 0.0

    def job_id(self, slot: int) -> str:
        return bytes(self._ids[slot].value).decode()

    def overrun(self, at: float) -> list[str]:
        """Jobs still running whose deadline is before `at`."""
        return [self.job_id(s) for s in range(self.count) if 0.0 < self._deadlines[s] < at]

    def clear(self) -> None:
        for slot in range(self.count):
            self._deadlines[slot] = 0.0

    @property
    def done(self) -> int:
        return int(self._done.value)

    def add_done(self) -> None:
        self._done.value += 1  # only the horse writes, under its own lock


class NoDeathPenalty(BaseDeathPenalty):
    """Threads cannot take SIGALRM: the worker enforces job timeouts by killing the horse instead."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


class HorseThread(SimpleWorker):
    """Runs jobs in one thread of the horse under the worker's name (so the lease vouches for its jobs).

    It is not registered and leaves maintenance (registry cleanup, the scheduler) to the worker.
    """

    death_penalty_class = NoDeathPenalty

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return False


class Horse:
    """The long-lived work horse: `concurrency` threads taking jobs until stopped, done, or out of work."""

    def __init__(
        self,
        runtime: Runtime,
        queue_names: Sequence[str],
        worker_name: str,
        slots: JobSlots,
        *,
        burst: bool,
        max_jobs: int | None,
        batch: int = 1,
    ) -> None:
        self.runtime = runtime
        self.batch = batch
        self.queue_names = list(queue_names)
        self.worker_name = worker_name
        self.slots = slots
        self.burst = burst
        self.max_jobs = max_jobs
        self.stop = threading.Event()
        self.failed = threading.Event()
        self._lock = threading.Lock()
        self._busy = 0
        self._claimed = slots.done
        self.job_class = job_class_for(runtime)  # hands this runtime to the job functions

    def run(self) -> int:
        """The horse's exit code: 0 when it ended on its own terms (stopped, burst done, `max_jobs`)."""
        self.runtime.integrations_per_thread()
        threads = [
            threading.Thread(target=self._thread, args=(slot,), name=f"horse-{slot}", daemon=True)
            for slot in range(self.slots.count)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return 1 if self.failed.is_set() else 0

    def _claim(self) -> bool:
        with self._lock:
            if self.max_jobs is not None and self._claimed >= self.max_jobs:
                return False
            self._claimed += 1
            return True

    def _unclaim(self) -> None:
        with self._lock:
            self._claimed -= 1

    def _group(self, connection: Redis, worker: HorseThread, job: Job, queue: Queue) -> list[tuple[Job, Queue, bool]]:
        """The job, and more queued jobs of its system when they can be fetched together (`workers.batch`)."""
        group = [(job, queue, len(worker.queues) == 1)]
        system = batchable(job) if self.batch > 1 and self.max_jobs is None else None
        if system is not None and _batches(self.runtime, system):
            more = take_more(connection, self.runtime.names, queue, system, self.batch - 1)
            group += [(j, queue, False) for j in more]
        return group

    def _thread(self, slot: int) -> None:
        connection = self.runtime.connect()
        worker = HorseThread(
            [Queue(q, connection=connection) for q in self.queue_names],
            connection=connection,
            name=self.worker_name,
            job_class=self.job_class,
        )
        worker.log = log
        try:
            while not self.stop.is_set() and not self.failed.is_set():
                if not self._claim():
                    return
                result = worker.dequeue_job_and_maintain_ttl(None if self.burst else 1, None if self.burst else 1)
                if result is None:
                    self._unclaim()
                    if self.burst:
                        with self._lock:
                            idle_everywhere = self._busy == 0
                        if idle_everywhere:
                            return  # nothing queued and no job running that could queue a re-run
                        time.sleep(0.05)
                    continue
                job, queue = result
                with self._lock:
                    self._busy += 1
                group = self._group(connection, worker, job, queue)
                timeouts = [j.timeout or queue.DEFAULT_TIMEOUT for j, _, _ in group]
                deadline = time.time() + max(timeouts) if min(timeouts) > 0 else 0.0
                self.slots.start(slot, job.id, deadline)
                try:
                    if len(group) == 1:
                        worker.execute_job(job, queue)
                    else:
                        worker.set_state(WorkerStatus.BUSY)
                        run_batch(worker, self.runtime, str(batchable(job)), group)
                        worker.set_state(WorkerStatus.IDLE)
                finally:
                    self.slots.finish(slot)
                    with self._lock:
                        self._busy -= 1
                        for _ in group:
                            self.slots.add_done()
        except Exception as exc:  # a Redis error outside a job: the worker retries what was started
            log_event(log, "horse_thread_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            self.failed.set()


def _batches(runtime: Runtime, system: str) -> bool:
    try:
        return batches(runtime.integration(system))
    except Exception:  # an unknown system: the one-job path reports it
        return False


def die_with_parent(parent_pid: int) -> None:
    """Make sure a horse never outlives its worker (it would take jobs nobody vouches for)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the worker died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="horse-parent-watch", daemon=True).start()


class HorseWorker(RetryAbandonedJobs, StartsTetheredScheduler, BaseWorker):
    """The worker process: registration, lease (see `workers.worker`), scheduler, and its one horse."""

    runtime: Runtime  # set by `worker_class_for`
    concurrency: int = 1
    batch: int = 1  # sync jobs of one system taken together (`workers.batch`)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = JobSlots(self.concurrency)
        self._overran: set[str] = set()

    # -- the loop ----------------------------------------------------------------------------------
    def work(
        self,
        burst: bool = False,
        logging_level: str | None = None,
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
        max_jobs: int | None = None,
        max_idle_time: int | None = None,
        with_scheduler: bool = False,
        dequeue_strategy: DequeueStrategy = DequeueStrategy.DEFAULT,
    ) -> bool:
        self.bootstrap(logging_level, date_format, log_format)
        if with_scheduler:
            self._start_scheduler(burst, logging_level, date_format, log_format)
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        try:
            while not self._stop_requested:
                if max_jobs is not None and self._slots.done >= max_jobs:
                    break
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()  # type: ignore[no-untyped-call]
                self._fork_horse(burst, max_jobs)
                status = self._watch_horse()
                if status == 0:
                    break  # stopped on request, burst done, or max_jobs reached
                self._settle_jobs_of_dead_horse(status)
        finally:
            if self.horse_pid:
                self.kill_horse()
                self.wait_for_horse()
            self.teardown()  # type: ignore[no-untyped-call]
        return self._slots.done > 0

    def _fork_horse(self, burst: bool, max_jobs: int | None) -> None:
        self._slots.clear()
        self._overran = set()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the horse
            code = 1
            try:
                os.setpgrp()  # a Ctrl+C in the worker's terminal is the worker's to handle
                die_with_parent(parent)
                horse = Horse(
                    self.runtime,
                    [q.name for q in self.queues],
                    self.name,
                    self._slots,
                    burst=burst,
                    max_jobs=max_jobs,
                    batch=self.batch,
                )
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, lambda *_: horse.stop.set())
                code = horse.run()
            except BaseException as exc:
                log_event(log, "horse_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            finally:
                os._exit(code)
        self._horse_pid = pid
        self.procline(f"Forked long-lived horse {pid} at {time.time()}")  # type: ignore[no-untyped-call]
        log_event(log, "horse_started", worker=self.name, pid=pid, concurrency=self.concurrency)

    def _watch_horse(self) -> int:
        """Wait for the horse to exit, heartbeating and killing it if a job overruns; its wait status."""
        last_beat = 0.0
        while True:
            try:
                pid, status = os.waitpid(self._horse_pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self._horse_pid, 1
            if pid:
                self._horse_pid = 0
                return status
            if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                self.heartbeat()
                last_beat = time.monotonic()
            overdue = self._slots.overrun(time.time() - OVERRUN_GRACE_SECONDS)
            if overdue and not self._overran:
                self._overran = set(overdue)
                log_event(log, "job_timeout", logging.WARNING, worker=self.name, jobs=",".join(overdue))
                self.kill_horse()
            time.sleep(POLL_SECONDS)

    def _settle_jobs_of_dead_horse(self, status: int) -> None:
        """Every job the dead horse had started: retried through the policy, or failed once it gives up."""
        if os.WIFSIGNALED(status):
            how = f"work horse died (signal {os.WTERMSIG(status)})"
        else:
            how = f"work horse exited with status {os.waitstatus_to_exitcode(status)}"
        log_event(log, "horse_died", logging.WARNING, worker=self.name, reason=how)
        for queue in self.queues:
            registry = StartedJobRegistry(queue.name, connection=self.connection, job_class=self.job_class)
            for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
                try:
                    job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
                except NoSuchJobError:
                    continue
                if runner_of(self.connection, job, f"{job_id}:{execution_id}") != self.name:
                    continue
                try:
                    self.execution = Execution.fetch(execution_id, job_id, self.connection)
                except ValueError:  # its execution record is gone: one standing in removes the registry entry
                    self.execution = Execution(execution_id, job_id, self.connection, worker_name=self.name)
                timed_out = job_id in self._overran
                reason = f"timed out after {job.timeout} s; {how}" if timed_out else how
                job.ended_at = now()
                if not self._retry_abandoned(job, queue, registry, reason):
                    self.handle_job_failure(job, queue, started_job_registry=registry, exc_string=reason)
                self.connection.zrem(registry.key, f"{job_id}:{execution_id}")
        self.execution = None
        self._overran = set()

    # -- RQ's hooks for a worker with a horse --------------------------------------------------------
    def _shutdown(self) -> None:
        """Warm shutdown: the horse finishes the jobs it runs (it got SIGTERM), then the worker stops."""
        self._stop_requested = True
        self.set_shutdown_requested_date()  # type: ignore[no-untyped-call]
        if self.scheduler:
            self.stop_scheduler()  # type: ignore[no-untyped-call]

    def handle_warm_shutdown_request(self) -> None:
        if self.horse_pid:
            try:
                os.kill(self.horse_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """The horse's pid only: right after the fork its process group may still be the worker's."""
        try:
            os.kill(self.horse_pid, sig)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    def wait_for_horse(self) -> tuple[int | None, int | None, Any]:
        try:
            pid, status = os.waitpid(self.horse_pid, 0)
        except ChildProcessError:
            return None, None, None
        self._horse_pid = 0
        return pid, status, None


def horse_worker_class(runtime: Runtime, concurrency: int, batch: int = 1) -> type[HorseWorker]:
    attributes = {"runtime": runtime, "concurrency": concurrency, "batch": batch}
    return type(HorseWorker.__name__, (HorseWorker,), attributes)

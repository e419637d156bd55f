"""`tickets worker`: an RQ worker on the live and bulk queues (live first), with the scheduler.

Three ways to run jobs (`WorkerMode`): by default one long-lived work horse runs many jobs, `concurrency`
at a time, and keeps its HTTP and catalog connections (`workers.horse`); `fork` is RQ's own worker, a fresh
horse per job; `inline` runs jobs in the worker's own process (RQ's SimpleWorker: no crash isolation).

Around RQ's own worker it adds: the runtime built once before forking, a lease proving it alive,
prompt recovery of jobs a dead worker left behind or a dead worker took and never started (at start
and every few seconds), retries for jobs whose work horse died, a supervised scheduler that ends with
the worker (`workers.scheduler`), a fresh RQ worker when RQ's quits on a Redis error, the periodic
resync's scheduling, the data directory's crash leftovers cleaned up (at start and every few minutes), and the
tickets whose files were found lost at start fetched again (`workers.refetch`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from enum import Enum

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.worker import BaseWorker

from data_manager.collectors.housekeeping import LostTicket, drop_lost, remove_orphaned_temp_files, startup_check
from data_manager.collectors.persistence import PersistenceService
from service.logs import log_event
from service.runtime import Runtime
from workers.abandoned import worker_class_for
from workers.horse import horse_worker_class
from workers.jobs import job_class_for
from workers.periodic import ensure_all_scheduled, housekeeping
from workers.recovery import Lease, recover_abandoned, recover_lost_in_transit
from workers.refetch import refetch_lost

log = logging.getLogger("tickets.worker")
DEFAULT_BATCH = 20  # sync jobs of one batch-fetching system a horse thread takes together (`workers.batch`)
TEMP_SWEEP_SECONDS = 300  # how often a worker removes crash-orphaned temp files from the data directory


class WorkerMode(str, Enum):
    HORSE = "horse"  # one long-lived work horse, many jobs, `concurrency` threads (the default)
    FORK = "fork"  # RQ's forking worker: a fresh work horse per job
    INLINE = "inline"  # RQ's SimpleWorker: jobs in the worker's own process, no crash isolation


def build_worker(
    runtime: Runtime,
    queues: Sequence[str] | None = None,
    *,
    name: str | None = None,
    mode: WorkerMode = WorkerMode.HORSE,
    concurrency: int = 1,
    batch: int = DEFAULT_BATCH,
) -> BaseWorker:
    if concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    if concurrency > 1 and mode is not WorkerMode.HORSE:
        raise ValueError(f"--concurrency runs threads in the long-lived work horse; the {mode.value} mode runs one job")
    connection = runtime.connect()
    queue_names = list(queues or runtime.names.queues)
    unknown = [q for q in queue_names if q not in runtime.names.queues]
    if unknown:
        raise ValueError(
            f"unknown queue(s) {', '.join(unknown)}; the pipeline's queues are {', '.join(runtime.names.queues)}"
        )
    worker_class: type[BaseWorker] = (
        horse_worker_class(runtime, concurrency, batch)
        if mode is WorkerMode.HORSE
        else worker_class_for(runtime, fork=mode is WorkerMode.FORK)
    )
    return worker_class(
        [Queue(q, connection=connection) for q in queue_names],
        connection=connection,
        name=name,
        job_class=job_class_for(runtime),
    )


def run_worker(
    runtime: Runtime,
    *,
    queues: Sequence[str] | None = None,
    name: str | None = None,
    burst: bool = False,
    mode: WorkerMode = WorkerMode.HORSE,
    concurrency: int = 1,
    batch: int = DEFAULT_BATCH,
    with_scheduler: bool = True,
    max_jobs: int | None = None,
    logging_level: str = "INFO",
) -> bool:
    runtime.require_current_schema()  # an out-of-date PostgreSQL schema: refuse, naming `tickets db upgrade`
    runtime.prepare_for_jobs()  # once, before the first fork
    store = runtime.persistence
    # The embedded store's crash leftovers: old temp files, catalog rows out of step with files. (PostgreSQL
    # writes in one transaction: a crash leaves nothing to repair.)
    tickets_dir = store.tickets_dir if isinstance(store, PersistenceService) else None
    lost: list[LostTicket] = startup_check(store).files_lost if isinstance(store, PersistenceService) else []
    last_sweep = time.monotonic()
    worker = build_worker(runtime, queues, name=name, mode=mode, concurrency=concurrency, batch=batch)
    settings, names = runtime.settings, runtime.names

    maintenance = runtime.connect()
    coalescer = runtime.coalescer_on(maintenance)
    # Fetched again through the coalescer, like a webhook's event, before any job runs; only then do their rows
    # go. A kill while submitting (e.g. waiting for Redis) leaves the rows, so the next start submits again.
    refetch_lost(coalescer, runtime.manager.systems, lost, lambda: _wait_for_redis(maintenance))
    if lost and isinstance(store, PersistenceService):
        drop_lost(store, lost)

    def tick() -> None:
        recovered = recover_abandoned(maintenance, names, coalescer)
        recovered += recover_lost_in_transit(maintenance, names, grace_seconds=max(1.0, settings.lease_seconds / 3))
        if recovered:
            log_event(log, "recovered_jobs", logging.WARNING, count=len(recovered))
        ensure_all_scheduled(maintenance, names, runtime.config.resync)
        try:
            housekeeping(maintenance, names, runtime.persistence, float(runtime.config.persistence["trash_days"]))
        except Exception as exc:  # housekeeping must never stop a worker; the next hour tries again
            log_event(log, "housekeeping_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
        nonlocal last_sweep
        if time.monotonic() - last_sweep > TEMP_SWEEP_SECONDS:
            last_sweep = time.monotonic()
            if tickets_dir is not None:
                remove_orphaned_temp_files(tickets_dir)

    attempt = 0
    while True:
        lease = Lease(
            runtime.connect,
            names,
            worker,
            settings.lease_seconds,
            on_tick=tick,
            supervise=with_scheduler and not burst,
        )
        try:
            lease.start()  # before recovery, so this worker never looks dead to itself
            tick()
            log_event(
                log,
                "worker_started",
                worker=worker.name,
                queues=",".join(q.name for q in worker.queues),
                scheduler=with_scheduler,
                mode=mode.value,
                concurrency=concurrency,
            )
            return bool(
                worker.work(burst=burst, with_scheduler=with_scheduler, max_jobs=max_jobs, logging_level=logging_level)
            )
        except RedisError as exc:
            # RQ's worker quits on a Redis error outside its dequeue (e.g. while watching a work horse). A
            # Redis restart must not take the worker with it: abandon this RQ worker (its job is recovered
            # through the lease like any dead worker's) and start a fresh one once Redis answers again.
            if burst:
                raise
            log_event(log, "worker_lost_redis", logging.ERROR, worker=worker.name, error=type(exc).__name__)
            _abandon(worker)
        finally:
            lease.stop()
        attempt += 1
        _wait_for_redis(maintenance)
        scheduler = getattr(worker, "scheduler", None)
        if scheduler is not None:  # so the next worker's scheduler takes the queues at once, not in a minute
            try:
                scheduler.release_locks()
            except RedisError:
                pass
        worker = build_worker(
            runtime,
            queues,
            name=f"{name}-{attempt}" if name else None,
            mode=mode,
            concurrency=concurrency,
            batch=batch,
        )


def _abandon(worker: BaseWorker) -> None:
    """Stop what a failed RQ worker left running: its work horse and its scheduler process."""
    try:
        if worker.horse_pid:
            worker.kill_horse()
    except OSError:
        pass
    scheduler = getattr(worker, "scheduler", None)
    process = getattr(scheduler, "_process", None)
    if process is not None and process.is_alive():
        process.terminate()
        process.join(5)


def _wait_for_redis(connection: Redis, *, cap: float = 5.0) -> None:
    delay = 0.2
    while True:
        try:
            connection.ping()
            return
        except RedisError:
            time.sleep(delay)
            delay = min(cap, delay * 2)

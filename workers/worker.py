"""`tickets worker`: an RQ worker on the live and bulk queues (live first), with the scheduler.

Around RQ's own worker it adds: the runtime built once before forking, a lease proving it alive,
prompt recovery of jobs a dead worker left behind (at start and every few seconds), and the
periodic resync's scheduling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rq import Queue, SimpleWorker, Worker
from rq.worker import BaseWorker

from service.logs import log_event
from service.runtime import Runtime
from workers.jobs import job_class_for
from workers.periodic import ensure_all_scheduled, housekeeping
from workers.recovery import Lease, recover_abandoned

log = logging.getLogger("tickets.worker")


def build_worker(
    runtime: Runtime, queues: Sequence[str] | None = None, *, name: str | None = None, fork: bool = True
) -> BaseWorker:
    connection = runtime.connect()
    queue_names = list(queues or runtime.names.queues)
    unknown = [q for q in queue_names if q not in runtime.names.queues]
    if unknown:
        raise ValueError(
            f"unknown queue(s) {', '.join(unknown)}; the pipeline's queues are {', '.join(runtime.names.queues)}"
        )
    worker_class: type[BaseWorker] = Worker if fork else SimpleWorker
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
    fork: bool = True,
    with_scheduler: bool = True,
    max_jobs: int | None = None,
    logging_level: str = "INFO",
) -> bool:
    runtime.prepare_for_jobs()  # once, before the first fork
    worker = build_worker(runtime, queues, name=name, fork=fork)
    settings, names = runtime.settings, runtime.names

    maintenance = runtime.connect()
    coalescer = runtime.coalescer_on(maintenance)

    def tick() -> None:
        recovered = recover_abandoned(maintenance, names, coalescer)
        if recovered:
            log_event(log, "recovered_jobs", logging.WARNING, count=len(recovered))
        ensure_all_scheduled(maintenance, names, runtime.config.resync)
        try:
            housekeeping(maintenance, names, runtime.persistence, float(runtime.config.persistence["trash_days"]))
        except Exception as exc:  # housekeeping must never stop a worker; the next hour tries again
            log_event(log, "housekeeping_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}")

    lease = Lease(runtime.connect, names, worker, settings.lease_seconds, on_tick=tick)
    lease.start()  # before recovery, so this worker never looks dead to itself
    try:
        tick()
        log_event(
            log,
            "worker_started",
            worker=worker.name,
            queues=",".join(q.name for q in worker.queues),
            scheduler=with_scheduler,
            fork=fork,
        )
        return bool(
            worker.work(burst=burst, with_scheduler=with_scheduler, max_jobs=max_jobs, logging_level=logging_level)
        )
    finally:
        lease.stop()

"""RQ's scheduler process, ended when the worker that forked it dies (SIGKILL included).

An orphaned scheduler keeps the queues' scheduler locks and keeps firing, and a restarted worker runs a
second one. The scheduler process watches its parent pid rather than relying on PR_SET_PDEATHSIG, which
fires when the forking *thread* ends: the lease thread forks a restarted scheduler (`supervise_scheduler`)
and ends at every Redis-error restart, while the worker lives on. When the parent changes, the scheduler
stops the way SIGTERM stops it (releasing its locks, deleting its registration); if Redis does not answer,
it exits anyway after a grace period.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from multiprocessing.process import BaseProcess

from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.scheduler import RQScheduler
from rq.worker import BaseWorker

from service.logs import log_event

log = logging.getLogger("tickets.worker")
PARENT_POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 5.0  # for the clean stop (one scheduler interval, then Redis) before a hard exit


class TetheredScheduler(RQScheduler):
    """RQ's scheduler; its process ends soon after the process that started it."""

    _parent_pid = 0

    def start(self) -> BaseProcess:
        self._parent_pid = os.getpid()  # before the fork: a child reading getppid() may already see a reaper
        process: BaseProcess = super().start()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        return process

    def work(self) -> None:
        threading.Thread(target=self._watch_parent, name="scheduler-parent-watch", daemon=True).start()
        super().work()  # type: ignore[no-untyped-call]

    def _watch_parent(self) -> None:
        while os.getppid() == self._parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        log_event(log, "scheduler_orphaned", logging.WARNING, worker_pid=self._parent_pid, pid=os.getpid())
        self.request_stop()  # type: ignore[no-untyped-call]  # the loop stops at its next turn
        time.sleep(STOP_GRACE_SECONDS)
        os._exit(1)


class StartsTetheredScheduler(BaseWorker):
    """Mixin for the worker classes: RQ's `_start_scheduler`, with a `TetheredScheduler`."""

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        scheduler = TetheredScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler = scheduler
        scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if not scheduler.acquired_locks:
            return  # another worker's scheduler holds the queues; the lease thread retries
        if not burst:
            scheduler.start()
            return
        try:  # burst: no process, one pass in this one
            scheduler.register_birth()
            scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        finally:
            scheduler.release_locks()  # type: ignore[no-untyped-call]
            scheduler.register_death()

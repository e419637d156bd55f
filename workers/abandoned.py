"""A job whose work horse died (SIGKILL, OOM, segfault) is retried like a transient error, not failed.

RQ's own answer to a dead work horse is the failed registry ("Work-horse terminated unexpectedly"),
where the job waits for a human. But a horse killed mid-fetch is exactly the kind of failure a
retry fixes, so the worker classes here hand it to the same retry policy as any transient error:
with backoff, its attempts counted, and the failed registry only once the attempts are used up.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from rq import SimpleWorker, Worker
from rq.exceptions import AbandonedJobError
from rq.job import Job, Retry
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.utils import now

from data_manager.collectors.tickets.errors import TransientError
from service.coalesce import JOB_FUNCTION
from service.logs import log_event
from service.retry import rq_retry_interval
from service.runtime import Runtime
from workers.scheduler import StartsTetheredScheduler

log = logging.getLogger("tickets.worker")


class WorkHorseDied(TransientError):
    """The process running the job ended without finishing it (killed, out of memory, crashed)."""


class RetryAbandonedJobs:
    """Mixin for RQ worker classes: a dead work horse's job goes through the retry policy, and so does
    a job RQ's registry cleanup finds abandoned (its worker stopped heartbeating)."""

    runtime: Runtime  # set by `worker_class_for`
    _abandoned_job_id: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.push_exc_handler(self._retry_when_abandoned)  # type: ignore[attr-defined]

    def _retry_when_abandoned(self, job: Job, exc_type: Any, exc_value: Any, tb: Any) -> bool:
        """RQ's StartedJobRegistry cleanup fails an abandoned job unless it has retries left: give it
        one, with the policy's delay, while the policy allows (attempts counted)."""
        if not (isinstance(exc_type, type) and issubclass(exc_type, AbandonedJobError)):
            return True  # not ours: the next handler, or RQ's own handling
        runtime = self.runtime
        attempt = (job.number_of_retries or 0) + 1
        verdict = runtime.policy.decide(WorkHorseDied("abandoned: its worker stopped heartbeating"), attempt)
        job.meta.update({"attempts": attempt, "error": verdict.reason, "error_kind": verdict.kind.value})
        system, ticket_id = job.meta.get("system"), job.meta.get("ticket_id")
        if job.func_name == JOB_FUNCTION and isinstance(system, str) and isinstance(ticket_id, str):
            runtime.coalescer.finish(system, ticket_id, job.id, retrying=verdict.retry)
        if verdict.retry:
            job.number_of_retries = attempt
            job.retries_left = 1
            job.retry_intervals = [max(1, math.ceil(verdict.delay))]
            log_event(
                log,
                "job_retry",
                logging.WARNING,
                job=job.id,
                system=system,
                ticket=ticket_id,
                attempt=attempt,
                error=verdict.reason,
            )
        return True

    def handle_work_horse_killed(self, job: Job, retpid: Any, ret_val: Any, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[misc]
        self._abandoned_job_id = job.id

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry | None = None, exc_string: str = ""
    ) -> None:
        abandoned = self._abandoned_job_id == job.id and getattr(self, "_stopped_job_id", None) != job.id
        self._abandoned_job_id = None
        if abandoned and self._retry_abandoned(job, queue, started_job_registry, exc_string):
            return
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)  # type: ignore[misc]

    def _retry_abandoned(self, job: Job, queue: Queue, registry: StartedJobRegistry | None, exc_string: str) -> bool:
        """Schedule the retry and return True, or return False to let RQ fail the job."""
        runtime = self.runtime
        attempt = (job.number_of_retries or 0) + 1
        verdict = runtime.policy.decide(WorkHorseDied(exc_string.strip().rstrip(";") or "work horse died"), attempt)
        job.meta.update({"attempts": attempt, "error": verdict.reason, "error_kind": verdict.kind.value})
        job.save_meta()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        system, ticket_id = job.meta.get("system"), job.meta.get("ticket_id")
        if job.func_name == JOB_FUNCTION and isinstance(system, str) and isinstance(ticket_id, str):
            # the horse marked the ticket running; put it back to waiting (or clear it)
            runtime.coalescer.finish(system, ticket_id, job.id, retrying=verdict.retry)
            runtime.metrics.incr("job", system, "retried" if verdict.retry else "failed")
        fields = {"system": system, "ticket": ticket_id, "job": job.id, "attempt": attempt, "error": verdict.reason}
        if not verdict.retry:
            log_event(log, "job_failed", logging.ERROR, kind=verdict.kind.value, **fields)
            return False
        job.ended_at = job.ended_at or now()
        job.started_at = job.started_at or job.ended_at
        retry = Retry(max=runtime.policy.max_attempts, interval=[rq_retry_interval(verdict.delay)])  # type: ignore[list-item]
        registry = registry or StartedJobRegistry(job.origin, self.connection)  # type: ignore[attr-defined]
        self.handle_job_retry(job, queue, retry, registry, self.execution)  # type: ignore[attr-defined]
        log_event(log, "job_retry", logging.WARNING, delay_s=round(verdict.delay, 2), **fields)
        return True


class TicketWorker(RetryAbandonedJobs, StartsTetheredScheduler, Worker):
    """RQ's forking worker, retrying a dead work horse's job."""


class SimpleTicketWorker(RetryAbandonedJobs, StartsTetheredScheduler, SimpleWorker):
    """RQ's in-process worker (`--no-fork`); it has no horse to lose, the same class otherwise."""


def worker_class_for(runtime: Runtime, *, fork: bool = True) -> type[Worker]:
    """The worker class for `runtime` (like `workers.jobs.job_class_for`: no process-wide lookup)."""
    base = TicketWorker if fork else SimpleTicketWorker
    return type(base.__name__, (base,), {"runtime": runtime})

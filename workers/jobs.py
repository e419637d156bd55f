"""The one job kind: sync one ticket (fetch with comments → normalise → upsert; gone → delete).

The job marks the ticket "running" before it fetches (see `coalesce`), decides retries from the
error's class (see `retry`) and logs exactly one structured line per outcome.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from rq import get_current_job
from rq.job import Job, Retry

from data_manager.collectors.persistence import RemovalReason
from data_manager.collectors.tickets.sync import SyncOutcome, sync_ticket
from service.coalesce import Begun
from service.logs import log_event
from service.retry import rq_retry_interval
from service.runtime import Runtime

log = logging.getLogger("tickets.jobs")
F = TypeVar("F", bound=Callable[..., Any])


class RuntimeJob(Job):
    """An RQ job that hands its worker's `Runtime` to the job functions that take one.

    The runtime travels with the worker (its `job_class`), not in a process-global: RQ resolves a
    job's function by name, so this is where the worker's runtime meets it. A plain `rq worker`
    uses RQ's own `Job`; the functions then load the runtime from `TICKETS_CONFIG` themselves.
    """

    runtime: ClassVar[Runtime | None] = None

    @property
    def func(self) -> Any:
        func = super().func
        if self.runtime is not None and getattr(func, "takes_runtime", False):
            return functools.partial(func, runtime=self.runtime)
        return func


def job_class_for(runtime: Runtime) -> type[Job]:
    """The job class a worker for `runtime` uses (`Worker(..., job_class=job_class_for(runtime))`)."""
    return type("RuntimeJob", (RuntimeJob,), {"runtime": runtime})


def takes_runtime(func: F) -> F:
    """Mark a job function that accepts `runtime=` from `RuntimeJob`."""
    func.takes_runtime = True  # type: ignore[attr-defined]
    return func


@takes_runtime
def sync_ticket_job(system: str, ticket_id: str, runtime: Runtime | None = None) -> dict[str, Any] | Retry:
    runtime = runtime or Runtime.load()
    run = JobRun(runtime, get_current_job(), system, ticket_id)
    try:
        reason = run.begin()
        outcome = sync_ticket(runtime.integration(system), runtime.persistence, ticket_id, removal_reason=reason)
    except Exception as exc:
        return run.failed(exc)
    return run.done(outcome)


class JobRun:
    """One run of a ticket's sync job: marked running before its fetch, then settled with one log line.

    Shared by the one-job path (`sync_ticket_job`) and the worker's batched drain (`workers.batch`), which
    fetches and writes several tickets at once but settles each job on its own.
    """

    def __init__(self, runtime: Runtime, job: Job | None, system: str, ticket_id: str) -> None:
        self.runtime = runtime
        self.job = job
        self.system = system
        self.ticket_id = ticket_id
        self.job_id = job.id if job is not None else ""
        self.attempt = (job.number_of_retries or 0) + 1 if job is not None else 1
        self.started = time.monotonic()

    def begin(self) -> RemovalReason:
        """Mark the ticket running (before any fetch: an event from now on gets its re-run); the removal reason."""
        begun = self.runtime.coalescer.begin(self.system, self.ticket_id, self.job_id)
        return RemovalReason.DELETE_WEBHOOK if begun is Begun.RUNNING_FOR_DELETE else RemovalReason.DELETED_UPSTREAM

    def failed(self, exc: Exception) -> Retry:
        """A `Retry` when the policy retries `exc`; otherwise `exc` is raised (RQ fails the job)."""
        runtime, job, system, ticket_id, job_id, attempt = (
            self.runtime,
            self.job,
            self.system,
            self.ticket_id,
            self.job_id,
            self.attempt,
        )
        coalescer = runtime.coalescer
        verdict = runtime.policy.decide(exc, attempt)
        duration_ms = round((time.monotonic() - self.started) * 1000, 1)
        if job is not None:
            job.meta.update({"attempts": attempt, "error": verdict.reason, "error_kind": verdict.kind.value})
            job.save_meta()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        if verdict.retry and job is not None:
            coalescer.finish(system, ticket_id, job_id, retrying=True)
            runtime.metrics.incr("job", system, "retried")
            log_event(
                log,
                "job_retry",
                logging.WARNING,
                system=system,
                ticket=ticket_id,
                job=job_id,
                attempt=attempt,
                delay_s=round(verdict.delay, 2),
                duration_ms=duration_ms,
                error=verdict.reason,
            )
            # rq annotates intervals as int, but schedules float seconds as given (the sub-second part matters)
            return Retry(max=runtime.policy.max_attempts, interval=[rq_retry_interval(verdict.delay)])  # type: ignore[list-item]
        rerun = coalescer.finish(system, ticket_id, job_id)
        runtime.metrics.incr("job", system, "failed")
        log_event(
            log,
            "job_failed",
            logging.ERROR,
            system=system,
            ticket=ticket_id,
            job=job_id,
            attempt=attempt,
            duration_ms=duration_ms,
            kind=verdict.kind.value,
            error=verdict.reason,
            rerun=rerun,
        )
        raise exc

    def done(self, outcome: SyncOutcome) -> dict[str, Any]:
        runtime, system, ticket_id, job_id, attempt = (
            self.runtime,
            self.system,
            self.ticket_id,
            self.job_id,
            self.attempt,
        )
        duration = time.monotonic() - self.started

        def count(pipe: Any) -> None:
            runtime.metrics.add(pipe, "job", system, outcome.value)
            runtime.metrics.add(pipe, "job_seconds_sum", system, amount=round(duration, 6))

        rerun = runtime.coalescer.end(system, ticket_id, job_id, count)
        log_event(
            log,
            "job_done",
            system=system,
            ticket=ticket_id,
            job=job_id,
            outcome=outcome.value,
            attempt=attempt,
            duration_ms=round(duration * 1000, 1),
            rerun=rerun,
        )
        return {"outcome": outcome.value, "attempt": attempt, "rerun": rerun}

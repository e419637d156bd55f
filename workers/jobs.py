"""The one job kind: sync one ticket (fetch with comments → normalise → upsert; gone → delete).

The job marks the ticket "running" before it fetches (see `coalesce`), decides retries from the
error's class (see `retry`) and logs exactly one structured line per outcome.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import get_current_job
from rq.job import Retry

from data_manager.collectors.tickets.sync import sync_ticket
from service.logs import log_event
from service.retry import rq_retry_interval
from service.runtime import current_runtime

log = logging.getLogger("tickets.jobs")


def sync_ticket_job(system: str, ticket_id: str) -> dict[str, Any] | Retry:
    runtime = current_runtime()
    job = get_current_job()
    job_id = job.id if job is not None else ""
    attempt = (job.number_of_retries or 0) + 1 if job is not None else 1
    coalescer = runtime.coalescer
    started = time.monotonic()
    try:
        coalescer.begin(system, ticket_id, job_id)
        outcome = sync_ticket(runtime.integration(system), runtime.persistence, ticket_id)
    except Exception as exc:
        verdict = runtime.policy.decide(exc, attempt)
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        if job is not None:
            job.meta.update({"attempts": attempt, "error": verdict.reason, "error_kind": verdict.kind.value})
            job.save_meta()
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
            return Retry(max=runtime.policy.max_attempts, interval=[rq_retry_interval(verdict.delay)])
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
        raise
    rerun = coalescer.finish(system, ticket_id, job_id)
    duration = time.monotonic() - started
    with runtime.redis.pipeline(transaction=False) as pipe:
        runtime.metrics.add(pipe, "job", system, outcome.value)
        runtime.metrics.add(pipe, "job_seconds_sum", system, amount=round(duration, 6))
        pipe.execute()
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

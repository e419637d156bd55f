"""What `tickets failed ...` and `tickets status` do, separate from how the CLI prints it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry

from data_manager.collectors.store import TicketStore
from service.coalesce import JOB_FUNCTION, Coalescer
from service.settings import Names
from service.worker_health import scheduler_problems, worker_health
from workers.recovery import worker_is_dead


@dataclass
class FailedJob:
    job_id: str
    queue: str
    system: str
    ticket_id: str
    error: str
    attempts: int
    failed_at: datetime | None
    job: Job

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "queue": self.queue,
            "system": self.system,
            "ticket_id": self.ticket_id,
            "error": self.error,
            "attempts": self.attempts,
            "failed_at": self.failed_at.isoformat() if self.failed_at else "",
        }


def _exc_string(job: Job) -> str:
    result = job.latest_result()
    return (result.exc_string or "") if result is not None else ""


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def failed_jobs(connection: Redis, names: Names) -> list[FailedJob]:
    found: list[FailedJob] = []
    for queue_name in names.queues:
        registry = FailedJobRegistry(queue_name, connection=connection)
        ids = registry.get_job_ids()
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=connection), strict=True):
            if job is None:
                registry.remove(job_id)  # expired job data: nothing left to show or requeue
                continue
            meta = job.meta or {}
            kwargs = job.kwargs if job.func_name == JOB_FUNCTION else {}
            found.append(
                FailedJob(
                    job_id=job.id,
                    queue=queue_name,
                    system=str(meta.get("system") or kwargs.get("system") or ""),
                    ticket_id=str(meta.get("ticket_id") or kwargs.get("ticket_id") or ""),
                    error=str(meta.get("error") or _last_line(_exc_string(job)) or "unknown"),
                    attempts=int(meta.get("attempts") or (job.number_of_retries or 0) + 1),
                    failed_at=job.ended_at,
                    job=job,
                )
            )
    found.sort(key=lambda f: f.failed_at.timestamp() if f.failed_at else 0.0)
    return found


def select(
    jobs: Iterable[FailedJob], *, all_jobs: bool = False, system: str | None = None, job_ids: Iterable[str] = ()
) -> tuple[list[FailedJob], list[str]]:
    """The failed jobs chosen by --all / --system / ids; also the ids that matched nothing."""
    jobs = list(jobs)
    wanted = set(job_ids)
    chosen = [j for j in jobs if all_jobs or (system and j.system == system) or j.job_id in wanted]
    missing = sorted(wanted - {j.job_id for j in jobs})
    return chosen, missing


def requeue(connection: Redis, coalescer: Coalescer, failed: FailedJob) -> str:
    """Sync the ticket again (coalesced with anything already queued) and drop the failed job."""
    registry = FailedJobRegistry(failed.queue, connection=connection)
    if failed.job.func_name == JOB_FUNCTION and failed.system and failed.ticket_id:
        result = coalescer.submit(failed.system, failed.ticket_id, queue=failed.queue)
        registry.remove(failed.job, delete_job=True)
        return result.job_id
    return registry.requeue(failed.job).id


def purge(connection: Redis, failed: FailedJob) -> None:
    FailedJobRegistry(failed.queue, connection=connection).remove(failed.job, delete_job=True)


def status(connection: Redis, names: Names, persistence: TicketStore | None, systems: Iterable[str]) -> dict[str, Any]:
    queues = []
    for queue_name in names.queues:
        queue = Queue(queue_name, connection=connection)
        queues.append(
            {
                "queue": queue_name,
                "queued": queue.count,
                "scheduled": queue.scheduled_job_registry.count,
                "running": queue.started_job_registry.count,
                "failed": queue.failed_job_registry.count,
            }
        )
    schedulers = {w.name: w.scheduler for w in worker_health(connection, names)}
    workers = []
    seen: set[str] = set()
    for queue_name in names.queues:
        for worker in Worker.all(queue=Queue(queue_name, connection=connection)):
            if worker.name in seen:
                continue
            seen.add(worker.name)
            workers.append(
                {
                    "name": worker.name,
                    "state": str(worker.get_state()),
                    "queues": ",".join(worker.queue_names()),
                    "current_job": worker.get_current_job_id() or "",
                    "alive": not worker_is_dead(connection, names, worker.name),
                    "scheduler": schedulers.get(worker.name, "unknown"),  # unknown: a plain `rq worker`
                }
            )
    systems = list(systems)
    since = datetime.now(UTC) - timedelta(days=1)
    removals: dict[str, list[dict[str, Any]]] = {system: [] for system in systems}
    for removal in persistence.removals(since=since) if persistence else []:
        removals.setdefault(removal.source, []).append(removal.as_dict())
    resyncs = {}
    for system in systems:
        last = persistence.last_resync(system) if persistence else None
        cursor = persistence.get_cursor(system) if persistence else None
        resyncs[system] = {"last_resync": last, "cursor": cursor.isoformat() if cursor else ""}
    return {
        "queues": queues,
        "failed": sum(q["failed"] for q in queues),
        "workers": workers,
        "problems": scheduler_problems(worker_health(connection, names)),
        "resync": resyncs,
        "removals": removals,
    }

"""Drain a burst of one system's queued tickets with one batched fetch and one group-committed write.

When a horse thread takes a sync job whose system fetches many tickets per request (its integration
overrides `fetch_many` with a read that sees every change already made: Bugzilla's id lists, Salesforce's
SOQL; not Jira's search, which lags writes), it also takes up to
`limit - 1` more queued jobs of that system from the head of the same queue (one Lua call), and then:

1. marks every job started in RQ (the started registry, under the worker's name) and running in the
   coalescing state, before anything is fetched, exactly as one job does;
2. fetches them with one `fetch_many` and writes the snapshots with one `upsert_many` (group commit);
   a batch error becomes each job's error, a refused batch write falls back to one write per ticket;
3. settles each job on its own (`JobRun`: success, retry through the policy, or failure; its own log line
   and coalescing re-run), through RQ's own success/retry/failure handling.

Nothing is lost if the horse dies mid-batch: jobs taken but not yet started are "queued" on no queue and the
lost-in-transit scan puts them back; started ones are settled by the worker like any job of a dead horse.
Systems without batch fetches keep the one-job path.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from redis import Redis
from rq.job import Job, JobStatus, Retry
from rq.queue import Queue
from rq.utils import now
from rq.worker import BaseWorker

from data_manager.collectors.persistence import RemovalReason
from data_manager.collectors.store import upsert_each
from data_manager.collectors.tickets.errors import TicketGone
from data_manager.collectors.tickets.integration import TicketIntegration, TicketSnapshot
from data_manager.collectors.tickets.sync import SyncOutcome, delete_ticket, outcome_of_upsert, resource_of
from service.coalesce import JOB_FUNCTION
from service.runtime import Runtime
from service.settings import Names
from workers.jobs import JobRun

SCAN_DEPTH = 200  # how far down the queue a batch looks for more of its system's jobs

# Take up to ARGV[3] job ids starting with ARGV[1] from the first ARGV[2] entries of the queue KEYS[1].
_TAKE = """
local taken = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  if #taken >= tonumber(ARGV[3]) then break end
  if string.sub(id, 1, #ARGV[1]) == ARGV[1] then
    redis.call('LREM', KEYS[1], 1, id)
    taken[#taken + 1] = id
  end
end
return taken
"""


def batches(integration: TicketIntegration) -> bool:
    """Whether the system fetches many tickets per request (it overrides the seam's one-by-one default) and
    such a read sees every change already made (`fetch_many_sees_latest`: not Jira's search)."""
    overridden = type(integration).fetch_many is not TicketIntegration.fetch_many
    return overridden and integration.fetch_many_sees_latest


def job_id_prefix(names: Names, system: str) -> str:
    """Every sync job id of `system` starts with this (`service.coalesce.new_job_id`)."""
    return f"{names.safe_prefix}-{(system + chr(0)).encode().hex()}"


def take_more(connection: Redis, names: Names, queue: Queue, system: str, limit: int) -> list[Job]:
    """Up to `limit` more queued sync jobs of `system` off `queue`, atomically."""
    if limit <= 0:
        return []
    raw = connection.eval(_TAKE, 1, queue.key, job_id_prefix(names, system), SCAN_DEPTH, limit)
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in raw]
    jobs = [j for j in Job.fetch_many(ids, connection=connection) if j is not None] if ids else []
    return [j for j in jobs if j.func_name == JOB_FUNCTION]


def batchable(job: Job) -> str | None:
    """The system of a sync job, or None for any other job."""
    system = job.meta.get("system") if job.func_name == JOB_FUNCTION else None
    return system if isinstance(system, str) else None


def run_batch(worker: BaseWorker, runtime: Runtime, system: str, jobs: list[tuple[Job, Queue, bool]]) -> None:
    """Run sync jobs of one system together (each `(job, queue, on_intermediate_list)`)."""
    executions = {}
    for job, _, intermediate in jobs:
        executions[job.id] = worker.prepare_execution(job)
        worker.prepare_job_execution(job, remove_from_intermediate_queue=intermediate)
        job.started_at = now()

    integration = runtime.integration(system)
    runs: dict[str, JobRun] = {}
    reasons: dict[str, RemovalReason] = {}
    errors: dict[str, Exception] = {}
    for job, _, _ in jobs:
        run = runs[job.id] = JobRun(runtime, job, system, str(job.meta["ticket_id"]))
        try:
            reasons[job.id] = run.begin()
        except Exception as exc:
            errors[job.id] = exc
    outcomes = _sync_all(runtime, integration, [runs[j] for j in reasons], reasons, errors)

    for job, queue, _ in jobs:
        worker.execution = executions[job.id]
        registry = queue.started_job_registry
        try:
            error = errors.get(job.id)
            result: dict[str, Any] | Retry = (
                runs[job.id].failed(error) if error is not None else runs[job.id].done(outcomes[job.id])
            )
        except Exception:
            job.ended_at = now()
            job._status = JobStatus.FAILED
            exc_info = sys.exc_info()
            worker.handle_exception(job, *exc_info)
            worker.handle_job_failure(
                job,
                queue=queue,
                started_job_registry=registry,
                exc_string="".join(traceback.format_exception(*exc_info)),
            )
            continue
        job.ended_at = now()
        job._result = result
        if isinstance(result, Retry):
            worker.handle_job_retry(job, queue, result, registry, executions[job.id])
        else:
            job._status = JobStatus.FINISHED
            worker.handle_job_success(job, queue, registry)
    worker.execution = None


def _sync_all(
    runtime: Runtime,
    integration: TicketIntegration,
    runs: list[JobRun],
    reasons: dict[str, RemovalReason],
    errors: dict[str, Exception],
) -> dict[str, SyncOutcome]:
    """Fetch the runs' tickets at once and store them with one group commit; errors go into `errors`."""
    outcomes: dict[str, SyncOutcome] = {}
    if not runs:
        return outcomes
    try:
        fetched = integration.fetch_many([run.ticket_id for run in runs])
    except Exception as exc:  # the batch failed: every job of it failed the same way, and retries on its own
        errors.update({run.job_id: exc for run in runs})
        return outcomes
    found: list[tuple[JobRun, TicketSnapshot]] = []
    for run in runs:
        result = fetched.get(run.ticket_id)
        if isinstance(result, TicketSnapshot):
            found.append((run, result))
            continue
        if not isinstance(result, TicketGone):  # not answered: never taken for gone
            errors[run.job_id] = RuntimeError(f"{integration.name} fetch_many did not answer for {run.ticket_id}")
            continue
        try:
            outcomes[run.job_id] = delete_ticket(
                integration, runtime.persistence, run.ticket_id, reason=reasons[run.job_id]
            )
        except Exception as exc:
            errors[run.job_id] = exc
    if not found:
        return outcomes
    written = upsert_each(runtime.persistence, [(resource_of(integration, snap), snap.updated_at) for _, snap in found])
    for (run, _), stored in zip(found, written, strict=True):
        if isinstance(stored, Exception):
            errors[run.job_id] = stored
        else:
            outcomes[run.job_id] = outcome_of_upsert(stored)
    return outcomes

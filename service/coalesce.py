"""Per-ticket job coalescing: one waiting job per ticket, and exactly one re-run for events during a run.

State per ticket lives in a small hash `<prefix>:sync:<ticket key>`:

    job    the id of the ticket's pending or running RQ job
    state  "queued" (waiting, or waiting for a retry) | "running" (fetching now)
    queue  the queue the job is on
    rerun  "1" when an event arrived while the job was running
    delete "1" when a delete event asked for the run (only labels a removal in the log: the job re-fetches)

Every transition is atomic: `submit` and `finish` (which may enqueue) run as WATCH/MULTI
transactions together with RQ's own enqueue writes; `begin` is a Lua script. A run marks itself
"running" *before* it fetches, so an event coalesced into a queued job always precedes that job's
fetch, and an event during the fetch always causes one more run: the last change is never missed.

State that points at a job RQ no longer has alive (finished, failed, deleted) is stale and ignored,
so a lost transition can cost one extra fetch but never block a ticket.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue
from rq.job import Job

from service.metrics import Metrics
from service.settings import Names

JOB_FUNCTION = "workers.jobs.sync_ticket_job"
LIVE_JOB_STATUSES = frozenset({b"queued", b"scheduled", b"started", b"deferred"})
STATE_TTL_SECONDS = 14 * 24 * 3600  # only a safety net against leaks; stale state is ignored anyway
RESULT_TTL_SECONDS = 3600
WATCH_ATTEMPTS = 100


class Submission(str, Enum):
    ENQUEUED = "enqueued"  # a new job was queued
    COALESCED = "coalesced"  # a job for the ticket is already waiting; it will see this change
    RERUN_SCHEDULED = "rerun_scheduled"  # the ticket's job is running; one more run follows it


@dataclass(frozen=True)
class SubmitResult:
    outcome: Submission
    job_id: str
    queue: str


def ticket_key(system: str, ticket_id: str) -> str:
    """A key that encodes (system, ticket id) in characters RQ job ids and Redis keys accept."""
    return f"{system}\0{ticket_id}".encode().hex()


def decode_ticket_key(key: str) -> tuple[str, str]:
    system, _, ticket_id = bytes.fromhex(key).decode().partition("\0")
    return system, ticket_id


def new_job_id(names: Names, key: str) -> str:
    """`<prefix>-<ticket key>-<random>`: unique per run, and the ticket can be read back from it."""
    return f"{names.safe_prefix}-{key}-{secrets.token_hex(5)}"


# Move a waiting bulk job to the live queue: a webhook must not wait behind a bulk resync. LREM
# tells whether the job was still waiting; if a worker already took it, nothing is moved.
_PROMOTE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[3], 'origin', ARGV[2])
  redis.call('HSET', KEYS[4], 'queue', ARGV[2])
  redis.call('SADD', KEYS[5], KEYS[2])
  return 1
end
return 0
"""

_BEGIN = """
if redis.call('HGET', KEYS[1], 'job') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'running', 'rerun', '0')
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class Coalescer:
    """Submits sync jobs for tickets and keeps the per-ticket state consistent with RQ."""

    def __init__(
        self, connection: Redis, names: Names, *, job_timeout: int = 600, metrics: Metrics | None = None
    ) -> None:
        self.connection = connection
        self.names = names
        self.job_timeout = job_timeout
        self.metrics = metrics or Metrics(connection, names)
        self.queues = {name: Queue(name, connection=connection) for name in names.queues}
        self._promote = connection.register_script(_PROMOTE)
        self._begin = connection.register_script(_BEGIN)

    # -- called by webhooks, resync --enqueue, requeue -------------------------------------------
    def submit(self, system: str, ticket_id: str, *, queue: str | None = None, delete: bool = False) -> SubmitResult:
        """Make sure the ticket will be synced after now, adding at most one job.

        `delete` marks the run as asked for by a delete event, so a removal it makes is logged as one.
        """
        queue_name = queue or self.names.live_queue
        if queue_name not in self.queues:
            raise ValueError(f"unknown queue {queue_name!r} (known: {', '.join(self.queues)})")
        key = ticket_key(system, ticket_id)
        state_key = self.names.ticket_state(key)
        with self.connection.pipeline() as pipe:
            for _ in range(WATCH_ATTEMPTS):
                try:
                    result = self._submit_once(pipe, system, ticket_id, key, state_key, queue_name, delete)
                    break
                except WatchError:
                    continue
            else:  # pragma: no cover - only under pathological contention
                raise RuntimeError(f"could not submit {system}:{ticket_id}: state kept changing")
        if (
            result.outcome is Submission.COALESCED
            and queue_name == self.names.live_queue
            and result.queue != queue_name
        ):
            if self._promote_to_live(result.job_id, state_key, result.queue):
                result = SubmitResult(result.outcome, result.job_id, queue_name)
        return result

    def _submit_once(
        self, pipe: Any, system: str, ticket_id: str, key: str, state_key: str, queue_name: str, delete: bool = False
    ) -> SubmitResult:
        pipe.watch(state_key)
        state = pipe.hgetall(state_key)
        current = _text(state.get(b"job"))
        if current:
            job_key = Job.key_for(current)
            pipe.watch(job_key)
            if pipe.hget(job_key, "status") in LIVE_JOB_STATUSES:
                current_queue = _text(state.get(b"queue")) or queue_name
                if state.get(b"state") != b"running":
                    pipe.unwatch()
                    if delete:
                        self.connection.hset(state_key, "delete", "1")
                    self.metrics.incr("coalesced", system, "queued")
                    return SubmitResult(Submission.COALESCED, current, current_queue)
                rerun_queue = _text(state.get(b"rerun_queue"))
                if state.get(b"rerun") == b"1" and (rerun_queue == self.names.live_queue or rerun_queue == queue_name):
                    pipe.unwatch()
                    if delete:
                        self.connection.hset(state_key, "rerun_delete", "1")
                    self.metrics.incr("coalesced", system, "running")
                    return SubmitResult(Submission.COALESCED, current, current_queue)
                pipe.multi()
                rerun = {"rerun": "1", "rerun_queue": self._preferred(rerun_queue, queue_name)}
                pipe.hset(state_key, mapping={**rerun, **({"rerun_delete": "1"} if delete else {})})
                pipe.execute()
                self.metrics.incr("coalesced", system, "running")
                return SubmitResult(Submission.RERUN_SCHEDULED, current, current_queue)
        job_id = new_job_id(self.names, key)
        pipe.multi()
        self._enqueue(pipe, system, ticket_id, state_key, job_id, queue_name, delete=delete)
        pipe.execute()
        self.metrics.incr("enqueued", system, queue_name)
        return SubmitResult(Submission.ENQUEUED, job_id, queue_name)

    def _preferred(self, first: str, second: str) -> str:
        """Of two queues a re-run was asked for, the live one wins."""
        return self.names.live_queue if self.names.live_queue in (first, second) else (first or second)

    def _enqueue(
        self,
        pipe: Any,
        system: str,
        ticket_id: str,
        state_key: str,
        job_id: str,
        queue_name: str,
        *,
        delete: bool = False,
    ) -> None:
        """Queue the job and its state on `pipe` (already in MULTI)."""
        pipe.delete(state_key)
        state = {"job": job_id, "state": "queued", "queue": queue_name, "rerun": "0"}
        pipe.hset(state_key, mapping={**state, **({"delete": "1"} if delete else {})})
        pipe.expire(state_key, STATE_TTL_SECONDS)
        self.queues[queue_name].enqueue_call(
            JOB_FUNCTION,
            kwargs={"system": system, "ticket_id": ticket_id},
            job_id=job_id,
            timeout=self.job_timeout,
            result_ttl=RESULT_TTL_SECONDS,
            description=f"sync {system}:{ticket_id}",
            meta={"system": system, "ticket_id": ticket_id},
            pipeline=pipe,
        )

    def _promote_to_live(self, job_id: str, state_key: str, from_queue: str) -> bool:
        live = self.queues[self.names.live_queue]
        keys = [self.queues[from_queue].key, live.key, Job.key_for(job_id), state_key, live.redis_queues_keys]
        return bool(self._promote(keys=keys, args=[job_id, live.name]))

    # -- called by the job itself ----------------------------------------------------------------
    def begin(self, system: str, ticket_id: str, job_id: str) -> bool:
        """Mark the ticket's job as running, before it fetches; False for a job the state does not know."""
        state_key = self.names.ticket_state(ticket_key(system, ticket_id))
        return bool(self._begin(keys=[state_key], args=[job_id, STATE_TTL_SECONDS]))

    def finish(self, system: str, ticket_id: str, job_id: str, *, retrying: bool = False) -> str | None:
        """End a run: back to "queued" for a retry, else a re-run if one was asked for, else clear.

        Returns the id of the re-run job, if one was enqueued.
        """
        key = ticket_key(system, ticket_id)
        state_key = self.names.ticket_state(key)
        with self.connection.pipeline() as pipe:
            for _ in range(WATCH_ATTEMPTS):
                try:
                    pipe.watch(state_key)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    state = pipe.hgetall(state_key)
                    if _text(state.get(b"job")) != job_id:
                        pipe.unwatch()
                        return None
                    pipe.multi()
                    if retrying:  # the retry fetches afresh, so it covers any event seen meanwhile
                        pipe.hset(state_key, mapping={"state": "queued", "rerun": "0"})
                        if state.get(b"rerun_delete") == b"1":
                            pipe.hset(state_key, "delete", "1")
                        pipe.hdel(state_key, "rerun_queue", "rerun_delete")
                        pipe.execute()
                        return None
                    if state.get(b"rerun") == b"1":
                        queue_name = (
                            _text(state.get(b"rerun_queue")) or _text(state.get(b"queue")) or self.names.live_queue
                        )
                        rerun_id = new_job_id(self.names, key)
                        self._enqueue(
                            pipe,
                            system,
                            ticket_id,
                            state_key,
                            rerun_id,
                            queue_name,
                            delete=state.get(b"rerun_delete") == b"1",
                        )
                        pipe.execute()
                        self.metrics.incr("enqueued", system, queue_name)
                        return rerun_id
                    pipe.delete(state_key)
                    pipe.execute()
                    return None
                except WatchError:
                    continue
        raise RuntimeError(f"could not finish {system}:{ticket_id}: state kept changing")  # pragma: no cover

    def mark_requeued(self, system: str, ticket_id: str, job_id: str, queue_name: str, pipe: Any) -> None:
        """On `pipe` (in MULTI): the ticket's job `job_id` waits again (a crashed worker's job, recovered)."""
        state_key = self.names.ticket_state(ticket_key(system, ticket_id))
        pipe.hset(state_key, mapping={"job": job_id, "state": "queued", "queue": queue_name, "rerun": "0"})
        pipe.hdel(state_key, "rerun_queue")
        pipe.expire(state_key, STATE_TTL_SECONDS)

    def asked_to_delete(self, system: str, ticket_id: str, job_id: str) -> bool:
        """Whether a delete event asked for the ticket's job `job_id` (a label for the removal log only)."""
        state = self.state(system, ticket_id)
        return state.get("job") == job_id and state.get("delete") == "1"

    def state(self, system: str, ticket_id: str) -> dict[str, str]:
        raw = self.connection.hgetall(self.names.ticket_state(ticket_key(system, ticket_id)))
        return {_text(k): _text(v) for k, v in raw.items()}

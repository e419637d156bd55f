"""Per-ticket job coalescing: one waiting job per ticket, and exactly one re-run for events during a run.

State per ticket lives in a small hash `<prefix>:sync:<ticket key>`:

    job    the id of the ticket's pending or running RQ job
    state  "queued" (waiting, or waiting for a retry) | "running" (fetching now)
    queue  the queue the job is on
    rerun  "1" when an event arrived while the job was running
    delete "1" when a delete event asked for the run (only labels a removal in the log: the job re-fetches)

Every transition is atomic. `submit` is one Lua script (one round trip per event, the webhook's
hot path): it reads the state and the current job's status and either coalesces or runs RQ's own
enqueue writes, which RQ composed on a pipeline that is never sent. `finish` (which may enqueue)
is a WATCH/MULTI transaction; `begin` is a Lua script. A run marks itself
"running" *before* it fetches, so an event coalesced into a queued job always precedes that job's
fetch, and an event during the fetch always causes one more run: the last change is never missed.

State that points at a job RQ no longer has alive (finished, failed, deleted) is stale and ignored,
so a lost transition can cost one extra fetch but never block a ticket.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
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


class Begun(IntEnum):
    """What `Coalescer.begin` found: falsy when the state is not this job's."""

    NOT_THIS_JOB = 0
    RUNNING = 1
    RUNNING_FOR_DELETE = 2  # a delete event asked for this run (a label for the removal log only)


class Submission(str, Enum):
    ENQUEUED = "enqueued"  # a new job was queued
    COALESCED = "coalesced"  # a job for the ticket is already waiting; it will see this change
    RERUN_SCHEDULED = "rerun_scheduled"  # the ticket's job is running; one more run follows it


@dataclass(frozen=True)
class SubmitResult:
    outcome: Submission
    job_id: str
    queue: str


def _flattened(commands: list[tuple[Any, ...]]) -> list[Any]:
    """Commands as a script's ARGV tail: (count, args...) for each."""
    args: list[Any] = []
    for command in commands:
        args += [len(command), *command]
    return args


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

# Run the Redis commands a script was given from ARGV[first] on, each as (count, args...): RQ's own enqueue writes
# (composed on a pipeline never sent), or a caller's metrics.
_RUN_COMMANDS = """
local function run_commands(first)
  local i = first
  while i <= #ARGV do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
end
"""

# The whole of `submit`, atomically. KEYS[1]: the ticket's state. ARGV: the job key prefix, the queue asked for,
# the live queue, "1" for a delete event, the new job's id, then RQ's enqueue commands as (count, args...)*.
# Returns {outcome, job id, queue, what the coalesced job was doing}.
_SUBMIT = (
    _RUN_COMMANDS
    + """
local s = {}
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do s[raw[i]] = raw[i + 1] end
local current = s['job']
if current and current ~= '' then
  local status = redis.call('HGET', ARGV[1] .. current, 'status')
  if status == 'queued' or status == 'scheduled' or status == 'started' or status == 'deferred' then
    local current_queue = s['queue']
    if not current_queue or current_queue == '' then current_queue = ARGV[2] end
    if s['state'] ~= 'running' then
      if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'delete', '1') end
      return {'coalesced', current, current_queue, 'queued'}
    end
    local rerun_queue = s['rerun_queue'] or ''
    if s['rerun'] == '1' and (rerun_queue == ARGV[3] or rerun_queue == ARGV[2]) then
      if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'rerun_delete', '1') end
      return {'coalesced', current, current_queue, 'running'}
    end
    local preferred = rerun_queue
    if rerun_queue == ARGV[3] or ARGV[2] == ARGV[3] then
      preferred = ARGV[3]
    elseif rerun_queue == '' then
      preferred = ARGV[2]
    end
    redis.call('HSET', KEYS[1], 'rerun', '1', 'rerun_queue', preferred)
    if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'rerun_delete', '1') end
    return {'rerun_scheduled', current, current_queue, 'running'}
  end
end
run_commands(6)
return {'enqueued', ARGV[5], ARGV[2], ''}
"""
)

# Mark a run started. KEYS[1]: the ticket's state; ARGV: the job id, the state's TTL. Returns a `Begun`.
_BEGIN = """
if redis.call('HGET', KEYS[1], 'job') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'running', 'rerun', '0')
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  if redis.call('HGET', KEYS[1], 'delete') == '1' then return 2 end
  return 1
end
return 0
"""

# End a run in one round trip when no re-run was asked for. KEYS[1]: the ticket's state; ARGV: the job id, then
# commands run in any case (the caller's metrics) as (count, args...)*. Returns "cleared", "other" (the state is
# another job's: nothing to do) or "rerun" (the caller enqueues it through the `finish` transaction).
_END = (
    _RUN_COMMANDS
    + """
run_commands(2)
if redis.call('HGET', KEYS[1], 'job') ~= ARGV[1] then return 'other' end
if redis.call('HGET', KEYS[1], 'rerun') == '1' then return 'rerun' end
redis.call('DEL', KEYS[1])
return 'cleared'
"""
)


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
        self._submit = connection.register_script(_SUBMIT)
        self._begin = connection.register_script(_BEGIN)
        self._end = connection.register_script(_END)

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
        job_id = new_job_id(self.names, key)
        args: list[Any] = [
            Job.redis_job_namespace_prefix,
            queue_name,
            self.names.live_queue,
            "1" if delete else "0",
            job_id,
        ]
        args += _flattened(
            self._commands(
                lambda pipe: self._enqueue(pipe, system, ticket_id, state_key, job_id, queue_name, delete=delete)
            )
        )
        outcome, current, current_queue, doing = (_text(value) for value in self._submit(keys=[state_key], args=args))
        result = SubmitResult(Submission(outcome), current, current_queue)
        if result.outcome is Submission.ENQUEUED:
            self.metrics.incr("enqueued", system, queue_name)
        else:
            self.metrics.incr("coalesced", system, doing)
        if (
            result.outcome is Submission.COALESCED
            and queue_name == self.names.live_queue
            and result.queue != queue_name
        ):
            if self._promote_to_live(result.job_id, state_key, result.queue):
                result = SubmitResult(result.outcome, result.job_id, queue_name)
        return result

    def _commands(self, compose: Callable[[Any], None]) -> list[tuple[Any, ...]]:
        """The Redis commands `compose` queues on a pipeline (never sent), for a script to run them atomically.

        The pipeline is in MULTI, as RQ expects of a pipeline it is given to enqueue on.
        """
        with self.connection.pipeline() as pipe:
            pipe.multi()
            compose(pipe)
            return [args for args, _options in pipe.command_stack]

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
    def begin(self, system: str, ticket_id: str, job_id: str) -> Begun:
        """Mark the ticket's job as running, before it fetches (falsy for a job the state does not know),
        and tell whether a delete event asked for it, in one round trip."""
        state_key = self.names.ticket_state(ticket_key(system, ticket_id))
        return Begun(int(self._begin(keys=[state_key], args=[job_id, STATE_TTL_SECONDS])))

    def end(self, system: str, ticket_id: str, job_id: str, also: Callable[[Any], None]) -> str | None:
        """`finish` a run that is not retrying, with the writes `also` queues on a pipeline (metrics) done in the
        same round trip; the whole `finish` transaction only when a re-run was asked for. The re-run's id, if any.
        """
        state_key = self.names.ticket_state(ticket_key(system, ticket_id))
        ended = _text(self._end(keys=[state_key], args=[job_id, *_flattened(self._commands(also))]))
        return self.finish(system, ticket_id, job_id) if ended == "rerun" else None

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

    def state(self, system: str, ticket_id: str) -> dict[str, str]:
        raw = self.connection.hgetall(self.names.ticket_state(ticket_key(system, ticket_id)))
        return {_text(k): _text(v) for k, v in raw.items()}

"""Prompt recovery of jobs whose worker died mid-job (kill -9, OOM, lost machine).

RQ notices an abandoned job only when its heartbeat expires and a maintenance pass runs (minutes),
and then fails it. We want it re-run, and soon. So every `tickets worker` holds a lease: a key
with a short TTL that a background thread refreshes, plus a small info hash (host identity, pid,
horse pid, scheduler name). A started job whose worker has no lease any more, or whose worker was
on this very host and its processes are gone, is put back on its queue, and the per-ticket
coalescing state is told so. Workers started as plain `rq worker` hold no lease; their jobs are
recovered once RQ's own worker registration has expired.

Every worker runs the scan on start (before its scheduler takes the queue locks) and then every
few seconds, under a Redis lock so two scans never requeue the same job.

Two more ways to lose a job are covered by the same scan:
- A worker that took a job off its queue and died before starting it leaves the job "queued" on
  no queue (or, for a worker on one queue, on the queue's "intermediate" list, which RQ fails after
  a minute at its next maintenance, every 10 minutes). Such a job goes back to the front of its
  queue once two scans `lease_seconds / 3` apart have seen it so.
- The scheduler (a process the worker forks: it fires delayed retries and the periodic resync)
  exits on a Redis error and RQ restarts it only at its next maintenance. The lease thread
  restarts it within seconds and reports its state (`running`, `standby`: another worker's
  scheduler holds the queues, `stopped`, `off`) in the lease info that `tickets status` and
  `/healthz` show.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.worker import BaseWorker
from rq.worker_registration import unregister

from service.coalesce import JOB_FUNCTION, Coalescer
from service.logs import log_event
from service.settings import Names

log = logging.getLogger("tickets.recovery")
INFO_TTL_SECONDS = 7 * 24 * 3600
SCHEDULER_LOCK = "rq:scheduler-lock:{}"
RECOVER_LOCK_SECONDS = 10


@lru_cache(maxsize=1)
def host_identity() -> str:
    """Same boot and same pid namespace means a pid check here is meaningful for that worker."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(open(path).read().strip() if "boot_id" in path else str(os.stat(path).st_ino))
        except OSError:
            parts.append("?")
    return "/".join(parts)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead for our purposes
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class WorkerInfo:
    host: str
    pid: int
    horse_pid: int = 0
    scheduler: str = ""
    scheduler_state: str = ""  # running | standby | stopped | off


def scheduler_state(worker: BaseWorker, *, supervised: bool = True) -> str:
    """Whether this worker's RQ scheduler process is doing its job."""
    scheduler = getattr(worker, "scheduler", None)
    if scheduler is None or not supervised:
        return "off"
    process = getattr(scheduler, "_process", None)
    if process is not None and process.is_alive():
        return "running"
    return "stopped" if scheduler.acquired_locks or process is not None else "standby"


def supervise_scheduler(worker: BaseWorker) -> str:
    """Restart the worker's scheduler if it died (or take over the queues' locks another one left)."""
    state = scheduler_state(worker)
    if state in ("stopped", "standby"):
        scheduler = worker.scheduler
        assert scheduler is not None
        if state == "stopped":
            log_event(log, "scheduler_restart", logging.WARNING, worker=worker.name)
        scheduler.acquire_locks(auto_start=True)  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        state = scheduler_state(worker)
    return state


class Lease:
    """Proves a worker alive; its thread also runs `on_tick` (recovery, periodic scheduling)."""

    def __init__(
        self,
        redis_url_client: Callable[[], Redis],
        names: Names,
        worker: BaseWorker,
        lease_seconds: int,
        on_tick: Callable[[], None] | None = None,
        supervise: bool = False,
    ) -> None:
        self.connection = redis_url_client()  # its own connection: never shared with the worker
        self.names = names
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.on_tick = on_tick
        self.supervise = supervise  # restart the scheduler when it dies (not in burst mode: it runs inline)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def info(self) -> WorkerInfo:
        scheduler = getattr(self.worker, "scheduler", None)
        return WorkerInfo(
            host_identity(),
            os.getpid(),
            int(self.worker.horse_pid or 0),
            getattr(scheduler, "name", "") or "",
            scheduler_state(self.worker, supervised=self.supervise),
        )

    def renew(self) -> None:
        name = self.worker.name
        with self.connection.pipeline() as pipe:
            pipe.sadd(self.names.leased_workers, name)
            pipe.set(self.names.worker_lease(name), "1", ex=self.lease_seconds)
            pipe.set(self.names.worker_lease(name) + ":info", json.dumps(vars(self.info())), ex=INFO_TTL_SECONDS)
            pipe.execute()

    def start(self) -> None:
        self.renew()
        self._thread = threading.Thread(target=self._run, name="worker-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = max(0.5, self.lease_seconds / 3)
        while not self._stop.wait(interval):
            if self.supervise:
                try:
                    supervise_scheduler(self.worker)
                except RedisError as exc:
                    log.warning("scheduler check failed: %s", exc)
                except Exception:
                    log.exception("scheduler check failed")
            try:
                self.renew()
                if self.on_tick:
                    self.on_tick()
            except RedisError as exc:
                log.warning("worker lease renewal failed: %s", exc)
            except Exception:
                log.exception("worker maintenance failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            name = self.worker.name
            self.connection.delete(self.names.worker_lease(name), self.names.worker_lease(name) + ":info")
            self.connection.srem(self.names.leased_workers, name)
        except RedisError:
            pass


def _worker_info(connection: Redis, names: Names, worker_name: str) -> WorkerInfo | None:
    raw = connection.get(names.worker_lease(worker_name) + ":info")
    if raw is None:
        return None
    try:
        return WorkerInfo(**json.loads(raw))
    except (ValueError, TypeError):
        return None


def worker_is_dead(connection: Redis, names: Names, worker_name: str) -> bool:
    if not worker_name:
        return False
    if connection.sismember(names.leased_workers, worker_name):
        if not connection.exists(names.worker_lease(worker_name)):
            return True
        info = _worker_info(connection, names, worker_name)
        if info is not None and info.host == host_identity():
            return not pid_alive(info.pid) and not (info.horse_pid and pid_alive(info.horse_pid))
        return False
    return not connection.exists(Worker.redis_worker_namespace_prefix + worker_name)


def _forget_worker(connection: Redis, names: Names, worker_name: str) -> None:
    """Drop a dead worker's registration, lease and (if it held them) its scheduler locks."""
    info = _worker_info(connection, names, worker_name)
    key = Worker.redis_worker_namespace_prefix + worker_name
    worker = Worker.find_by_key(key, connection=connection)
    with connection.pipeline() as pipe:
        if worker is not None:
            unregister(worker, pipeline=pipe)
        pipe.delete(key, names.worker_lease(worker_name), names.worker_lease(worker_name) + ":info")
        pipe.srem(names.leased_workers, worker_name)
        pipe.execute()
    if info and info.scheduler:
        for queue_name in names.queues:
            lock = SCHEDULER_LOCK.format(queue_name)
            if connection.get(lock) == info.scheduler.encode():
                connection.delete(lock)


# Put a job taken off its queue but never started back at the front of its queue, unless it started
# (or went back) meanwhile: KEYS = job hash, first-seen key, target queue, then every list it may be on.
_RETURN_LOST = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then
  redis.call('DEL', KEYS[2])
  return 0
end
local removed = 0
for i = 4, #KEYS do
  if string.sub(KEYS[i], -13) == ':intermediate' then
    removed = removed + redis.call('LREM', KEYS[i], 0, ARGV[1])
  elseif redis.call('LPOS', KEYS[i], ARGV[1]) then
    redis.call('DEL', KEYS[2])
    return 0
  end
end
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _lost_candidates(connection: Redis, names: Names) -> dict[str, str]:
    """Jobs in status "queued" that no queue holds (job id -> queue name): taken by a worker that died
    before starting them. A worker on several queues pops with BLPOP (the job is then on no list at
    all), a worker on one queue moves it to the queue's intermediate list."""
    on_queue: set[str] = set()
    started: set[str] = set()
    candidates: dict[str, str] = {}
    for queue_name in names.queues:
        queue = Queue(queue_name, connection=connection)
        on_queue |= {_text(j) for j in connection.lrange(queue.key, 0, -1)}
        started |= set(StartedJobRegistry(queue_name, connection=connection).get_job_ids())
        for job_id in IntermediateQueue(queue.key, connection=connection).get_job_ids():
            candidates[job_id] = queue_name
    for key in connection.scan_iter(match=names.ticket_state("*"), count=1000):
        state = connection.hgetall(key)
        if state.get(b"state") == b"queued" and state.get(b"job"):
            job_id = _text(state[b"job"])
            if job_id not in on_queue:
                candidates.setdefault(job_id, _text(state.get(b"queue") or names.live_queue))
    return {
        job_id: queue_name
        for job_id, queue_name in candidates.items()
        if job_id not in started and connection.hget(Job.key_for(job_id), "status") == b"queued"
    }


def recover_lost_in_transit(connection: Redis, names: Names, grace_seconds: float) -> list[str]:
    """Jobs taken off a queue and never started: back at the front of their queue once they have been
    seen that way for `grace_seconds` (a live worker starts a job it took within milliseconds)."""
    recovered: list[str] = []
    script = connection.register_script(_RETURN_LOST)
    lists = []
    for queue_name in names.queues:
        key = Queue(queue_name, connection=connection).key
        lists += [key, IntermediateQueue.get_intermediate_queue_key(key)]
    for job_id, queue_name in _lost_candidates(connection, names).items():
        seen_key = names.lost_job(job_id)
        first_seen = connection.get(seen_key)
        if first_seen is None:
            connection.set(seen_key, str(time.time()), ex=max(60, int(grace_seconds * 10)))
            continue
        if time.time() - float(first_seen) < grace_seconds:
            continue
        target = Queue(queue_name, connection=connection).key
        if script(keys=[Job.key_for(job_id), seen_key, target, *lists], args=[job_id]):
            recovered.append(job_id)
            log_event(log, "job_recovered", logging.WARNING, job=job_id, queue=queue_name, reason="never started")
    return recovered


def runner_of(connection: Redis, job: Job, composite: str) -> str:
    """The worker that started this execution of `job`.

    RQ registers the execution (with its worker's name) in one transaction and marks the job started
    (setting `job.worker_name`) in a later one, so a worker killed between the two leaves a started
    execution of a job that still reads "queued" with no worker: the execution record names it.
    """
    name = connection.hget(Execution.from_composite_key(composite, connection).key, "worker_name")
    return _text(name) if name else (job.worker_name or "")


def recover_abandoned(connection: Redis, names: Names, coalescer: Coalescer) -> list[str]:
    """Requeue started jobs whose worker is dead; returns their ids."""
    # Short: a worker killed mid-scan leaves the lock behind, and recovery waits for it to expire. A scan takes
    # milliseconds; one overrunning it could at worst requeue a job twice (one extra, idempotent fetch).
    lock = connection.lock(names.lock("recover"), timeout=RECOVER_LOCK_SECONDS, blocking=False)
    if not lock.acquire(blocking=False):
        return []
    recovered: list[str] = []
    dead: set[str] = set()
    try:
        for queue_name in names.queues:
            queue = Queue(queue_name, connection=connection)
            registry = StartedJobRegistry(queue_name, connection=connection)
            for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
                composite = f"{job_id}:{execution_id}"
                try:
                    job = Job.fetch(job_id, connection=connection)
                except NoSuchJobError:
                    connection.zrem(registry.key, composite)
                    continue
                worker_name = runner_of(connection, job, composite)
                if not worker_is_dead(connection, names, worker_name):
                    continue
                dead.add(worker_name)
                _requeue(connection, coalescer, queue, registry, job, composite)
                recovered.append(job_id)
                log_event(
                    log,
                    "job_recovered",
                    logging.WARNING,
                    job=job_id,
                    queue=queue_name,
                    dead_worker=worker_name,
                    system=job.meta.get("system"),
                    ticket=job.meta.get("ticket_id"),
                )
        for worker in Worker.all(connection=connection):
            if worker.name not in dead and connection.sismember(names.leased_workers, worker.name):
                if worker_is_dead(connection, names, worker.name):
                    dead.add(worker.name)
        for worker_name in dead - {""}:
            _forget_worker(connection, names, worker_name)
    finally:
        try:
            lock.release()
        except RedisError:
            pass
    return recovered


def _requeue(
    connection: Redis, coalescer: Coalescer, queue: Queue, registry: StartedJobRegistry, job: Job, composite: str
) -> None:
    with connection.pipeline() as pipe:
        pipe.multi()
        pipe.zrem(registry.key, composite)
        job.started_at = None
        job.worker_name = None
        queue.enqueue_job(job, pipeline=pipe, at_front=True)
        if job.func_name == JOB_FUNCTION:
            coalescer.mark_requeued(job.meta["system"], job.meta["ticket_id"], job.id, queue.name, pipe)
        pipe.execute()

"""What the workers' leases say about them, for `/healthz` and `tickets status`.

Each `tickets worker` refreshes a lease (a key with a short TTL) and an info hash that includes its
scheduler's state (see `workers.recovery`). Reading them needs only Redis, so the web service can
report a worker whose scheduler is not running without importing any worker code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from redis import Redis

from service.settings import Names

SCHEDULER_STATES = ("running", "standby", "stopped", "off")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class WorkerHealth:
    name: str
    alive: bool  # its lease is current
    scheduler: str  # running | standby (another worker's scheduler holds the queues) | stopped | off | unknown


def worker_health(connection: Redis, names: Names) -> list[WorkerHealth]:
    """Every leased worker, with whether its lease is current and its scheduler's state."""
    members = sorted(_text(m) for m in connection.smembers(names.leased_workers))
    if not members:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for name in members:
            pipe.exists(names.worker_lease(name))
            pipe.get(names.worker_lease(name) + ":info")
        replies = pipe.execute()
    found = []
    for index, name in enumerate(members):
        alive, raw = bool(replies[2 * index]), replies[2 * index + 1]
        try:
            state = str(json.loads(raw).get("scheduler_state") or "unknown") if raw else "unknown"
        except (ValueError, AttributeError):
            state = "unknown"
        found.append(WorkerHealth(name, alive, state))
    return found


def scheduler_problems(workers: list[WorkerHealth]) -> list[str]:
    """Why delayed retries and periodic resyncs might not fire: a live worker's scheduler stopped,
    or live workers but none of them running a scheduler."""
    live = [w for w in workers if w.alive]
    problems = [f"worker {w.name}: scheduler {w.scheduler}" for w in live if w.scheduler == "stopped"]
    if live and not any(w.scheduler == "running" for w in live):
        problems.append("no live worker runs a scheduler: delayed retries and periodic resyncs will not fire")
    return problems

"""Worker throughput (`python -m bench.worker_throughput`): `tickets worker` doing real jobs against RQ's workers doing nothing.

Each round, side by side on one private redis-server:

- `rq fork no-op`: RQ's forking `Worker` drains N no-op jobs (a fresh work horse per job, as plain `rq worker`);
- `rq simple no-op`: RQ's `SimpleWorker` drains N no-op jobs (no fork at all);
- `tickets worker` (the long-lived horse) and `tickets worker --concurrency 4` each drain N sync jobs of the
  memory system: fetch with comments, normalise, upsert into a fresh data directory (files fsynced, the catalog).

Every worker runs in a child forked from this process, so the memory system's tickets (filled here, in the
runtime the worker runs on) are in its memory. The time is RQ's own, from the first job's start to the last
job's end, the same for all (start-up and exit left out). The ratios compare the best round of each (the machine is shared; noise only slows).
`worker_figures()` returns the rows (name, value, baseline, ratio, goal) for the one-command bench table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis
import yaml
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.utils import utcparse

from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.model import Comment, TicketData
from data_manager.config import load_config
from service.runtime import Runtime
from tests.pipeline_support.processes import RedisServer
from workers.worker import WorkerMode, run_worker

AT = datetime(2026, 1, 1, tzinfo=UTC)
NOOP_QUEUE = "bench-noop"


def noop() -> None:
    """The baseline's job: nothing at all."""


@dataclass(frozen=True)
class Row:
    name: str
    value: float
    baseline: float
    ratio: float
    goal: str


def _in_child(work: Callable[[], None]) -> None:
    """Run `work` in a forked child, and wait for it."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work()
        except BaseException as exc:
            print(f"worker failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("a bench worker failed")


def _drain_seconds(connection: redis.Redis, queue_names: list[str], jobs: int) -> float:
    """From the first job's start to the last job's end (RQ's own timestamps): the worker's start-up and
    exit are left out, for every worker alike."""
    ids = [i for name in queue_names for i in Queue(name, connection=connection).finished_job_registry.get_job_ids()]
    if len(ids) != jobs:
        raise RuntimeError(f"{len(ids)} of {jobs} jobs finished")
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(Job.key_for(job_id), "started_at", "ended_at")
        stamps = pipe.execute()
    starts = [utcparse(s.decode()) for s, _ in stamps]
    ends = [utcparse(e.decode()) for _, e in stamps]
    return (max(ends) - min(starts)).total_seconds()


def _noop_rate(redis_url: str, jobs: int, worker_class: type[Worker] | type[SimpleWorker]) -> float:
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(NOOP_QUEUE, connection=connection)
    for start in range(0, jobs, 500):
        queue.enqueue_many([Queue.prepare_data(noop, result_ttl=3600) for _ in range(start, min(jobs, start + 500))])

    def drain() -> None:
        child = redis.Redis.from_url(redis_url)
        worker_class([Queue(NOOP_QUEUE, connection=child)], connection=child).work(burst=True, logging_level="WARNING")

    _in_child(drain)
    seconds = _drain_seconds(connection, [NOOP_QUEUE], jobs)
    connection.flushdb()
    return jobs / seconds


def _write_config(directory: Path, redis_url: str) -> Path:
    document = {
        "data_manager": {
            "data_path": str(directory / "data"),
            "sources": {"tickets": {"memory": {"enabled": True}}},
        },
        "redis": {"url": redis_url, "key_prefix": "bench"},
        "resync": {"interval_minutes": 0},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _fill_upstream(runtime: Runtime, count: int) -> list[str]:
    """`count` tickets (0-3 comments each) in the memory system the runtime's integrations share."""
    integration = runtime.integration("memory")
    assert isinstance(integration, InMemoryTickets)
    ids = []
    for n in range(count):
        ticket_id = integration.backend.create(
            TicketData(title=f"ticket {n}", description=f"Something is broken ({n}).\n" * 8)
        )
        for c in range(n % 4):
            integration.backend.add_comment(ticket_id, Comment(author="someone", text=f"comment {c} on {n}", at=AT))
        ids.append(ticket_id)
    return ids


def _ours_rate(workdir: Path, redis_url: str, jobs: int, concurrency: int) -> float:
    directory = Path(tempfile.mkdtemp(prefix="round-", dir=workdir))
    runtime = Runtime(load_config(_write_config(directory, redis_url)))
    ids = _fill_upstream(runtime, jobs)
    for ticket_id in ids:
        runtime.coalescer.submit("memory", ticket_id)

    def drain() -> None:  # in a child: it has the tickets, as the process that holds an in-memory system does
        run_worker(
            runtime,
            burst=True,
            with_scheduler=False,
            mode=WorkerMode.HORSE,
            concurrency=concurrency,
            logging_level="WARNING",
        )

    _in_child(drain)
    seconds = _drain_seconds(runtime.redis, list(runtime.names.queues), jobs)
    stored = runtime.persistence.count("memory")
    if stored != len(ids):
        raise RuntimeError(f"{stored} of {len(ids)} tickets stored")
    runtime.redis.flushdb()
    return len(ids) / seconds


def measure(
    redis_url: str, *, jobs: int = 2000, rounds: int = 3, echo: Callable[[str], None] = print
) -> dict[str, list[float]]:
    """Jobs per second of each worker, per round (rounds alternate the order of the four)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    runs: dict[str, Callable[[], float]] = {
        "rq fork no-op": lambda: _noop_rate(redis_url, jobs, Worker),
        "rq simple no-op": lambda: _noop_rate(redis_url, jobs, SimpleWorker),
        "tickets worker": lambda: _ours_rate(workdir, redis_url, jobs, 1),
        "tickets worker --concurrency 4": lambda: _ours_rate(workdir, redis_url, jobs, 4),
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    try:
        for round_no in range(rounds):
            order = list(runs) if round_no % 2 == 0 else list(reversed(runs))
            for name in order:
                rate = runs[name]()
                rates[name].append(rate)
                echo(f"round {round_no + 1}  {name:<32} {rate:8.1f} jobs/s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rates


def rows(rates: dict[str, list[float]]) -> list[Row]:
    best = {name: max(values) for name, values in rates.items()}
    fork, simple = best["rq fork no-op"], best["rq simple no-op"]
    table = []
    for ours in ("tickets worker", "tickets worker --concurrency 4"):
        table.append(Row(f"{ours} (real jobs/s) vs rq fork no-op", best[ours], fork, best[ours] / fork, ">= 2x"))
        table.append(
            Row(f"{ours} (real jobs/s) vs rq simple no-op", best[ours], simple, best[ours] / simple, ">= 0.6x")
        )
    return table


def worker_figures(redis_url: str | None = None, *, jobs: int = 2000, rounds: int = 3) -> list[Row]:
    """The figures as data for the one-command bench table (a private redis-server unless `redis_url`)."""
    server = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    if redis_url is None:
        server = RedisServer(workdir)
        redis_url = server.url
    try:
        return rows(measure(redis_url, jobs=jobs, rounds=rounds))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def format_table(table: list[Row]) -> str:
    lines = [
        f"| {'figure':<62} | {'jobs/s':>7} | {'baseline':>8} | {'ratio':>6} | {'goal':>7} |",
        f"|{'-' * 64}|{'-' * 9}|{'-' * 10}|{'-' * 8}|{'-' * 9}|",
    ]
    for row in table:
        lines.append(f"| {row.name:<62} | {row.value:7.1f} | {row.baseline:8.1f} | {row.ratio:5.2f}x | {row.goal:>7} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", help="use this Redis database (it is flushed) instead of a private server")
    args = parser.parse_args(argv)
    print(format_table(worker_figures(args.redis_url, jobs=args.jobs, rounds=args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

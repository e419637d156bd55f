"""The PostgreSQL store against the embedded one, side by side in one run (`python -m bench.store_postgres`).

Figures (each a ratio inside one run, the embedded store the baseline):
- upserts per second of NEW tickets (`--tickets`, 2,000), and of UNCHANGED ones (the same again). An unchanged
  upsert is one round trip to PostgreSQL against a local read on the embedded store, so that ratio is shown
  without a goal; the goal is on the store's own overhead: unchanged upserts against bare `SELECT 1` round
  trips on the same pool;
- a full resync of `--resync-tickets` (20,000) in-memory tickets into an empty store, inline at concurrency 4;
- peak memory (max RSS of a fresh process) of that resync at 20,000 against 2,000 tickets, per store: flat
  memory means the resync streams (goal <= 1.5).

The embedded store fsyncs (its default); PostgreSQL commits durably (its default `synchronous_commit`).
PostgreSQL is the machine's server (127.0.0.1:5432, or `--server URL`); each run uses throwaway databases.
`rows()` returns the figures as data for the one-command bench table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from data_manager.collectors.persistence import PersistenceService, UpsertOutcome
from data_manager.collectors.postgres import PostgresPersistence
from data_manager.collectors.store import TicketStore
from data_manager.collectors.tickets import TicketResource
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import InMemoryBackend
from data_manager.collectors.tickets.model import TicketData
from data_manager.collectors.tickets.resync import resync_system

SERVER_URL = os.environ.get("TICKETS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
STORES = ("file", "postgres")


@dataclass(frozen=True)
class Row:
    """One figure: `value` of the PostgreSQL store against `baseline` (the embedded store, same run)."""

    name: str
    value: float
    baseline: float
    ratio: float
    goal: str


@contextmanager
def _database() -> Iterator[str]:
    name = f"tickets_bench_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{SERVER_URL.rpartition('/')[0]}/{name}"
    try:
        store = PostgresPersistence(url)
        store.upgrade_schema()
        store.close()
        yield url
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def _store(kind: str) -> Iterator[tuple[TicketStore, str]]:
    """An empty store of `kind` and where it lives (a data directory or a database URL)."""
    if kind == "postgres":
        with _database() as url:
            store = PostgresPersistence(url)
            try:
                yield store, url
            finally:
                store.close()
        return
    with tempfile.TemporaryDirectory(prefix="bench-store-") as directory:
        file_store = PersistenceService(Path(directory) / "data")
        try:
            yield file_store, str(Path(directory) / "data")
        finally:
            file_store.close()


def _resource(n: int) -> TicketResource:
    return TicketResource(
        ticket_id=f"B-{n}",
        content=f"Title: ticket {n}\n\nDescription:\n" + "text " * 120,
        source_type="jira",
        metadata={"updated_at": "2024-05-01T10:00:00+00:00", "url": f"https://jira/browse/B-{n}"},
    )


def upserts_per_second(kind: str, tickets: int) -> tuple[float, float]:
    """(new, unchanged) upserts per second into an empty store of `kind`."""
    resources = [_resource(n) for n in range(tickets)]
    with _store(kind) as (store, _):
        started = time.perf_counter()
        for item in resources:
            assert store.upsert(item) is UpsertOutcome.WRITTEN
        new = tickets / (time.perf_counter() - started)
        started = time.perf_counter()
        for item in resources:
            assert store.upsert(item) is UpsertOutcome.UNCHANGED
        unchanged = tickets / (time.perf_counter() - started)
    return new, unchanged


def round_trips_per_second(tickets: int) -> tuple[float, float]:
    """(unchanged upserts/s, bare `SELECT 1`/s) on one pooled connection: what the store adds to a round trip."""
    resources = [_resource(n) for n in range(tickets)]
    with _store("postgres") as (store, _):
        assert isinstance(store, PostgresPersistence)
        store.upsert_many([(item, None) for item in resources])
        started = time.perf_counter()
        for item in resources:
            store.upsert(item)
        unchanged = tickets / (time.perf_counter() - started)
        with store.pool.pool().connection() as conn:
            started = time.perf_counter()
            for _ in range(tickets):
                conn.execute("SELECT 1").fetchone()
            bare = tickets / (time.perf_counter() - started)
    return unchanged, bare


def _open(kind: str, location: str) -> TicketStore:
    return PostgresPersistence(location) if kind == "postgres" else PersistenceService(Path(location))


def resync_child(kind: str, location: str, tickets: int) -> dict[str, float]:
    """In a fresh process: a full resync of `tickets` memory tickets; its seconds and peak RSS (MiB)."""
    backend = InMemoryBackend()
    for n in range(tickets):
        backend.create(TicketData(title=f"ticket {n}", description="text " * 60, requester="bob"))
    integration = InMemoryTickets(backend)
    integration.apply_settings(integration.config_schema().load({"enabled": True}), name="memory")
    store = _open(kind, location)
    started = time.perf_counter()
    summary = resync_system(integration, store, full=True, use_cursor=False, concurrency=4)
    seconds = time.perf_counter() - started
    written = store.count("memory")
    store.close()
    if written != tickets or summary.failed:
        raise RuntimeError(f"{kind}: resync stored {written} of {tickets} ({summary.as_dict()})")
    return {"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def resync(kind: str, tickets: int) -> dict[str, float]:
    """`resync_child` in a fresh process, into a fresh store of `kind`."""
    with _store(kind) as (store, location):
        store.close()
        out = subprocess.run(
            [sys.executable, "-m", "bench.store_postgres", "--child", kind, location, str(tickets)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def rows(
    *, tickets: int = 2000, resync_tickets: int = 20000, rounds: int = 2, log: Callable[[str], None] = print
) -> list[Row]:
    """Measure everything (stores alternated, best round of each) and return the figures as data."""
    best: dict[tuple[str, str], float] = {}

    def keep(kind: str, figure: str, value: float, higher_is_better: bool = True) -> None:
        old = best.get((kind, figure))
        if old is None or (value > old if higher_is_better else value < old):
            best[(kind, figure)] = value

    for round_ in range(1, rounds + 1):
        for kind in STORES if round_ % 2 else reversed(STORES):
            new, unchanged = upserts_per_second(kind, tickets)
            log(f"round {round_} {kind:8} upserts/s: new {new:8.0f}  unchanged {unchanged:8.0f}")
            keep(kind, "new", new)
            keep(kind, "unchanged", unchanged)
        unchanged, bare = round_trips_per_second(tickets)
        log(f"round {round_} postgres unchanged upserts/s {unchanged:8.0f}  bare SELECT 1/s {bare:8.0f}")
        keep("postgres", "rt_unchanged", unchanged)
        keep("postgres", "rt_bare", bare)
    memory_small: dict[str, float] = {}
    for kind in STORES:
        large = resync(kind, resync_tickets)
        small = resync(kind, resync_tickets // 10)
        log(
            f"{kind:8} full resync of {resync_tickets}: {large['seconds']:.1f}s, peak {large['peak_mib']:.0f} MiB; "
            f"of {resync_tickets // 10}: {small['seconds']:.1f}s, peak {small['peak_mib']:.0f} MiB"
        )
        keep(kind, "resync", large["seconds"], higher_is_better=False)
        keep(kind, "peak_large", large["peak_mib"])
        memory_small[kind] = small["peak_mib"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2) if b else 0.0

    found = [
        Row(
            "postgres upserts/s, new tickets",
            best["postgres", "new"],
            best["file", "new"],
            ratio(best["postgres", "new"], best["file", "new"]),
            ">= 0.5",
        ),
        Row(
            "postgres upserts/s, unchanged tickets",
            best["postgres", "unchanged"],
            best["file", "unchanged"],
            ratio(best["postgres", "unchanged"], best["file", "unchanged"]),
            "none",  # a network round trip against a read of a local SQLite file: shown, not a target
        ),
        Row(
            "postgres unchanged upserts/s vs bare SELECT 1/s (same pool)",
            best["postgres", "rt_unchanged"],
            best["postgres", "rt_bare"],
            ratio(best["postgres", "rt_unchanged"], best["postgres", "rt_bare"]),
            ">= 0.5",
        ),
        Row(
            f"postgres full resync of {resync_tickets} (s, lower is better)",
            best["postgres", "resync"],
            best["file", "resync"],
            ratio(best["postgres", "resync"], best["file", "resync"]),
            "<= 2",
        ),
    ]
    for kind in STORES:
        found.append(
            Row(
                f"{kind} peak memory, resync {resync_tickets} / {resync_tickets // 10} (MiB)",
                best[kind, "peak_large"],
                memory_small[kind],
                ratio(best[kind, "peak_large"], memory_small[kind]),
                "<= 1.5",
            )
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--resync-tickets", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "LOCATION", "TICKETS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, location, tickets = args.child
        print(json.dumps(resync_child(kind, location, int(tickets))))
        return 0
    found = rows(tickets=args.tickets, resync_tickets=args.resync_tickets, rounds=args.rounds)
    if args.json:
        print(json.dumps([asdict(r) for r in found], indent=2))
        return 0
    print(f"| {'figure':<56} | {'value':>9} | {'baseline':>9} | {'ratio':>6} | {'goal':>7} |")
    print(f"|{'-' * 58}|{'-' * 11}|{'-' * 11}|{'-' * 8}|{'-' * 9}|")
    for r in found:
        print(f"| {r.name:<56} | {r.value:>9.1f} | {r.baseline:>9.1f} | {r.ratio:>6.2f} | {r.goal:>7} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

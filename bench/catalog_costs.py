"""The embedded store's costs as ratios measured in one run (issue #16).

    .venv/bin/python -m bench.catalog_costs [--jobs 5000] [--tickets 200] [--issues 200] [--latency-ms 20]

1. Per-job catalog cost under a forking worker: like RQ's work horse, each job is a fresh fork of a
   parent that holds the runtime, does one `upsert` (its first catalog use opens the process's own
   connection, so a WAL recovery would show here) and leaves with `os._exit`. Two parents: one that
   keeps the catalog open (`tickets worker` does, see `Runtime.prepare_for_jobs`) and one that holds
   nothing (any other forking worker). The figure is the median upsert time of jobs 50-149 against
   that of jobs 4,901-5,000 (goal: <= 1.1), measured alternately on two stores so that the machine's
   load changes both alike; the WAL's size at the end is shown beside it.
   Files are not fsynced here (`--fsync` to include them): their cost is per job and constant, and on
   a shared disk it only adds noise.
2. Resync time of `--issues` Jira issues (the real client, the real resync, a real data directory)
   against a fake Jira in another process that answers every request after `--latency-ms`, at
   concurrency 1 and 8, alternated, best of two each (goal: >= 4x faster at 8).
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import TicketResource
from data_manager.collectors.tickets.integrations.jira import JiraTickets
from data_manager.collectors.tickets.resync import resync_system
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME

ROOT = Path(__file__).resolve().parents[1]


def forked_upsert(store: PersistenceService, n: int, tickets: int) -> float:
    """One job in a fresh fork: seconds its upsert took (connection open included)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 1
        try:
            resource = TicketResource(ticket_id=str(n % tickets), content=f"job {n}\n" * 40, source_type="bench")
            started = time.perf_counter()
            store.upsert(resource)
            os.write(write, struct.pack("d", time.perf_counter() - started))
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    data = os.read(read, 8)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(data) != 8:
        raise RuntimeError(f"job {n} failed")
    return struct.unpack("d", data)[0]


def per_job_cost(jobs: int, tickets: int, *, parent_holds: bool, fsync: bool) -> tuple[float, float, int]:
    """(median ms of jobs 50-149, median ms of the last 100 of `jobs`, WAL bytes at the end).

    Two stores side by side: one is taken to job `jobs - 100` first, then jobs on the two alternate,
    so both medians are measured in the same minutes and a change in the machine's load cancels out.
    With at most 50 tickets every measured job replaces a stored ticket in both stores.
    """
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        young = PersistenceService(Path(tmp) / "young", fsync=fsync)
        old = PersistenceService(Path(tmp) / "old", fsync=fsync)
        if not parent_holds:  # the parent keeps no connection: every job process is the first opener
            young.close()
            old.close()
        for n in range(50):
            forked_upsert(young, n, tickets)
        for n in range(jobs - 100):
            forked_upsert(old, n, tickets)
        early, late = [], []
        for i in range(100):
            early.append(forked_upsert(young, 50 + i, tickets))
            late.append(forked_upsert(old, jobs - 100 + i, tickets))
        wal = old.catalog.wal_size()
    return statistics.median(early) * 1000, statistics.median(late) * 1000, wal


def start_slow_jira(issues: int, latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.slow_jira", "--issues", str(issues), "--latency-ms", str(latency_ms)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("JIRA_URL="):
        proc.kill()
        raise RuntimeError(f"slow Jira did not start: {line!r}")
    return proc, line.partition("=")[2]


def resync_seconds(url: str, concurrency: int) -> tuple[float, int]:
    """A full resync into a fresh data directory: (seconds, tickets written)."""
    with tempfile.TemporaryDirectory(prefix="bench-resync-") as tmp:
        store = PersistenceService(Path(tmp) / "data")
        jira = JiraTickets(url, DEFAULT_USERNAME, DEFAULT_TOKEN, "project = PROJ", deployment="cloud")
        started = time.perf_counter()
        summary = resync_system(jira, store, full=True, concurrency=concurrency)
        elapsed = time.perf_counter() - started
        if not summary.ok:
            raise RuntimeError(f"resync failed: {summary.error} {summary.failures[:3]}")
        return elapsed, summary.written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--tickets", type=int, default=50, help="distinct tickets the jobs write (at most 50)")
    parser.add_argument("--fsync", action="store_true", help="fsync the files in the per-job figure too")
    parser.add_argument("--issues", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--skip-jobs", action="store_true")
    parser.add_argument("--skip-resync", action="store_true")
    args = parser.parse_args(argv)
    if args.jobs < 250:
        parser.error("--jobs must be at least 250 (job 100 and the last 100 jobs are compared)")
    if not 1 <= args.tickets <= 50:
        parser.error("--tickets must be 1-50, so every measured job replaces a stored ticket (none creates one)")

    rows: list[tuple[str, str, str, str]] = []
    if not args.skip_jobs:
        for holds, label in ((True, "worker holds the catalog"), (False, "no process holds it")):
            started = time.perf_counter()
            early, late, wal = per_job_cost(args.jobs, args.tickets, parent_holds=holds, fsync=args.fsync)
            print(
                f"per-job upsert, {label}: job ~100 {early:.2f} ms, last 100 {late:.2f} ms, "
                f"WAL {wal / 1024:.0f} KiB ({time.perf_counter() - started:.0f}s)",
                flush=True,
            )
            rows.append(
                (
                    f"catalog cost per job, job {args.jobs} / job 100 ({label})",
                    f"{late / early:.2f}",
                    "<= 1.1",
                    f"WAL {wal / 1024:.0f} KiB",
                )
            )
    if not args.skip_resync:
        proc, url = start_slow_jira(args.issues, args.latency_ms)
        try:
            measured: dict[int, float] = {}
            for concurrency in (8, 1, 8, 1):  # alternated, best of two each: load drift hits both alike
                seconds, written = resync_seconds(url, concurrency)
                measured[concurrency] = min(seconds, measured.get(concurrency, seconds))
                print(
                    f"full resync of {written} issues at {args.latency_ms:.0f} ms/request, concurrency {concurrency}: {seconds:.2f}s",
                    flush=True,
                )
            rows.append(
                (
                    f"resync at {args.latency_ms:.0f} ms/request, concurrency 1 / 8 (time)",
                    f"{measured[1] / measured[8]:.2f}x",
                    ">= 4x",
                    f"{measured[1]:.1f}s vs {measured[8]:.1f}s",
                )
            )
        finally:
            proc.terminate()
            proc.wait(10)

    print()
    print(f"| {'figure':<68} | {'ratio':>6} | {'goal':>6} | {'detail':<20} |")
    print(f"|{'-' * 70}|{'-' * 8}|{'-' * 8}|{'-' * 22}|")
    for figure, ratio, goal, detail in rows:
        print(f"| {figure:<68} | {ratio:>6} | {goal:>6} | {detail:<20} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

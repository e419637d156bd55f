"""A full resync of 2,000 and 20,000 in-memory tickets (zero-latency upstream): cost per ticket and peak memory.

    python -m bench.memory_resync [--small 2000] [--large 20000] [--rounds 1] [--top 0]

Each measurement runs in a fresh interpreter that first builds the upstream (an `InMemoryBackend`
with every ticket and three comments each) and imports what the resync needs, then measures:

- time: a full resync into an empty data directory (files fsynced, the SQLite catalog), in ms per
  new ticket, and an unchanged re-run right after it (the same-run baseline: listing, fetching and
  comparing without writing);
- memory: the process's peak resident size during that first resync, sampled every 5 ms, less the
  upstream's own memory (the resident size its tickets added when they were built). Peak memory
  should hardly grow with the number of tickets: goal 20,000 / 2,000 <= 1.2. What the resync
  itself added (peak minus the size just before it) is shown beside it.

`--top N` instead reruns the large case under tracemalloc and prints the N source lines whose
allocations were largest at the peak (to find what grows).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.table import Row, format_table, ratio
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import resync as resync_module
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import InMemoryBackend
from data_manager.collectors.tickets.model import Comment, TicketData
from data_manager.collectors.tickets.resync import resync_system

PAGE = os.sysconf("SC_PAGE_SIZE")
MEMORY_GOAL = "<= 1.2"
COST_GOAL_MS = 1.0


def upstream(count: int) -> InMemoryTickets:
    clock = [datetime(2024, 1, 1, tzinfo=UTC)]
    backend = InMemoryBackend(clock=lambda: clock[0])
    for i in range(count):
        clock[0] += timedelta(seconds=1)
        ticket_id = backend.create(
            TicketData(title=f"Ticket {i}: login fails", description=f"Steps to reproduce #{i}.\n" * 4, assignee="ann")
        )
        for j in range(3):
            backend.add_comment(ticket_id, Comment("bob", f"Comment {j} on ticket {i}. " * 3, clock[0]))
    return InMemoryTickets(backend)


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class PeakSampler:
    """The largest resident size seen while inside (sampled every 5 ms)."""

    def __enter__(self) -> PeakSampler:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def child(count: int, top: int, scratch: str) -> dict[str, float]:
    """Runs in a fresh interpreter: one full resync of `count` new tickets, then an unchanged one.

    Its data directory is left in `scratch` for the parent to remove after the last measurement: on a
    file system that scans recently freed inodes when it allocates one (ext4 without a journal, as on
    this bench's machines), deleting thousands of files would slow the next measurement's creates.
    """
    gc.collect()
    bare = rss()
    integration = upstream(count)
    gc.collect()
    upstream_bytes = rss() - bare
    tmp = tempfile.mkdtemp(prefix=f"resync-{count}-", dir=scratch)  # outlives this process (see above)
    persistence = PersistenceService(Path(tmp))
    resync_system(upstream(1), PersistenceService(Path(tmp) / "warm"), full=True)  # imports, first-use caches
    gc.collect()
    snapshots: list[tracemalloc.Snapshot] = []
    if top:  # look at what is alive when the listing has ended, before the stored ids are read
        finish = resync_module.finish_plan

        def finish_plan(*args: Any, **kwargs: Any) -> None:
            snapshots.append(tracemalloc.take_snapshot())
            finish(*args, **kwargs)

        resync_module.finish_plan = finish_plan  # type: ignore[assignment]
        tracemalloc.start(8)
    before = rss()
    started = time.perf_counter()
    with PeakSampler() as sampler:
        summary = resync_system(integration, persistence, full=True)
    first = time.perf_counter() - started
    if top:
        peak = tracemalloc.get_traced_memory()[1]
        print(f"tracemalloc peak {peak / 2**20:.1f} MiB; largest live allocations when the listing ended:")
        for stat in snapshots[0].statistics("traceback")[:top]:
            print(f"  {stat.size / 2**20:7.2f} MiB {stat.count:7d} blocks")
            for line in stat.traceback.format(limit=4):
                print("     ", line)
        tracemalloc.stop()
    assert summary.ok and summary.written == count, summary
    started = time.perf_counter()
    again = resync_system(integration, persistence, full=True)
    unchanged = time.perf_counter() - started
    assert again.ok and again.unchanged == count, again
    persistence.close()
    return {
        "first": first,
        "unchanged": unchanged,
        "peak": sampler.peak - upstream_bytes,  # the whole process at its peak, less the upstream's tickets
        "growth": sampler.peak - before,  # what the resync itself added
    }


def measure(count: int, scratch: str, top: int = 0) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory_resync", "--child", str(count), "--top", str(top), "--scratch", scratch],
        capture_output=not top,
        text=True,
        check=True,
    )
    if top:
        return {}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def compare(small: int, large: int, rounds: int, *, say: Any = print) -> list[Row]:
    results: dict[int, list[dict[str, float]]] = {small: [], large: []}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        for n in range(rounds):
            for count in (small, large) if n % 2 == 0 else (large, small):
                result = measure(count, scratch)
                results[count].append(result)
                say(
                    f"{count} tickets: {1000 * result['first'] / count:.2f} ms per new ticket, "
                    f"{1000 * result['unchanged'] / count:.2f} ms per unchanged ticket, peak "
                    f"{result['peak'] / 2**20:.1f} MiB net of the upstream (the resync added {result['growth'] / 2**20:.1f} MiB)"
                )

    def best(count: int, key: str) -> float:
        return min(result[key] for result in results[count])

    rows = []
    for count in (small, large):
        new_ms, unchanged_ms = 1000 * best(count, "first") / count, 1000 * best(count, "unchanged") / count
        rows.append(
            Row(
                f"memory resync cost per new ticket ({count:,}) / per unchanged ticket",
                f"{new_ms:.2f} ms",
                f"{unchanged_ms:.2f} ms",
                ratio(new_ms, unchanged_ms),
                f"<= {COST_GOAL_MS:g} ms per new ticket",
                "the goal is on ours (files fsynced, group commit)",
                new_ms,
            )
        )
    peak_small, peak_large = best(small, "peak"), best(large, "peak")
    rows.append(
        Row(
            f"memory resync peak memory, {large:,} / {small:,} tickets (net of the upstream)",
            f"{peak_large / 2**20:.1f} MiB",
            f"{peak_small / 2**20:.1f} MiB",
            ratio(peak_large, peak_small),
            MEMORY_GOAL,
            f"the resync itself added {best(large, 'growth') / 2**20:.1f} vs {best(small, 'growth') / 2**20:.1f} MiB",
        )
    )
    return rows


def rows(quick: bool = False) -> list[Row]:
    """For `python -m bench`: 2,000 vs 20,000 tickets (quick: 500 vs 5,000)."""
    return compare(500 if quick else 2000, 5000 if quick else 20000, 1, say=lambda text: print(text, file=sys.stderr))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--top", type=int, default=0, help="show the N largest allocations of the large run")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.top, args.scratch or tempfile.mkdtemp(prefix="bench-memory-"))))
        return 0
    if args.top:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
            measure(args.large, scratch, args.top)
        return 0
    print(format_table(compare(args.small, args.large, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

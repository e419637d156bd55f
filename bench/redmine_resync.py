"""A full resync of a real Redmine with the default config against its floor: the same requests over 8 keep-alive threads.

    python -m bench.redmine_resync [--issues 250] [--rounds 3] [--concurrency N] [--keep | --project ID]

Uses REDMINE_URL / REDMINE_API_KEY, else ../shared/redmine/start-redmine. Creates its own private project
(deleted afterwards unless --keep; `--project` reuses a kept one) with `--issues` issues and two notes on
each. Each round runs, in alternating order:

- ours: `resync_system(..., full=True)` of the project into an empty data directory (files fsynced,
  the SQLite catalog), with the integration built from config defaults (so `resync_concurrency` is the
  default one unless `--concurrency`), every request recorded;
- the floor: exactly the requests ours sent (the same URLs, listing pages and credential checks
  included), replayed over 8 threads with keep-alive sessions, each body read and nothing else done.

Prints each round and the ratio ours / floor (median of the rounds; goal <= 1.1). Then an incremental
resync after one change, for its request count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.table import Row, ratio
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integrations.redmine import API_KEY_HEADER, RedmineTickets
from data_manager.collectors.tickets.resync import ResyncSummary, resync_system
from tests.integrations.redmine.redmine_server import (
    RedmineAdmin,
    RedmineServer,
    locate_server,
    wait_for_next_second,
)

FLOOR_THREADS = 8
GOAL = "<= 1.1"
FIGURE = "Redmine full resync, default config / same requests over 8 keep-alive threads"


def integration(server: RedmineServer, project: str, concurrency: int | None) -> RedmineTickets:
    settings: dict[str, Any] = {"base_url": server.url, "api_key": server.api_key, "project_id": project}
    if concurrency:
        settings["resync_concurrency"] = concurrency
    return RedmineTickets.from_config(settings)


def ours(
    server: RedmineServer, project: str, concurrency: int | None, data_dir: Path
) -> tuple[float, list[str], ResyncSummary]:
    """One full resync into `data_dir`; (seconds, every URL requested, summary)."""
    redmine = integration(server, project, concurrency)
    urls: list[str] = []
    lock = threading.Lock()

    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with lock:
            urls.append(str(response.request.url))

    redmine.client.session.hooks["response"].append(record)
    persistence = PersistenceService(data_dir)
    started = time.perf_counter()
    summary = resync_system(redmine, persistence, full=True)
    elapsed = time.perf_counter() - started
    persistence.close()
    redmine.close()
    if not summary.ok:
        raise RuntimeError(f"the resync failed: {summary.error or summary.failures[:3]}")
    return elapsed, urls, summary


def floor(server: RedmineServer, urls: Sequence[str], threads: int = FLOOR_THREADS) -> float:
    """The same GETs over `threads` keep-alive sessions, bodies read, nothing else done; seconds."""
    local = threading.local()

    def get(url: str) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers[API_KEY_HEADER] = server.api_key
            session.headers["Accept"] = "application/json"
        response = session.get(url, timeout=30)
        response.raise_for_status()
        return len(response.content)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(get, urls))
    return time.perf_counter() - started


def compare(
    server: RedmineServer, project: str, rounds: int, concurrency: int | None, *, say: Any = print
) -> tuple[list[float], list[float], int]:
    """(ours' seconds, floor seconds, requests) over `rounds` rounds in alternating order."""
    ours_seconds: list[float] = []
    floor_seconds: list[float] = []
    requests_sent = 0
    for n in range(rounds):
        with tempfile.TemporaryDirectory(prefix="bench-redmine-") as tmp:
            order = ("ours", "floor") if n % 2 == 0 else ("floor", "ours")
            urls: list[str] = []
            if order[0] == "floor":  # the floor needs the URLs: list them with a throwaway resync first
                _, urls, _ = ours(server, project, concurrency, Path(tmp) / "warm")
            for which in order:
                if which == "ours":
                    seconds, urls, summary = ours(server, project, concurrency, Path(tmp) / "data")
                    ours_seconds.append(seconds)
                    requests_sent = len(urls)
                    say(f"round {n + 1} ours: {seconds:.2f}s, {len(urls)} requests, {summary.written} tickets written")
                else:
                    seconds = floor(server, urls)
                    floor_seconds.append(seconds)
                    say(f"round {n + 1} floor: {seconds:.2f}s, {len(urls)} requests over {FLOOR_THREADS} threads")
    return ours_seconds, floor_seconds, requests_sent


def setup(server: RedmineServer, admin: RedmineAdmin, issues: int) -> str:
    project = admin.create_project("bench-resync")
    started = time.perf_counter()
    ids = admin.create_issues(project["identifier"], issues, prefix="bench")
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda n: [admin.update_issue(n, notes=f"note {k} on #{n}") for k in (1, 2)], ids))
    print(f"setup: {len(ids)} issues with 2 notes each in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return str(project["identifier"])


def rows(quick: bool = False) -> list[Row]:
    """For `python -m bench`: the ratio on a fresh project (250 issues, 3 rounds; quick: 60 issues, 2 rounds).

    BENCH_REDMINE_PROJECT names a project kept by `--keep` to use instead (no setup, not deleted).
    """
    server = locate_server()
    if isinstance(server, str):
        return [Row.skipped(FIGURE, GOAL, server)]
    admin = RedmineAdmin(server)
    kept = os.environ.get("BENCH_REDMINE_PROJECT")
    project = kept or setup(server, admin, 60 if quick else 250)
    try:
        ours_s, floor_s, sent = compare(
            server, project, 2 if quick else 3, None, say=lambda text: print(text, file=sys.stderr)
        )
    finally:
        if not kept:
            admin.delete_project(project)
    ratios = [ratio(o, f) for o, f in zip(ours_s, floor_s, strict=True)]
    return [
        Row(
            FIGURE,
            f"{statistics.median(ours_s):.2f}s",
            f"{statistics.median(floor_s):.2f}s",
            statistics.median(ratios),
            GOAL,
            f"{sent} requests; rounds {', '.join(f'{r:.2f}' for r in ratios)}",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=None, help="override resync_concurrency (default: config)")
    parser.add_argument("--keep", action="store_true", help="keep the project afterwards")
    parser.add_argument("--project", help="reuse a project kept by --keep (no setup)")
    args = parser.parse_args(argv)

    server = locate_server()
    if isinstance(server, str):
        print(server, file=sys.stderr)
        return 2
    admin = RedmineAdmin(server)
    project = args.project or setup(server, admin, args.issues)
    try:
        ours_s, floor_s, _ = compare(server, project, args.rounds, args.concurrency)
        ratios = [ratio(o, f) for o, f in zip(ours_s, floor_s, strict=True)]
        print(
            f"full resync / floor: median {statistics.median(ratios):.2f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}; goal {GOAL})"
        )

        with tempfile.TemporaryDirectory(prefix="bench-redmine-") as tmp:
            redmine = integration(server, project, args.concurrency)
            persistence = PersistenceService(Path(tmp))
            resync_system(redmine, persistence, full=True)
            wait_for_next_second()
            wait_for_next_second()  # Redmine's ">= T" reaches one second back: keep the full run out
            mark = datetime.now(UTC)
            changed = next(iter(persistence.ticket_ids(redmine.name)))
            admin.update_issue(int(changed), notes="the one change")
            before = redmine.client.request_count
            started = time.perf_counter()
            summary = resync_system(redmine, persistence, since=mark)
            print(
                f"incremental resync after one change: {time.perf_counter() - started:.2f}s, "
                f"{redmine.client.request_count - before} requests, {summary.written} written"
            )
            persistence.close()
    finally:
        if not args.keep and not args.project:
            admin.delete_project(project)
    if args.keep:
        print(f"kept project {project} (reuse with --project {project})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

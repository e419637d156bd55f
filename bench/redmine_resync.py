"""Measure a Redmine resync against a real server: a full listing + fetch, then an incremental one after one change.

    /work/main/.venv/bin/python -m bench.redmine_resync [--issues 300] [--concurrency 4] [--keep]

Uses REDMINE_URL / REDMINE_API_KEY, else ../shared/redmine/start-redmine. Creates its own private project
(deleted afterwards unless --keep) with `--issues` issues and two notes on each, then prints one line per
measurement: wall time, HTTP requests (`ApiClient.request_count`), tickets and comments seen.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from data_manager.collectors.tickets.integrations.redmine import RedmineTickets
from tests.integrations.redmine.redmine_server import RedmineAdmin, locate_server, wait_for_next_second


def resync(redmine: RedmineTickets, since: datetime | None, concurrency: int) -> tuple[float, int, int, int]:
    """List what changed since `since`, fetch each ticket; (seconds, requests, tickets, comments)."""
    before = redmine.client.request_count
    started = time.perf_counter()
    refs = list(redmine.iter_changed(since))
    with ThreadPoolExecutor(concurrency) as pool:
        snapshots = list(pool.map(lambda ref: redmine.fetch(ref.ticket_id), refs))
    elapsed = time.perf_counter() - started
    return elapsed, redmine.client.request_count - before, len(snapshots), sum(len(s.comments) for s in snapshots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the project afterwards")
    args = parser.parse_args(argv)

    server = locate_server()
    if isinstance(server, str):
        print(server, file=sys.stderr)
        return 2
    admin = RedmineAdmin(server)
    project = admin.create_project("bench-resync")
    try:
        started = time.perf_counter()
        ids = admin.create_issues(project["identifier"], args.issues, prefix="bench")
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda n: [admin.update_issue(n, notes=f"note {k} on #{n}") for k in (1, 2)], ids))
        print(f"setup: {len(ids)} issues with 2 notes each in {time.perf_counter() - started:.1f}s")
        wait_for_next_second()
        wait_for_next_second()  # Redmine's ">= T" reaches one second back: keep setup out of the incremental run

        for concurrency in (1, args.concurrency):
            redmine = RedmineTickets(server.url, server.api_key, project["identifier"])
            run_started = datetime.now(UTC)
            seconds, requests, tickets, comments = resync(redmine, None, concurrency)
            print(f"full resync, concurrency {concurrency}: {seconds:.2f}s, {requests} requests, ", end="")
            print(f"{tickets} tickets, {comments} comments")

        wait_for_next_second()
        wait_for_next_second()
        admin.update_issue(ids[len(ids) // 2], notes="the one change")
        seconds, requests, tickets, comments = resync(redmine, run_started, args.concurrency)
        print(
            f"incremental resync after one change: {seconds:.2f}s, {requests} requests, {tickets} tickets, {comments} comments"
        )
    finally:
        if not args.keep:
            admin.delete_project(project["identifier"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

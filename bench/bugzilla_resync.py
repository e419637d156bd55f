"""A full Bugzilla resync of 1,000 fake bugs: batched (ours) against two requests per bug, as ratios.

    .venv/bin/python -m bench.bugzilla_resync [--bugs 1000] [--comments 3] [--concurrency 4]

Both ways run in this process against the same fake Bugzilla over loopback HTTP
(tests/integrations/bugzilla/fake_server.py) and produce the same snapshots:

* batched: `BugzillaBackend.changed_snapshots(None)` (behind `iter_changed`): pages of full bugs by id,
  the comments of each page in one request; the listing hands each bug over complete (`TicketRef.snapshot`);
* per bug (the baseline): a slim id listing, then `GET /rest/bug/N` and `GET /rest/bug/N/comment` for
  each bug, `--concurrency` at a time (the pipeline's default resync concurrency).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.table import Row
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.integrations.bugzilla import BugzillaBackend, mapping
from tests.integrations.bugzilla.fake_server import ADMIN_KEY, start_fake_bugzilla


def batched(backend: BugzillaBackend) -> list[TicketSnapshot]:
    """What `iter_changed(None)` hands the resync: complete bugs, no fetch per bug."""
    found = list(backend.changed_snapshots(None))
    return [snapshot or backend.fetch(bug_id) for bug_id, _, snapshot in found]


def per_bug(backend: BugzillaBackend, concurrency: int) -> list[TicketSnapshot]:
    ids: list[str] = []
    after = 0
    while True:
        params = [("order", "bug_id"), ("limit", 500), ("include_fields", "id,last_change_time")]
        params += [("f1", "bug_id"), ("o1", "greaterthan"), ("v1", after)]
        page = backend.client.call("GET", "rest/bug", params=params)["bugs"]
        ids += [str(bug["id"]) for bug in page]
        if len(page) < 500:
            break
        after = int(page[-1]["id"])

    def one(bug_id: str) -> TicketSnapshot:
        bug = backend.client.call("GET", f"rest/bug/{bug_id}")["bugs"][0]
        comments = backend.client.call("GET", f"rest/bug/{bug_id}/comment")["bugs"][bug_id]["comments"]
        return mapping.snapshot(bug, comments, base_url=backend.base_url)

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, ids))


def measure(
    label: str, backend: BugzillaBackend, run: Callable[[], list[TicketSnapshot]]
) -> tuple[float, int, list[TicketSnapshot]]:
    before = backend.request_count
    started = time.perf_counter()
    snapshots = run()
    elapsed = time.perf_counter() - started
    requests = backend.request_count - before
    print(f"{label:>9}: {len(snapshots)} bugs, {requests} requests, {elapsed:.2f}s", file=sys.stderr)
    return elapsed, requests, snapshots


GOAL = "<= 0.2"


def rows(quick: bool = False) -> list[Row]:
    """For `python -m bench`: 1,000 bugs with 3 comments each (quick: 200)."""
    bugs = 200 if quick else 1000
    with start_fake_bugzilla() as server:
        server.fake.seed(bugs, comments=3)
        backend = BugzillaBackend(base_url=server.url, api_key=ADMIN_KEY)
        try:
            base_time, base_requests, _ = measure("per bug", backend, lambda: per_bug(backend, 4))
            our_time, our_requests, ours = measure("batched", backend, lambda: batched(backend))
        finally:
            backend.close()
    return [
        Row(
            f"Bugzilla full listing of {bugs:,} bugs with comments: requests per bug (per bug as baseline)",
            f"{our_requests} requests",
            f"{base_requests} requests",
            our_requests / max(1, len(ours)),
            GOAL,
            f"ratio = requests per bug; time {our_time:.1f}s vs {base_time:.1f}s",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bugs", type=int, default=1000)
    parser.add_argument("--comments", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    with start_fake_bugzilla() as server:
        server.fake.seed(args.bugs, comments=args.comments)
        backend = BugzillaBackend(base_url=server.url, api_key=ADMIN_KEY)
        try:
            base_time, base_requests, base_snapshots = measure(
                "per bug", backend, lambda: per_bug(backend, args.concurrency)
            )
            our_time, our_requests, our_snapshots = measure("batched", backend, lambda: batched(backend))
        finally:
            backend.close()
    if sorted(s.ticket_id for s in base_snapshots) != sorted(s.ticket_id for s in our_snapshots):
        print("the two ways saw different bugs", file=sys.stderr)
        return 1
    print(
        f"ratio (per bug / batched): requests {base_requests / our_requests:.1f}x fewer, "
        f"time {base_time / our_time:.1f}x faster"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

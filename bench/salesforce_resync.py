"""Full resync of 1,000 fake Salesforce Cases: SOQL pages with the CaseComments subquery vs one request per Case.

    .venv/bin/python -m bench.salesforce_resync [--cases 1000] [--page-size 2000] [--concurrency 4]

Both ways run in the same process against the same fake Salesforce (tests/integrations/salesforce/
fake_server.py, real HTTP on loopback) and end with every Case and all its public comments in hand:

* listing: `iter_changed(None)`, whose query pages already hold each Case with its comments;
* baseline: the same listing for the ids only, then `fetch(id)` for every Case (one query each),
  the way a system without child subqueries is resynced.

Prints requests and seconds for each, and the ratios (baseline / listing).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.table import Row
from data_manager.collectors.tickets.integrations.salesforce import SalesforceBackend
from tests.integrations.salesforce.fake_server import STATIC_TOKEN, start_fake_salesforce

GOAL = "<= 0.2"


def measure(cases: int, page_size: int = 2000, concurrency: int = 4) -> dict[str, tuple[int, float, int]]:
    """label -> (requests, seconds, comments): the listing with its subquery, and one request per case."""
    with start_fake_salesforce(cases=cases) as server:
        listing = SalesforceBackend(instance_url=server.url, access_token=STATIC_TOKEN, page_size=page_size)
        started = time.perf_counter()
        refs = list(listing.iter_changed(None))
        snapshots = [ref.snapshot or listing.fetch(ref.ticket_id) for ref in refs]
        listed = (listing.request_count, time.perf_counter() - started, sum(len(s.comments) for s in snapshots))

        baseline = SalesforceBackend(instance_url=server.url, access_token=STATIC_TOKEN, page_size=page_size)
        started = time.perf_counter()
        ids = [ref.ticket_id for ref in baseline.iter_changed(None)]
        with ThreadPoolExecutor(concurrency) as pool:
            fetched = list(pool.map(baseline.fetch, ids))
        one_by_one = (baseline.request_count, time.perf_counter() - started, sum(len(s.comments) for s in fetched))
        listing.close()
        baseline.close()
    if listed[2] != one_by_one[2]:
        raise RuntimeError(f"the two ways saw different comments: {listed[2]} vs {one_by_one[2]}")
    return {"listing": listed, "per case": one_by_one}


def rows(quick: bool = False) -> list[Row]:
    """For `python -m bench`: 1,000 cases (quick: 200)."""
    cases = 200 if quick else 1000
    figures = measure(cases)
    (ours, our_time, _), (base, base_time, _) = figures["listing"], figures["per case"]
    return [
        Row(
            f"Salesforce full listing of {cases:,} cases with comments: requests per case (per case as baseline)",
            f"{ours} requests",
            f"{base} requests",
            ours / cases,
            GOAL,
            f"ratio = requests per case; time {our_time:.1f}s vs {base_time:.1f}s",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)

    with start_fake_salesforce(cases=args.cases) as server:
        comments = sum(len(c.comments) for c in server.fake.cases.values())
        print(f"fake org: {args.cases} cases, {comments} comments (some private)")

        listing = SalesforceBackend(instance_url=server.url, access_token=STATIC_TOKEN, page_size=args.page_size)
        started = time.perf_counter()
        refs = list(listing.iter_changed(None))
        snapshots = [getattr(ref, "snapshot", None) for ref in refs]
        if any(s is None for s in snapshots):  # before TicketRef carried snapshots: fetch like the baseline
            snapshots = [listing.fetch(ref.ticket_id) for ref in refs]
        listed_seconds = time.perf_counter() - started
        listed_requests = listing.request_count
        listed_comments = sum(len(s.comments) for s in snapshots if s is not None)

        baseline = SalesforceBackend(instance_url=server.url, access_token=STATIC_TOKEN, page_size=args.page_size)
        started = time.perf_counter()
        ids = [ref.ticket_id for ref in baseline.iter_changed(None)]
        with ThreadPoolExecutor(args.concurrency) as pool:
            fetched = list(pool.map(baseline.fetch, ids))
        baseline_seconds = time.perf_counter() - started
        baseline_requests = baseline.request_count
        baseline_comments = sum(len(s.comments) for s in fetched)
        listing.close()
        baseline.close()

    assert listed_comments == baseline_comments, (listed_comments, baseline_comments)
    print(
        f"listing with subquery: {listed_requests} requests, {listed_seconds:.2f}s, {len(refs)} cases, {listed_comments} comments"
    )
    print(
        f"one request per case (concurrency {args.concurrency}): {baseline_requests} requests, "
        f"{baseline_seconds:.2f}s, {len(fetched)} cases, {baseline_comments} comments"
    )
    print(
        f"ratio (per-case / listing): requests {baseline_requests / max(1, listed_requests):.1f}x, "
        f"time {baseline_seconds / max(1e-9, listed_seconds):.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

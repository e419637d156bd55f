"""A full Jira resync of 1,000 fake issues: listing-complete snapshots (ours) against one fetch per issue.

    .venv/bin/python -m bench.jira_resync [--issues 1000] [--deployment cloud|datacenter]

Both runs are the real `resync_system` (credential proof, listing, inline dispatch, persistence) in
this process, against one fake Jira over loopback HTTP (tests/integrations/jira/fake_server.py), each into its
own empty data directory:

* batched (ours): the search brings each issue with up to 20 comments; complete issues are stored
  from the listing, only those with more comments are fetched;
* one by one (the baseline): the same resync with a dispatcher that takes no snapshots, so every
  listed issue is fetched (`GET /issue/K` + `GET /issue/K/comment`), `resync_concurrency` at a time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.table import Row
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integration import TicketIntegration, TicketRef
from data_manager.collectors.tickets.integrations.jira import JiraTickets
from data_manager.collectors.tickets.resync import InlineDispatcher, Progress, ResyncPlan, ResyncSummary, resync_system
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME, start_fake_jira


@dataclass
class OneByOne:
    """The inline dispatcher without a snapshot sink: every listed ticket is fetched."""

    kind: str = "inline"

    def dispatch(
        self,
        integration: TicketIntegration,
        persistence: PersistenceService,
        plan: ResyncPlan,
        refs: Iterable[TicketRef],
        summary: ResyncSummary,
        progress: Progress | None,
    ) -> None:
        bare = (TicketRef(ref.ticket_id, ref.updated_at) for ref in refs)  # the listing's content dropped
        InlineDispatcher().dispatch(integration, persistence, plan, bare, summary, progress)


GOAL = "<= 0.2"


def measure(issues: int, deployment: str = "cloud") -> dict[str, tuple[int, float]]:
    """label -> (requests, seconds) of a full resync, one by one and batched (ours)."""
    server = start_fake_jira(issues=issues, deployment=deployment)
    fake = server.fake
    figures: dict[str, tuple[int, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, dispatcher in (("one by one", OneByOne()), ("batched", InlineDispatcher())):
                client = JiraTickets(
                    server.url,
                    DEFAULT_USERNAME if deployment == "cloud" else None,
                    DEFAULT_TOKEN,
                    "project = PROJ",
                    deployment=deployment,
                    page_size=100,
                )
                store = PersistenceService(Path(tmp) / label.replace(" ", "_"), fsync=False)
                before = fake.request_count
                started = time.perf_counter()
                summary = resync_system(client, store, full=True, dispatcher=dispatcher)
                elapsed = time.perf_counter() - started
                requests = fake.request_count - before
                client.close()
                if not summary.ok or summary.written != issues:
                    raise RuntimeError(f"{label}: resync failed: {summary.as_dict()}")
                figures[label] = (requests, elapsed)
    finally:
        server.stop()
    return figures


def rows(quick: bool = False) -> list[Row]:
    """For `python -m bench`: 1,000 issues (quick: 200)."""
    issues = 200 if quick else 1000
    figures = measure(issues)
    (base_requests, base_time), (our_requests, our_time) = figures["one by one"], figures["batched"]
    return [
        Row(
            f"Jira full resync of {issues:,} issues: requests per issue (one by one as baseline)",
            f"{our_requests} requests",
            f"{base_requests} requests",
            our_requests / issues,
            GOAL,
            f"ratio = requests per issue; time {our_time:.1f}s vs {base_time:.1f}s",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--deployment", choices=("cloud", "datacenter"), default="cloud")
    args = parser.parse_args(argv)
    try:
        figures = measure(args.issues, args.deployment)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    for label, (requests, elapsed) in figures.items():
        print(
            f"{label:>10}: {args.issues} issues, {requests} requests ({requests / args.issues:.3f} per issue), {elapsed:.2f}s"
        )
    (base_requests, base_time), (our_requests, our_time) = figures["one by one"], figures["batched"]
    print(
        f"jira full resync, batched vs one by one: requests per issue {our_requests / args.issues:.3f} vs "
        f"{base_requests / args.issues:.3f} ({base_requests / our_requests:.1f}x fewer; goal <= 0.2), "
        f"time {our_time:.2f}s vs {base_time:.2f}s ({base_time / our_time:.1f}x faster)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

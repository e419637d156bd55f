"""A resync runs fewer threads once Jira answers 429, as seen at the server: requests in flight before vs after.

Every issue has more comments than the search embeds, so each is fetched on its own (issue, then
comments): two requests per ticket, `resync_concurrency` tickets at once. Partway through, the fake
answers three requests with 429 (Retry-After: 0, so only the concurrency can make a difference).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from werkzeug.wrappers import Request

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.resync import resync_system
from tests.integrations.jira.conftest import JiraSetup
from tests.integrations.jira.fake_server import FakeJira

ISSUES = 120
CONCURRENCY = 8
THROTTLE_AFTER = 80  # issue requests served before the fake starts answering 429
DRAIN = 2 * CONCURRENCY + 4  # arrivals after the throttle that may still come from tickets begun before it


@pytest.mark.parametrize("deployment", ["cloud"])
def test_a_throttled_resync_halves_its_concurrency_at_the_server(
    make_jira: Callable[..., JiraSetup], tmp_path: Path
) -> None:
    setup = make_jira()
    fake = setup.fake
    fake.seed(ISSUES, comments=lambda i: 25)
    fake.latency = 0.02
    served = {"issue": 0}

    def throttle_once(server: FakeJira, request: Request) -> None:
        if "/issue/" in request.path:
            served["issue"] += 1
            if served["issue"] == THROTTLE_AFTER:
                server.inject(429, path="/issue/", times=3, headers={"Retry-After": "0"})

    fake.after_request.append(throttle_once)
    client = setup.client()
    store = PersistenceService(tmp_path / "data", fsync=False)
    summary = resync_system(client, store, full=True, concurrency=CONCURRENCY)

    assert summary.ok and summary.written == ISSUES  # the retries succeeded: nothing lost to the throttle
    statuses = [status for _, status in fake.arrivals]
    first, last = statuses.index(429), len(statuses) - 1 - statuses[::-1].index(429)
    before = max(in_flight for in_flight, _ in fake.arrivals[:first])
    after = max(in_flight for in_flight, _ in fake.arrivals[last + DRAIN : last + DRAIN + 10])
    assert before >= CONCURRENCY - 1, f"before the throttle only {before} requests were in flight"
    assert after <= CONCURRENCY // 2 + 1, f"after the throttle {after} requests were still in flight (before: {before})"

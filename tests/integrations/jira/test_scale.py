"""A full listing + fetch of 1,000 issues with comments over HTTP returns every issue and every comment.

Mirrors what a resync does (list with `iter_changed(None)`, fetch with bounded concurrency) and
reports the time and the number of requests (run with `-s` to see them).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integrations.jira.conftest import JiraSetup

ISSUES = 1000


@pytest.mark.slow
def test_listing_and_fetching_1000_issues_returns_everything(make_jira, deployment: str) -> None:
    setup: JiraSetup = make_jira(issues=ISSUES, comment_page_cap=3)  # small comment pages: many issues need several
    fake = setup.fake
    expected_comments = {
        key: [c.id for c in sorted(issue.comments, key=lambda c: (c.created, int(c.id))) if fake.comment_visible(c)]
        for key, issue in fake.issues.items()
    }
    client = setup.client(page_size=100)

    started = time.perf_counter()
    refs = list(client.iter_changed(None))
    listed = time.perf_counter()
    with ThreadPoolExecutor(max_workers=client.resync_concurrency) as pool:
        snapshots = list(pool.map(client.fetch, [ref.ticket_id for ref in refs]))
    finished = time.perf_counter()

    assert sorted(ref.ticket_id for ref in refs) == sorted(fake.issues)
    assert {s.ticket_id: len(s.comments) for s in snapshots} == {
        key: len(ids) for key, ids in expected_comments.items()
    }
    assert sum(len(s.comments) for s in snapshots) == fake.stats()["visible_comments"] > ISSUES
    for snapshot in snapshots:
        issue = fake.issues[snapshot.ticket_id]
        assert snapshot.data.title == issue.summary
        assert snapshot.updated_at == issue.updated
        assert [c.at for c in snapshot.comments] == sorted(c.at for c in snapshot.comments)
    elapsed = finished - started
    print(
        f"\n[jira {deployment}] {ISSUES} issues, {fake.stats()['visible_comments']} comments: "
        f"list {listed - started:.2f}s, fetch {finished - listed:.2f}s, total {elapsed:.2f}s, "
        f"{fake.request_count} requests ({sum(1 for r in fake.requests if '/search' in r[1])} search)"
    )

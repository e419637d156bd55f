"""A full resync of Jira stores the tickets its search already brought complete, fetching only the rest.

Jira's search embeds up to 20 comments per issue; an issue whose embedded page holds every comment is
stored straight from the listing, one with more comments is fetched on its own. The stored copies are
the same as fetching every issue one by one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integrations._jira_adf import adf_to_text
from data_manager.collectors.tickets.resync import resync_system
from data_manager.collectors.tickets.sync import sync_ticket
from tests.integrations.jira.conftest import JiraSetup

ISSUES = 1000
MANY_COMMENTS = {7: 25, 500: 21, 999: 40}  # issue number -> comments: more than the search embeds


def _comments(i: int) -> int:
    return MANY_COMMENTS.get(i, 20 if i % 100 == 0 else i % 5)


def _stored_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "jira" in path.name and path.suffix not in {".db", ".sqlite", ".sqlite3", ".lock"}
    }


@pytest.mark.slow
def test_full_resync_costs_under_a_fifth_of_a_request_per_issue(make_jira, deployment: str, tmp_path: Path) -> None:
    setup: JiraSetup = make_jira()
    fake = setup.fake
    keys = fake.seed(ISSUES, comments=_comments)
    long_ones = {keys[i - 1] for i in MANY_COMMENTS}
    client = setup.client(page_size=100)
    batched = PersistenceService(tmp_path / "batched", fsync=False)

    before = fake.request_count
    summary = resync_system(client, batched, full=True)
    requests = fake.request_count - before

    assert summary.ok and (summary.listed, summary.fetched, summary.written) == (ISSUES, ISSUES, ISSUES)
    assert requests <= 0.2 * ISSUES, f"{requests} requests for {ISSUES} issues"
    fetched_alone = {m.group(1) for _, path, *_ in fake.requests[before:] if (m := re.search(r"/issue/([^/?]+)", path))}
    assert fetched_alone == long_ones  # only the issues whose comments were cut off, each fetched on its own
    for key in long_ones:
        issue = fake.issues[key]
        visible = [c for c in issue.comments if fake.comment_visible(c)]
        assert len(issue.comments) > 20
        assert batched.get("jira", key).content.count("\n--- Comment ") == len(visible)
    restricted = [(k, c) for k, i in fake.issues.items() for c in i.comments if not fake.comment_visible(c)]
    assert restricted  # the seed hides some comments (role visibility, JSM internal)
    for key, comment in restricted:
        assert f"---\n{adf_to_text(comment.body)}\n" not in batched.get("jira", key).content

    one_by_one = PersistenceService(tmp_path / "one_by_one", fsync=False)
    for key in keys:
        sync_ticket(client, one_by_one, key)
    expected = _stored_files(tmp_path / "one_by_one")
    assert len(expected) >= ISSUES
    assert _stored_files(tmp_path / "batched") == expected

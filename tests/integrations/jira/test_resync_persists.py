"""A resync over the fake Jira persists every issue with every visible comment, then only what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integrations._jira_adf import adf_to_text
from data_manager.collectors.tickets.resync import resync_system
from data_manager.collectors.tickets.sync import SyncOutcome, sync_ticket
from tests.integrations.jira.conftest import JiraSetup

ISSUES = 1000


@pytest.mark.slow
def test_full_then_incremental_resync_of_1000_issues(make_jira, deployment: str, tmp_path: Path) -> None:
    setup: JiraSetup = make_jira(issues=ISSUES)
    fake = setup.fake
    client = setup.client(page_size=100)
    client.resync_overlap_seconds = 120
    store = PersistenceService(tmp_path / "data", fsync=False)

    first = resync_system(client, store)
    assert first.ok and (first.fetched, first.written) == (ISSUES, ISSUES)
    assert store.ticket_ids("jira") == set(fake.issues)
    for key, issue in fake.issues.items():
        stored = store.get("jira", key)
        visible = [c for c in issue.comments if fake.comment_visible(c)]
        assert stored is not None and f"Comments ({len(visible)}):" in stored.content
        assert stored.content.count("\n--- Comment ") == len(visible)
        texts = [adf_to_text(c.body) for c in sorted(visible, key=lambda c: (c.created, int(c.id)))]
        positions = [stored.content.index(f"---\n{text}\n") for text in texts]
        assert positions == sorted(positions)  # every visible comment, in creation order
        hidden = [adf_to_text(c.body) for c in issue.comments if not fake.comment_visible(c)]
        assert not any(f"---\n{text}\n" in stored.content for text in hidden)
        assert stored.metadata["extra"]["url"] == f"{setup.url.rstrip('/')}/browse/{key}"

    changed = sorted(fake.issues)[17]
    fake.update_issue(changed, summary="Changed after the first resync")
    requests_before = fake.request_count
    second = resync_system(client, store)
    assert second.ok and second.mode == "incremental" and second.written == 1
    # The changed issue plus the few inside the overlap window before the cursor, never the whole project.
    assert second.fetched <= 1 + 120 // 20 + 3
    assert fake.request_count - requests_before < 3 * second.fetched + 5
    assert "Title: Changed after the first resync" in store.get("jira", changed).content

    gone = sorted(fake.issues)[3]
    fake.delete_issue(gone)
    third = resync_system(client, store, full=True)
    assert third.ok and third.deleted == 1 and store.get("jira", gone) is None
    assert store.count("jira") == ISSUES - 1


def test_full_resync_removes_an_issue_outside_jql_query_that_a_webhook_brought_in(make_jira, tmp_path: Path) -> None:
    """A Jira webhook without a JQL filter sends every project's events; a full resync cleans up after it."""
    setup: JiraSetup = make_jira(issues=5)
    fake = setup.fake
    other_project = fake.seed(2, project="HR")
    client = setup.client("project = PROJ")
    store = PersistenceService(tmp_path / "data", fsync=False)
    assert sync_ticket(client, store, other_project[0]) is SyncOutcome.WRITTEN  # what the webhook job does

    summary = resync_system(client, store, full=True)

    assert summary.ok and (summary.deleted, summary.out_of_scope) == (0, 1)
    assert store.ticket_ids("jira") == {key for key in fake.issues if key.startswith("PROJ-")}
    assert other_project[0] in fake.issues  # only our copy went


def test_a_short_jira_listing_never_removes_an_issue_jql_still_matches(
    make_jira, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup: JiraSetup = make_jira(issues=5)
    client = setup.client("project = PROJ")
    store = PersistenceService(tmp_path / "data", fsync=False)
    resync_system(client, store)
    original = client.iter_changed
    monkeypatch.setattr(client, "iter_changed", lambda since: (r for r in original(since) if r.ticket_id != "PROJ-2"))

    summary = resync_system(client, store, full=True)

    assert summary.ok and (summary.deleted, summary.out_of_scope) == (0, 0)
    assert store.ticket_ids("jira") == set(setup.fake.issues)
    assert client.in_scope("PROJ-2") is True


def test_scope_of_an_issue_deleted_since_it_was_fetched_is_unknown_not_an_error(make_jira) -> None:
    """Jira refuses a search naming a key that no longer resolves (400); asked about the scope of an issue
    deleted between the resync's fetch and that question, the answer is "unknown": nothing is removed on it."""
    setup: JiraSetup = make_jira(issues=3)
    client = setup.client("project = PROJ")
    assert client.in_scope("PROJ-2") is True
    setup.fake.delete_issue("PROJ-2")
    assert client.in_scope("PROJ-2") is None

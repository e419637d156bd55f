"""A resync of a real Redmine project into persistence: every issue with every public note, in order.

Closed issues are included, private notes never stored, deleted issues removed by a full resync, and an
incremental resync after one change fetches only around that change.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integrations.redmine import RedmineTickets
from data_manager.collectors.tickets.resync import resync_system

if TYPE_CHECKING:
    from tests.integrations.redmine.redmine_server import RedmineAdmin, RedmineServer

pytestmark = [pytest.mark.redmine, pytest.mark.slow]
pytest_plugins = ("tests.integrations.redmine.redmine_server",)

ISSUES = 220


def public_notes(n: int) -> list[str]:
    return [f'public note {k} on issue {n} — ünïcödé <b>"quoted"</b>' for k in range(n % 3)]


def test_full_and_incremental_resync_into_persistence(
    redmine_admin: RedmineAdmin,
    redmine_server: RedmineServer,
    redmine_project: dict[str, Any],
    next_second: Callable[[], None],
    tmp_path: Path,
) -> None:
    project = redmine_project["identifier"]
    ids = redmine_admin.create_issues(project, ISSUES, prefix="resync")
    closed = redmine_admin.status_id("Closed")

    def decorate(index_and_id: tuple[int, int]) -> None:
        index, issue_id = index_and_id
        for note in public_notes(index):
            redmine_admin.update_issue(issue_id, notes=note)
        if index % 10 == 0:
            redmine_admin.update_issue(issue_id, notes=f"PRIVATE note on {issue_id}", private_notes=True)
        if index % 7 == 0:
            redmine_admin.update_issue(issue_id, status_id=closed)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(decorate, enumerate(ids)))

    # The stored cursor is the newest upstream `updated_on` seen, and Redmine's ">=" filter works to the second,
    # so whatever shares the cursor's second is listed again next time. Finish the setup with one lone change
    # so that second holds a single issue, as it would in a project that is not being bulk-edited.
    next_second()
    next_second()
    redmine_admin.update_issue(ids[0], notes="last change before the first resync")
    redmine = RedmineTickets(redmine_server.url, redmine_server.api_key, project)
    store = PersistenceService(tmp_path / "data", fsync=False)

    first = resync_system(redmine, store, concurrency=4)

    assert first.ok and (first.fetched, first.written) == (ISSUES, ISSUES)
    assert store.ticket_ids("redmine") == {str(i) for i in ids}
    for index, issue_id in enumerate(ids):
        content = store.get("redmine", str(issue_id)).content
        notes = public_notes(index) + (["last change before the first resync"] if index == 0 else [])
        assert f"Comments ({len(notes)}):" in content
        positions = [content.index(f"---\n{note}\n") for note in notes]
        assert positions == sorted(positions)  # in order
        assert "PRIVATE" not in content
        assert ("Status: Closed (closed)" in content) == (index % 7 == 0)
    requests_after_full = redmine.client.request_count

    next_second()
    next_second()
    changed = ids[101]
    redmine_admin.update_issue(changed, notes="the one change after the first resync")
    redmine.resync_overlap_seconds = 0  # measure what the cursor alone selects

    second = resync_system(redmine, store)

    assert second.ok and second.mode == "incremental"
    assert second.written == 1
    assert second.fetched <= 2  # the change, and at most the lone issue sharing the cursor's second
    assert redmine.client.request_count - requests_after_full <= 4  # key check, one page, the fetches
    assert "the one change after the first resync" in store.get("redmine", str(changed)).content

    gone = ids[5]
    redmine_admin.delete_issue(gone)

    third = resync_system(redmine, store, full=True)

    assert third.ok and third.deleted == 1
    assert store.get("redmine", str(gone)) is None
    assert store.count("redmine") == ISSUES - 1

"""The change feed's contract, on both stores: each committed write and removal once, in order, no gaps."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from data_manager.collectors.changes import Change, ChangeKind
from data_manager.collectors.persistence import UpsertOutcome
from data_manager.collectors.store import TicketStore
from tests.persistence.contract.support import T0, resource


@pytest.fixture
def feed(store: TicketStore) -> TicketStore:
    return store


def _kinds(changes: list[Change]) -> list[tuple[int, str, str]]:
    return [(c.seq, c.ticket_id, str(c.kind)) for c in changes]


def test_writes_and_removals_are_numbered_from_one_without_gaps(feed: TicketStore) -> None:
    assert feed.last_change_seq() == 0 and feed.changes(after=0) == []
    feed.upsert(resource("a", ticket_id="PROJ-1"))
    feed.upsert(resource("b", ticket_id="PROJ-2"))
    feed.upsert(resource("a2", T0 + timedelta(minutes=1), ticket_id="PROJ-1"))
    feed.delete("jira", "PROJ-2")
    assert _kinds(feed.changes(after=0)) == [
        (1, "PROJ-1", "written"),
        (2, "PROJ-2", "written"),
        (3, "PROJ-1", "written"),
        (4, "PROJ-2", "removed"),
    ]
    change = feed.changes(after=3)[0]
    assert (change.system, change.hash, change.kind) == ("jira", "jira_PROJ-2", ChangeKind.REMOVED)
    assert feed.last_change_seq() == 4


def test_unchanged_stale_and_absent_leave_no_entry(feed: TicketStore) -> None:
    feed.upsert(resource("new", T0 + timedelta(minutes=5)))
    assert feed.upsert(resource("new", T0 + timedelta(minutes=5))) is UpsertOutcome.UNCHANGED
    assert feed.upsert(resource("old", T0)) is UpsertOutcome.STALE
    assert feed.delete("jira", "PROJ-404") is False
    assert feed.last_change_seq() == 1 and len(feed.changes(after=0)) == 1


def test_pages_follow_after_and_limit(feed: TicketStore) -> None:
    for n in range(7):
        feed.upsert(resource(ticket_id=f"PROJ-{n}"))
    pages, after = [], 0
    while page := feed.changes(after=after, limit=3):
        pages.append([c.seq for c in page])
        after = page[-1].seq
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]


def test_wait_for_changes_wakes_on_a_commit_and_times_out_without_one(feed: TicketStore) -> None:
    feed.upsert(resource(ticket_id="PROJ-1"))
    assert feed.wait_for_changes(after=0, timeout=0) is True  # already there: no waiting
    started = time.monotonic()
    assert feed.wait_for_changes(after=1, timeout=0.3) is False
    assert time.monotonic() - started >= 0.25
    writer = threading.Timer(0.3, lambda: feed.upsert(resource(ticket_id="PROJ-2")))
    writer.start()
    started = time.monotonic()
    assert feed.wait_for_changes(after=1, timeout=20) is True
    assert time.monotonic() - started < 10
    writer.join()

"""The embedded store's change feed: one entry per committed write or removal, in the same transaction."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_manager.collectors import catalog as catalog_module
from data_manager.collectors.catalog import SCHEMA_VERSION
from data_manager.collectors.changes import Change, ChangeKind
from data_manager.collectors.housekeeping import drop_lost, reconcile
from data_manager.collectors.persistence import PersistenceService, UpsertOutcome
from data_manager.collectors.tickets import TicketResource
from tests.persistence.test_persistence_crashes import HASH, resource, run_killed

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
W, R = ChangeKind.WRITTEN, ChangeKind.REMOVED


def ticket(ticket_id: str, text: str, minutes: int = 0) -> TicketResource:
    when = T0 + timedelta(minutes=minutes)
    content = f"Title: {text}\nTicket: memory:{ticket_id}\nUpdated: {when.isoformat()}\n\n{text}\n"
    return TicketResource(ticket_id=ticket_id, content=content, source_type="memory", metadata={"updated_at": when})


def kinds(store: PersistenceService, after: int = 0) -> list[tuple[str, ChangeKind]]:
    return [(change.ticket_id, change.kind) for change in store.changes(after=after)]


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


def test_writes_and_removals_get_consecutive_seqs_and_nothing_else_does(store: PersistenceService) -> None:
    assert store.last_change_seq() == 0 and store.changes() == []
    assert store.upsert(ticket("T1", "one")) is UpsertOutcome.WRITTEN
    assert store.upsert(ticket("T1", "one")) is UpsertOutcome.UNCHANGED
    assert store.upsert(ticket("T2", "two", 5)) is UpsertOutcome.WRITTEN
    assert store.upsert(ticket("T2", "older", 1)) is UpsertOutcome.STALE
    assert store.upsert(ticket("T1", "one, edited", 3)) is UpsertOutcome.WRITTEN
    assert store.delete("memory", "T2") is True
    assert store.delete("memory", "T2") is False  # nothing stored: no removal, no entry
    store.restore("memory", "T2")
    changes = store.changes()
    assert [c.seq for c in changes] == [1, 2, 3, 4, 5]
    assert kinds(store) == [("T1", W), ("T2", W), ("T1", W), ("T2", R), ("T2", W)]
    assert changes[0] == Change(1, "memory", "T1", "memory_T1", W)
    assert changes[0].as_dict() == {
        "seq": 1,
        "system": "memory",
        "ticket_id": "T1",
        "hash": "memory_T1",
        "kind": "written",
    }
    assert store.last_change_seq() == 5


def test_changes_pages_after_a_seq_oldest_first(store: PersistenceService) -> None:
    for n in range(7):
        store.upsert(ticket(f"T{n}", "x"))
    assert [c.seq for c in store.changes(after=2, limit=3)] == [3, 4, 5]
    assert [c.seq for c in store.changes(after=5)] == [6, 7]
    assert store.changes(after=7) == []
    assert store.changes(limit=0) == []


def test_upsert_many_records_one_entry_per_written_ticket(store: PersistenceService) -> None:
    store.upsert(ticket("T1", "one"))
    outcomes = store.upsert_many(
        [(ticket("T1", "one"), None), (ticket("T2", "two"), None), (ticket("T3", "three"), T0.isoformat())]
    )
    assert outcomes == [UpsertOutcome.UNCHANGED, UpsertOutcome.WRITTEN, UpsertOutcome.WRITTEN]
    assert kinds(store, after=1) == [("T2", W), ("T3", W)]


def test_wait_for_changes_returns_when_another_writer_commits(store: PersistenceService) -> None:
    assert store.wait_for_changes(0, timeout=0.2) is False
    other = PersistenceService(store.data_path, fsync=False)
    writer = threading.Timer(0.3, lambda: other.upsert(ticket("T1", "one")))
    started = time.monotonic()
    writer.start()
    try:
        assert store.wait_for_changes(0, timeout=30) is True
    finally:
        writer.join()
    assert time.monotonic() - started < 10
    assert store.wait_for_changes(1, timeout=0) is False
    assert store.wait_for_changes(0, timeout=0) is True


def test_a_version_1_catalog_is_upgraded_in_place_and_its_feed_starts_at_1(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "tickets").mkdir(parents=True)
    with sqlite3.connect(data / "catalog.sqlite3") as raw:  # exactly what version 1 created
        raw.execute("PRAGMA journal_mode=WAL")
        for statement in catalog_module.MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute(
            """INSERT INTO tickets VALUES ('memory_T9', 'memory', 'T9', '', NULL, 'c', 'm',
                                          '2024-05-01T10:00:00+00:00')"""
        )
        raw.execute("INSERT INTO cursors VALUES ('memory', '2024-05-01T10:00:00+00:00')")
        raw.execute("PRAGMA user_version=1")
    store = PersistenceService(data, fsync=False)
    assert store.catalog.read().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert store.count() == 1 and store.get_cursor("memory") == T0  # kept
    assert store.last_change_seq() == 0  # nothing is invented for what was stored before
    store.upsert(ticket("T1", "one"))
    assert kinds(store) == [("T1", W)] and store.last_change_seq() == 1
    PersistenceService(data, fsync=False).upsert(ticket("T2", "two"))  # another opener: no second upgrade
    assert store.last_change_seq() == 2


def test_a_failed_upgrade_leaves_version_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "catalog.sqlite3"
    with sqlite3.connect(path) as raw:
        for statement in catalog_module.MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute("PRAGMA user_version=1")
    monkeypatch.setattr(catalog_module, "MIGRATIONS", (catalog_module.MIGRATIONS[0], ("CREATE TABLE broken (",)))
    with pytest.raises(sqlite3.OperationalError):
        catalog_module.Catalog(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1


def test_the_startup_reconcile_gives_repaired_rows_their_entries(store: PersistenceService) -> None:
    for n in (1, 2, 3):
        store.upsert(ticket(f"T{n}", "v1"))
    seq = store.last_change_seq()
    # What crashes leave: T1's files replaced with no commit, T2's file gone, T4's file with no row.
    time.sleep(0.01)
    store.content_path("memory_T1").write_text(ticket("T1", "v2", 5).get_content())
    store.content_path("memory_T2").unlink()
    store.content_path("memory_T4").write_text(ticket("T4", "new").get_content())
    report = reconcile(store)
    assert (report.rows_updated, report.rows_added) == (["memory_T1"], ["memory_T4"])
    assert sorted(kinds(store, after=seq)) == [("T1", W), ("T4", W)]  # T2's row stays until its re-fetch is submitted
    assert drop_lost(store, report.files_lost) == [("memory", "T2")]
    assert sorted(kinds(store, after=seq)) == [("T1", W), ("T2", R), ("T4", W)]
    assert reconcile(store).changed == 0 and store.last_change_seq() == seq + 3  # nothing more to repair


def test_a_write_killed_before_its_commit_has_no_entry_until_reconciled(tmp_path: Path) -> None:
    store = PersistenceService(tmp_path / "data")
    store.upsert(resource("v1", 0))
    run_killed(store.data_path, 2, "v2", 5)  # both files renamed, the transaction never committed
    assert store.last_change_seq() == 1  # no entry without its catalog write...
    assert store.reconcile(HASH) is True  # ...and the repair that adopts the files records one
    assert [(c.ticket_id, c.kind) for c in store.changes(after=1)] == [("PROJ-7", W)]
    assert store.reconcile(HASH) is False and store.last_change_seq() == 2


def test_a_write_killed_before_its_renames_leaves_no_entry(tmp_path: Path) -> None:
    store = PersistenceService(tmp_path / "data")
    store.upsert(resource("v1", 0))
    run_killed(store.data_path, 0, "v2", 5)
    assert store.last_change_seq() == 1 and store.get("jira", "PROJ-7").content == "v1"


def test_entries_survive_reopening_and_seqs_are_never_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = PersistenceService(data, fsync=False)
    store.upsert(ticket("T1", "one"))
    store.delete("memory", "T1")
    store.close()
    reopened = PersistenceService(data, fsync=False)
    reopened.upsert(ticket("T1", "again"))
    assert [c.seq for c in reopened.changes()] == [1, 2, 3]
    assert os.path.exists(data / "catalog.sqlite3")

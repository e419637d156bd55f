"""The `TicketStore` contract, on both stores: idempotent, atomic, ordered, collisions refused, trash and sync state."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceError, UpsertOutcome
from data_manager.collectors.store import TicketStore
from data_manager.collectors.tickets import TicketResource
from tests.persistence.contract.conftest import StoreRef
from tests.persistence.contract.support import T0, newest_minutes, race_rounds, resource


def test_upsert_then_get_returns_content_metadata_and_catalog_facts(store: TicketStore) -> None:
    assert store.upsert(resource()) is UpsertOutcome.WRITTEN
    stored = store.get("jira", "PROJ-7")
    assert stored is not None and stored.content == "hello"
    assert stored.metadata["display_name"] == "jira:PROJ-7"  # the seed's default: no display_name given
    assert stored.metadata["extra"]["ticket_id"] == "PROJ-7" and stored.metadata["extra"]["source_type"] == "jira"
    assert stored.entry.hash == "jira_PROJ-7" and stored.entry.updated_at == T0.isoformat()
    assert stored.entry.updated_ts == T0.timestamp()
    assert store.get_by_hash("jira_PROJ-7") == stored
    assert store.has_copy("jira", "PROJ-7") and not store.has_copy("jira", "PROJ-8")
    assert store.get("jira", "PROJ-8") is None and store.get_by_hash("jira_PROJ-8") is None


def test_identical_upsert_writes_nothing(store: TicketStore) -> None:
    store.upsert(resource())
    before = store.get("jira", "PROJ-7")
    assert store.upsert(resource()) is UpsertOutcome.UNCHANGED
    assert store.get("jira", "PROJ-7") == before  # written_at included: nothing was rewritten


def test_older_snapshot_never_overwrites_newer(store: TicketStore) -> None:
    store.upsert(resource("new", T0 + timedelta(minutes=5)))
    assert store.upsert(resource("old", T0)) is UpsertOutcome.STALE
    stored = store.get("jira", "PROJ-7")
    assert stored is not None and stored.content == "new"
    assert store.upsert(resource("newer", T0 + timedelta(minutes=6))) is UpsertOutcome.WRITTEN
    assert store.upsert(resource("same-time-new-content", T0 + timedelta(minutes=6))) is UpsertOutcome.WRITTEN
    stored = store.get("jira", "PROJ-7")
    assert stored is not None and stored.content == "same-time-new-content"


def test_an_explicit_update_time_wins_over_the_metadata(store: TicketStore) -> None:
    store.upsert(resource("new"), updated_at=T0 + timedelta(hours=1))
    assert store.upsert(resource("old"), updated_at=T0) is UpsertOutcome.STALE
    assert store.upsert(resource("newest"), updated_at=(T0 + timedelta(hours=2)).isoformat()) is UpsertOutcome.WRITTEN


def test_snapshot_without_update_time_is_written(store: TicketStore) -> None:
    store.upsert(resource("a", T0))
    assert store.upsert(resource("b", None)) is UpsertOutcome.WRITTEN
    assert store.upsert(resource("c", T0 - timedelta(days=1))) is UpsertOutcome.WRITTEN  # nothing to compare with


def test_metadata_change_alone_is_written(store: TicketStore) -> None:
    store.upsert(resource(project="A"))
    assert store.upsert(resource(project="B")) is UpsertOutcome.WRITTEN
    stored = store.get("jira", "PROJ-7")
    assert stored is not None and stored.metadata["extra"]["project"] == "B"


def test_listing_counting_and_ids_by_source(store: TicketStore) -> None:
    store.upsert(resource(ticket_id="PROJ-2"))
    store.upsert(resource(ticket_id="PROJ-1"))
    store.upsert(TicketResource(ticket_id="5", content="x", source_type="redmine"))
    assert [e.ticket_id for e in store.list_entries("jira")] == ["PROJ-1", "PROJ-2"]
    assert [e.hash for e in store.iter_entries()] == ["jira_PROJ-1", "jira_PROJ-2", "redmine_5"]
    assert store.ticket_ids("redmine") == {"5"} and store.ticket_ids("bugzilla") == set()
    assert (store.count(), store.count("jira"), store.count("bugzilla")) == (3, 2, 0)


def test_two_ids_mapping_to_one_hash_are_refused_not_overwritten(store: TicketStore) -> None:
    store.upsert(TicketResource(ticket_id="a/b", content="first", source_type="x"))
    with pytest.raises(PersistenceError, match=r"x:a_b .*x_a_b.*x:a/b"):
        store.upsert(TicketResource(ticket_id="a_b", content="second", source_type="x"))
    stored = store.get("x", "a/b")
    assert stored is not None and stored.content == "first"
    assert store.get("x", "a_b") is None


def test_persist_resource_writes_the_seed_files_on_every_store(tmp_path: Path, store: TicketStore) -> None:
    path = store.persist_resource(resource(), tmp_path / "elsewhere")
    assert path == tmp_path / "elsewhere" / "jira_PROJ-7.txt"
    assert path.read_text() == "hello"
    assert "ticket_id: PROJ-7" in (tmp_path / "elsewhere" / "jira_PROJ-7.txt.meta.yaml").read_text()
    inode = path.stat().st_ino
    store.persist_resource(resource(), tmp_path / "elsewhere")
    assert path.stat().st_ino == inode  # identical bytes: not rewritten
    with pytest.raises(PersistenceError):
        store.persist_resource(TicketResource(ticket_id="a/b", content="1", source_type="x"), tmp_path / "c")
        store.persist_resource(TicketResource(ticket_id="a_b", content="2", source_type="x"), tmp_path / "c")


def test_delete_moves_to_the_trash_logs_it_and_restore_brings_it_back(store: TicketStore) -> None:
    store.upsert(resource("kept"))
    assert store.delete("jira", "PROJ-7", reason="out of scope") is True
    assert store.get("jira", "PROJ-7") is None and not store.has_copy("jira", "PROJ-7")
    assert store.count() == 0
    assert store.delete("jira", "PROJ-7") is False
    [removal] = store.removals()
    assert (removal.source, removal.ticket_id, removal.reason, removal.in_trash) == (
        "jira",
        "PROJ-7",
        "out of scope",
        True,
    )
    assert store.removals(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert store.removals(source_type="redmine") == []
    store.restore("jira", "PROJ-7")
    stored = store.get("jira", "PROJ-7")
    assert stored is not None and stored.content == "kept" and stored.entry.updated_at == T0.isoformat()
    assert store.upsert(resource("kept")) is UpsertOutcome.UNCHANGED  # restored with its catalog facts
    assert store.upsert(resource("older", T0 - timedelta(hours=1))) is UpsertOutcome.STALE
    [after] = store.removals()
    assert not after.in_trash and after.restored_at
    with pytest.raises(PersistenceError, match="stored already"):
        store.restore("jira", "PROJ-7")


def test_restore_without_a_trashed_copy_is_refused(store: TicketStore) -> None:
    with pytest.raises(PersistenceError, match="no trashed copy"):
        store.restore("jira", "PROJ-404")


def test_purge_trash_removes_old_copies_for_good(store: TicketStore) -> None:
    store.upsert(resource())
    store.delete("jira", "PROJ-7")
    assert store.purge_trash(timedelta(days=7)) == 0
    assert store.purge_trash(timedelta(days=7), now=datetime.now(UTC) + timedelta(days=8)) == 1
    [removal] = store.removals()
    assert not removal.in_trash and removal.purged_at
    with pytest.raises(PersistenceError, match="no trashed copy"):
        store.restore("jira", "PROJ-7")


def test_cursor_and_resync_records(store: TicketStore) -> None:
    assert store.get_cursor("jira") is None
    store.set_cursor("jira", T0)
    store.set_cursor("jira", T0 + timedelta(hours=1))
    assert store.get_cursor("jira") == T0 + timedelta(hours=1)
    store.record_resync("jira", {"fetched": 3, "failed": 0})
    store.record_resync("jira", {"fetched": 4, "failed": 0})
    last = store.last_resync("jira")
    assert last is not None and last["fetched"] == 4 and last["finished_at"]
    assert store.last_resync("redmine") is None


def test_the_schema_is_current(store: TicketStore) -> None:
    store.require_current_schema()
    assert store.upgrade_schema() == []


def _write_many(ref: StoreRef, seed: int, rounds: int) -> None:
    store = ref.open()
    for [(ticket, minute)] in race_rounds(seed, rounds):  # one write a round
        store.upsert(resource(f"{ticket} at minute {minute}", T0 + timedelta(minutes=minute), ticket_id=ticket))
    store.close()


def test_concurrent_writers_in_separate_processes_keep_the_newest(store_ref: StoreRef, store: TicketStore) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_many, args=(store_ref, seed, 60)) for seed in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    # Replay the same random choices to know the newest version each ticket must end at.
    for ticket, minute in newest_minutes(range(4), 60).items():
        stored = store.get("jira", ticket)
        assert stored is not None
        assert stored.content == f"{ticket} at minute {minute}"
        assert stored.entry.updated_at == (T0 + timedelta(minutes=minute)).isoformat()

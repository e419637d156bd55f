"""Ordering races and kill -9 crash windows of `upsert`, with real processes.

A write stages both files under temp names outside any lock, then one short transaction re-checks
the ordering guard, renames content then metadata into place and commits. These tests stop real
processes at each point (SIGKILL, like the OOM killer or `kill -9`) and race them against each other.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from data_manager.collectors import staging
from data_manager.collectors.metadata_form import parse_metadata
from data_manager.collectors.persistence import PersistenceService, UpsertOutcome, canonical_metadata
from data_manager.collectors.tickets import TicketResource
from tests.persistence.contract.support import newest_minutes, race_rounds
from tests.persistence.crash_points import (  # noqa: F401 (`store`)
    die_after_publishes,
    held_unnamed,
    store_staged_either_way,
)

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
HASH = "jira_PROJ-7"


def resource(content: str, minutes: int, ticket_id: str = "PROJ-7") -> TicketResource:
    updated = T0 + timedelta(minutes=minutes)
    metadata = {"url": f"https://jira/browse/{ticket_id}", "updated_at": updated.isoformat(), "rev": content}
    return TicketResource(ticket_id=ticket_id, content=content, source_type="jira", created_at=T0, metadata=metadata)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def assert_catalog_agrees_with_files(store: PersistenceService) -> None:
    for entry in store.list_entries():
        stored = store.get_by_hash(entry.hash)
        assert stored is not None
        assert entry.content_digest == _digest(stored.content)
        metadata = parse_metadata(store.metadata_path(entry.hash).read_text())
        assert entry.metadata_digest == _digest(canonical_metadata(metadata))


def temp_files(store: PersistenceService) -> list[str]:
    return sorted(p.name for p in store.tickets_dir.iterdir() if p.name.endswith(".tmp"))


def _upsert_and_die_after_renames(data_path: Path, renames: int, content: str, minutes: int) -> None:
    """Child: upsert, and SIGKILL itself after `renames` of the write's files were published (0: before the first)."""
    die_after_publishes(renames)
    PersistenceService(data_path).upsert(resource(content, minutes))
    os._exit(3)  # the write finished, so the kill came too late: the test fails on this exit code


def run_killed(data_path: Path, renames: int, content: str, minutes: int) -> None:
    process = multiprocessing.get_context("fork").Process(
        target=_upsert_and_die_after_renames, args=(data_path, renames, content, minutes)
    )
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL


def named(store: PersistenceService) -> bool:
    return not staging.supports_unnamed(store.tickets_dir)


def test_kill_between_the_renames_and_the_commit_leaves_files_ahead_and_reconcilable(
    store: PersistenceService,
) -> None:
    store.upsert(resource("v1", 0))
    run_killed(store.data_path, 2, "v2", 5)
    stored = store.get("jira", "PROJ-7")
    assert stored.content == "v2" and stored.metadata["extra"]["rev"] == "v2"  # both files renamed
    assert stored.entry.updated_at == T0.isoformat()  # the catalog never committed v2
    assert temp_files(store) == []
    assert store.reconcile(HASH) is True
    assert store.get("jira", "PROJ-7").entry.updated_at == (T0 + timedelta(minutes=5)).isoformat()
    assert_catalog_agrees_with_files(store)
    assert store.upsert(resource("v1.5", 2)) is UpsertOutcome.STALE  # the dead writer's v2 is now protected
    assert store.upsert(resource("v2", 5)) is UpsertOutcome.UNCHANGED
    assert store.reconcile(HASH) is False


def test_kill_between_the_two_renames_is_reconciled_and_healed_by_the_next_write(store: PersistenceService) -> None:
    store.upsert(resource("v1", 0))
    run_killed(store.data_path, 1, "v2", 5)
    stored = store.get("jira", "PROJ-7")
    assert stored.content == "v2" and stored.metadata["extra"]["rev"] == "v1"  # content first, then metadata
    # The unpublished metadata: a named temp file is an orphan for start-up cleanup, an unnamed one died with it.
    assert len(temp_files(store)) == (1 if named(store) else 0)
    assert store.reconcile(HASH) is True
    assert_catalog_agrees_with_files(store)
    # The metadata still says v1, so the catalog claims no newer version than is wholly on disk...
    assert store.get("jira", "PROJ-7").entry.updated_at == T0.isoformat()
    # ...and the next write of v2 completes it.
    assert store.upsert(resource("v2", 5)) is UpsertOutcome.WRITTEN
    assert store.get("jira", "PROJ-7").metadata["extra"]["rev"] == "v2"
    assert_catalog_agrees_with_files(store)


def test_kill_before_the_first_commit_of_a_new_ticket_is_adopted_by_reconcile(store: PersistenceService) -> None:
    run_killed(store.data_path, 2, "v1", 0)
    assert store.get("jira", "PROJ-7") is None and store.content_path(HASH).read_text() == "v1"
    assert store.reconcile(HASH) is True
    entry = store.get("jira", "PROJ-7").entry
    assert (entry.source, entry.ticket_id, entry.updated_at) == ("jira", "PROJ-7", T0.isoformat())
    assert_catalog_agrees_with_files(store)


def test_kill_after_staging_changes_nothing_and_frees_the_lock(store: PersistenceService) -> None:
    store.upsert(resource("v1", 0))
    run_killed(store.data_path, 0, "v2", 5)
    assert store.get("jira", "PROJ-7").content == "v1"
    assert store.reconcile(HASH) is False
    assert store.upsert(resource("v3", 9)) is UpsertOutcome.WRITTEN  # the dead process holds no lock
    assert_catalog_agrees_with_files(store)


def _stage_then_wait(data_path: Path, staged: object, go: object, outcome: object) -> None:
    """Child: stage an older snapshot, then wait while the parent commits a newer one, then try to commit."""
    store = PersistenceService(data_path)
    real_catalog_write = store.catalog.write

    def write():  # type: ignore[no-untyped-def]
        staged.set()  # type: ignore[attr-defined]
        go.wait(30)  # type: ignore[attr-defined]
        return real_catalog_write()

    store.catalog.write = write  # type: ignore[method-assign]
    outcome.value = list(UpsertOutcome).index(store.upsert(resource("older", 3)))  # type: ignore[attr-defined]


def test_an_older_snapshot_staged_before_a_newer_commit_is_refused_at_commit(store: PersistenceService) -> None:
    store.upsert(resource("v1", 0))
    context = multiprocessing.get_context("fork")
    staged, go, outcome = context.Event(), context.Event(), context.Value("i", -1)
    process = context.Process(target=_stage_then_wait, args=(store.data_path, staged, go, outcome))
    process.start()
    try:
        assert staged.wait(30)
        # Both files written and fsynced before any lock: named temp files, or unnamed inodes the child holds.
        assert len(temp_files(store)) + held_unnamed(process.pid, store.tickets_dir) == 2
        assert store.upsert(resource("newer", 6)) is UpsertOutcome.WRITTEN
    finally:
        go.set()
        process.join(60)
    assert process.exitcode == 0
    assert list(UpsertOutcome)[outcome.value] is UpsertOutcome.STALE
    assert store.get("jira", "PROJ-7").content == "newer"
    assert temp_files(store) == []
    assert_catalog_agrees_with_files(store)


def _race(data_path: str, seed: int, rounds: int, start: object) -> None:
    store = PersistenceService(data_path)  # fsync on, as in production
    start.wait(30)  # type: ignore[attr-defined]
    for [(ticket, minute)] in race_rounds(seed, rounds):  # one write a round
        store.upsert(resource(f"{ticket} at minute {minute}", minute, ticket_id=ticket))


def test_four_processes_racing_end_at_the_newest_with_catalog_and_files_agreeing(tmp_path: Path) -> None:
    data_path = str(tmp_path / "data")
    PersistenceService(data_path)
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [context.Process(target=_race, args=(data_path, seed, 50, start)) for seed in range(4)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    store = PersistenceService(data_path)
    for ticket, minute in newest_minutes(range(4), 50).items():
        stored = store.get("jira", ticket)
        assert stored.content == f"{ticket} at minute {minute}"
        assert stored.metadata["extra"]["rev"] == stored.content
        assert stored.entry.updated_at == (T0 + timedelta(minutes=minute)).isoformat()
    assert_catalog_agrees_with_files(store)
    assert temp_files(store) == []

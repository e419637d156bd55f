"""Group commit (`upsert_many`): the guarantees of `upsert` hold for a batch in one transaction.

Atomic files, ordered (also against other processes), idempotent, collisions refused, and a batch
killed mid-transaction (SIGKILL, real processes) loses nothing the startup reconcile cannot heal.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_manager.collectors.changes import ChangeKind
from data_manager.collectors.housekeeping import startup_check
from data_manager.collectors.persistence import PersistenceError, PersistenceService, UpsertOutcome
from data_manager.collectors.tickets import TicketResource
from tests.persistence.contract.support import newest_minutes, race_rounds
from tests.persistence.crash_points import die_after_publishes, store_staged_either_way  # noqa: F401 (`store`)
from tests.persistence.durability import record_syncs
from tests.persistence.test_persistence_crashes import assert_catalog_agrees_with_files, temp_files

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
W, U, S = UpsertOutcome.WRITTEN, UpsertOutcome.UNCHANGED, UpsertOutcome.STALE


def resource(ticket_id: str, content: str, minutes: int = 0) -> TicketResource:
    updated = T0 + timedelta(minutes=minutes)
    metadata = {"updated_at": updated.isoformat(), "rev": content}
    return TicketResource(ticket_id=ticket_id, content=content, source_type="jira", created_at=T0, metadata=metadata)


def item(ticket_id: str, content: str, minutes: int = 0) -> tuple[TicketResource, datetime]:
    return resource(ticket_id, content, minutes), T0 + timedelta(minutes=minutes)


def test_a_batch_writes_only_what_changed_and_keeps_newer_copies(store: PersistenceService) -> None:
    store.upsert_many([item("A-1", "a1", 0), item("A-2", "a2", 10)])
    untouched = store.content_path("jira_A-1").stat()
    outcomes = store.upsert_many(
        [item("A-1", "a1", 0), item("A-2", "a2 older", 5), item("A-3", "a3", 0), item("A-2", "a2 newer", 20)]
    )
    assert outcomes == [U, S, W, W]
    assert store.content_path("jira_A-1").stat().st_ino == untouched.st_ino  # unchanged: not rewritten
    assert store.get("jira", "A-2").content == "a2 newer" and store.get("jira", "A-3").content == "a3"
    written = [("A-3", ChangeKind.WRITTEN), ("A-2", ChangeKind.WRITTEN)]
    assert [(c.ticket_id, c.kind) for c in store.changes(after=2)] == written
    assert store.upsert_many([]) == []
    assert_catalog_agrees_with_files(store)
    assert temp_files(store) == []


def test_a_ticket_twice_in_one_batch_is_settled_in_order(store: PersistenceService) -> None:
    assert store.upsert_many([item("A-1", "newer", 9), item("A-1", "older", 1)]) == [W, S]
    assert store.upsert_many([item("A-1", "v3", 10), item("A-1", "v3", 10), item("A-1", "v4", 11)]) == [W, U, W]
    assert store.get("jira", "A-1").content == "v4"
    assert store.get("jira", "A-1").metadata["extra"]["rev"] == "v4"
    assert_catalog_agrees_with_files(store)
    assert temp_files(store) == []


def test_a_collision_refuses_the_whole_batch_before_anything_is_stored(store: PersistenceService) -> None:
    store.upsert(resource("a/b", "first"))
    seq = store.last_change_seq()
    with pytest.raises(PersistenceError, match="a_b"):
        store.upsert_many([item("A-1", "fine"), item("a_b", "second")])
    with pytest.raises(PersistenceError, match="refusing to overwrite"):
        store.upsert_many([item("X-1", "fine"), item("c/d", "one"), item("c_d", "two")])  # within the batch
    assert store.get("jira", "A-1") is None and store.get("jira", "X-1") is None and store.get("jira", "c/d") is None
    assert store.get("jira", "a/b").content == "first"
    assert store.last_change_seq() == seq and temp_files(store) == []


def test_every_file_is_fsynced_and_the_directory_once_per_batch(
    store: PersistenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = record_syncs(monkeypatch)
    store.upsert_many([item(f"A-{n}", "x") for n in range(10)])
    directory = str(store.tickets_dir)
    assert synced.count(directory) == 1
    files = [name for name in synced if name != directory]
    # Staged, then published: named temp files, or unnamed inodes ("<dir>/#<inode> (deleted)").
    assert len(files) == 20 and all(Path(name).name.endswith((".tmp", " (deleted)")) for name in files)
    synced.clear()
    store.upsert_many([item(f"A-{n}", "x") for n in range(10)])  # all unchanged: nothing is written
    assert synced == []


def test_an_older_snapshot_committed_by_another_writer_meanwhile_makes_the_batch_entry_stale(
    store: PersistenceService,
) -> None:
    store.upsert(resource("A-1", "v1", 0))
    other = PersistenceService(store.data_path)
    real_write = store.catalog.write

    def write():  # type: ignore[no-untyped-def]
        other.upsert(resource("A-1", "v9", 9))  # lands between the batch's staging and its transaction
        return real_write()

    store.catalog.write = write  # type: ignore[method-assign]
    assert store.upsert_many([item("A-1", "v5", 5), item("A-2", "new", 5)]) == [S, W]
    assert store.get("jira", "A-1").content == "v9"
    assert_catalog_agrees_with_files(store)
    assert temp_files(store) == []


BATCH = 20


def headed(n: int) -> tuple[TicketResource, datetime]:
    """A batch ticket whose text says whose it is, as normalised tickets do (the reconcile reads it)."""
    updated = T0 + timedelta(minutes=1)
    content = f"Title: b{n}\nTicket: jira:B-{n}\nUpdated: {updated.isoformat()}\n\nb{n}\n"
    metadata = {"updated_at": updated.isoformat(), "rev": f"b{n}"}
    return TicketResource(ticket_id=f"B-{n}", content=content, source_type="jira", metadata=metadata), updated


def _batch_and_die_after_renames(data_path: Path, renames: int) -> None:
    """Child: upsert a batch of BATCH new tickets, and SIGKILL itself after `renames` files were published (0: before any)."""
    die_after_publishes(renames)
    PersistenceService(data_path).upsert_many([headed(n) for n in range(BATCH)])
    os._exit(3)  # the batch finished, so the kill came too late: the test fails on this exit code


@pytest.mark.parametrize("renames", [0, 1, 7, 2 * BATCH - 1])
def test_a_batch_killed_mid_transaction_is_healed_by_the_startup_reconcile(
    store: PersistenceService, renames: int
) -> None:
    store.upsert(resource("A-1", "before", 0))
    process = multiprocessing.get_context("fork").Process(
        target=_batch_and_die_after_renames, args=(store.data_path, renames)
    )
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    assert store.count() == 1 and store.last_change_seq() == 1  # the transaction never committed
    on_disk = {p.name for p in store.tickets_dir.iterdir() if p.name.startswith("jira_B-") and p.suffix == ".txt"}
    assert len(on_disk) == (renames + 1) // 2  # content first, then metadata, ticket by ticket
    report = startup_check(store, older_than=0)
    assert sorted(report.rows_added) == sorted(name[: -len(".txt")] for name in on_disk)
    assert temp_files(store) == []  # the unrenamed temp files were swept
    assert store.last_change_seq() == 1 + len(on_disk)  # every adopted file is in the feed
    # Re-running the batch (the resync's cursor did not move) completes it.
    outcomes = store.upsert_many([headed(n) for n in range(BATCH)])
    assert set(outcomes) <= {W, U} and store.count() == BATCH + 1
    for n in range(BATCH):
        stored = store.get("jira", f"B-{n}")
        assert stored.content == headed(n)[0].content and stored.metadata["extra"]["rev"] == f"b{n}"
    assert_catalog_agrees_with_files(store)


def _race(data_path: str, seed: int, rounds: int, start: object) -> None:
    store = PersistenceService(data_path)
    start.wait(30)  # type: ignore[attr-defined]
    for writes in race_rounds(seed, rounds, batched=True):
        store.upsert_many([item(ticket, f"{ticket} at minute {minute}", minute) for ticket, minute in writes])


def test_four_processes_racing_batches_end_at_the_newest(tmp_path: Path) -> None:
    data_path = str(tmp_path / "data")
    PersistenceService(data_path)
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [context.Process(target=_race, args=(data_path, seed, 25, start)) for seed in range(4)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    store = PersistenceService(data_path)
    for ticket, minute in newest_minutes(range(4), 25, batched=True).items():
        stored = store.get("jira", ticket)
        assert stored.content == f"{ticket} at minute {minute}"
        assert stored.metadata["extra"]["rev"] == stored.content
    assert_catalog_agrees_with_files(store)
    assert temp_files(store) == []

"""One rule for what the catalog adopts from a ticket's files, whichever repair runs it.

Each case is what a crash (or a hand) can leave in `tickets/`, repaired once by the per-hash call
(`PersistenceService.reconcile`) and once by the startup scan (`housekeeping.reconcile`); both must
leave the same catalog. The two used to differ on every case here.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_manager.collectors.changes import ChangeKind
from data_manager.collectors.housekeeping import reconcile
from data_manager.collectors.persistence import PersistenceService, UpsertOutcome, render_metadata
from data_manager.collectors.tickets import TicketResource

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
HASH = "memory_T1"


def ticket(text: str, minutes: int, *, headed: bool = True, ticket_id: str = "T1") -> TicketResource:
    when = T0 + timedelta(minutes=minutes)
    content = f"Ticket: memory:{ticket_id}\nUpdated: {when.isoformat()}\n\n{text}\n" if headed else text
    return TicketResource(ticket_id=ticket_id, content=content, source_type="memory", metadata={"updated_at": when})


def crash_left(store: PersistenceService, resource: TicketResource, *, metadata: TicketResource | None) -> None:
    """Files as a write killed after its renames leaves them: `resource`'s content, `metadata`'s metadata file."""
    time.sleep(0.01)  # the file system's clock is coarser than the catalog's
    store.content_path(resource.get_hash()).write_text(resource.get_content())
    if metadata is not None:
        store.metadata_path(resource.get_hash()).write_text(render_metadata(metadata.get_metadata()))


def per_hash(store: PersistenceService, hash_: str) -> bool:
    return store.reconcile(hash_)


def scan(store: PersistenceService, hash_: str) -> bool:
    report = reconcile(store)
    return hash_ in report.rows_added + report.rows_updated


Repair = Callable[[PersistenceService, str], bool]
both_repairs = pytest.mark.parametrize("repair", [per_hash, scan], ids=["per-hash", "scan"])


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@both_repairs
def test_the_upstream_time_comes_from_the_metadata_file(store: PersistenceService, repair: Repair) -> None:
    # Content without an `Updated:` header (the scan used to read the time from there, and cleared it).
    store.upsert(ticket("v1", 0, headed=False))
    crash_left(store, ticket("v2", 5, headed=False), metadata=ticket("v2", 5))
    assert repair(store, HASH) is True
    assert store.get("memory", "T1").entry.updated_at == (T0 + timedelta(minutes=5)).isoformat()
    assert store.upsert(ticket("v1.5", 2, headed=False)) is UpsertOutcome.STALE  # the ordering guard holds


@both_repairs
def test_no_newer_time_than_the_metadata_on_disk(store: PersistenceService, repair: Repair) -> None:
    # Killed between the renames: the content (renamed first) is v2, the metadata still v1.
    store.upsert(ticket("v1", 0))
    crash_left(store, ticket("v2", 5), metadata=None)
    assert repair(store, HASH) is True
    entry = store.get("memory", "T1").entry
    assert entry.updated_at == T0.isoformat()  # v2 is not wholly on disk
    assert entry.content_digest == sha(store.content_path(HASH).read_bytes())
    assert store.upsert(ticket("v2", 5)) is UpsertOutcome.WRITTEN  # ...and its next write completes it


@both_repairs
def test_the_upstream_time_never_moves_back(store: PersistenceService, repair: Repair) -> None:
    store.upsert(ticket("v5", 5))
    crash_left(store, ticket("edited", 2), metadata=ticket("edited", 2))
    assert repair(store, HASH) is True
    assert store.get("memory", "T1").entry.updated_at == (T0 + timedelta(minutes=5)).isoformat()


@both_repairs
def test_a_new_ticket_killed_between_its_renames_is_adopted_from_its_header(
    store: PersistenceService, repair: Repair
) -> None:
    crash_left(store, ticket("v1", 0), metadata=None)  # no metadata file yet: the content says whose it is
    assert repair(store, HASH) is True
    entry = store.get("memory", "T1").entry
    assert (entry.source, entry.ticket_id, entry.updated_at) == ("memory", "T1", "")  # no version wholly stored
    assert [(c.ticket_id, c.kind) for c in store.changes()] == [("T1", ChangeKind.WRITTEN)]


@both_repairs
def test_a_new_ticket_named_by_its_metadata_is_adopted(store: PersistenceService, repair: Repair) -> None:
    crash_left(store, ticket("v1", 0, headed=False), metadata=ticket("v1", 0))
    assert repair(store, HASH) is True
    assert store.get("memory", "T1").entry.updated_at == T0.isoformat()


@both_repairs
def test_the_metadata_file_decides_whose_files_they_are(store: PersistenceService, repair: Repair) -> None:
    # The header names T1, the metadata file another ticket: not adopted, and nothing is deleted.
    crash_left(store, ticket("v1", 0), metadata=ticket("v1", 0, ticket_id="T2"))
    assert repair(store, HASH) is False
    assert store.count() == 0 and store.content_path(HASH).exists() and store.metadata_path(HASH).exists()
    assert reconcile(store).unknown_files == [f"{HASH}.txt"]


@both_repairs
def test_files_of_a_ticket_stored_under_another_hash_are_left_and_reported(
    store: PersistenceService, repair: Repair
) -> None:
    # A row for memory:T1 under another name (older catalogs): a second row would break UNIQUE(source, ticket_id).
    store.upsert(ticket("v1", 0))
    with store.catalog.write() as conn:
        conn.execute("UPDATE tickets SET hash = 'legacy_T1' WHERE hash = ?", (HASH,))
    os.replace(store.content_path(HASH), store.content_path("legacy_T1"))
    os.replace(store.metadata_path(HASH), store.metadata_path("legacy_T1"))
    crash_left(store, ticket("v2", 5), metadata=ticket("v2", 5))
    seq = store.last_change_seq()
    assert repair(store, HASH) is False  # the per-hash call used to raise sqlite3.IntegrityError
    assert [e.hash for e in store.list_entries()] == ["legacy_T1"] and store.last_change_seq() == seq
    assert store.content_path(HASH).exists()
    assert reconcile(store).claimed_files == [f"{HASH}.txt"]


@both_repairs
def test_a_missing_metadata_file_is_described_as_missing(store: PersistenceService, repair: Repair) -> None:
    store.upsert(ticket("v1", 0))
    crash_left(store, ticket("v2", 0), metadata=None)
    store.metadata_path(HASH).unlink()
    assert repair(store, HASH) is True
    assert store.get("memory", "T1").entry.metadata_digest == sha(b"")  # the digest of no metadata


@both_repairs
def test_content_that_is_not_utf8_is_adopted_by_its_bytes(store: PersistenceService, repair: Repair) -> None:
    store.upsert(ticket("v1", 0))
    time.sleep(0.01)
    store.content_path(HASH).write_bytes(b"Ticket: memory:T1\n\nbroken \xff\n")
    assert repair(store, HASH) is True  # the per-hash call used to raise UnicodeDecodeError
    [entry] = store.list_entries()
    assert entry.content_digest == sha(store.content_path(HASH).read_bytes())


def test_the_scan_reads_a_file_renamed_after_its_row_even_when_staged_before(store: PersistenceService) -> None:
    """A write stages (and stamps the mtime of) its files before it takes the lock; if another writer
    commits in between, the late rename carries an mtime older than that row. The rename sets the ctime."""
    store.upsert(ticket("v1", 0))
    written = datetime.fromisoformat(store.get("memory", "T1").entry.written_at).timestamp()
    staged = []
    for path, text in (
        (store.content_path(HASH), ticket("v2", 5).get_content()),
        (store.metadata_path(HASH), render_metadata(ticket("v2", 5).get_metadata())),
    ):
        temp = path.with_name(f".{path.name}.x.tmp")
        temp.write_text(text)
        os.utime(temp, (written - 60, written - 60))
        staged.append((temp, path))
    time.sleep(0.01)
    for temp, path in staged:
        os.replace(temp, path)
    assert reconcile(store).rows_updated == [HASH]
    assert store.get("memory", "T1").entry.updated_at == (T0 + timedelta(minutes=5)).isoformat()
    assert reconcile(store).changed == 0

"""The catalog's costs stay flat: the schema runs once per database and the WAL stays bounded under forks."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from data_manager.collectors.catalog import SCHEMA_VERSION, Catalog
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import TicketResource


def test_the_schema_runs_once_per_database_not_per_connection(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    Catalog(path).close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        raw.execute("DROP TABLE resyncs")  # a marker: a schema run would bring it back
    Catalog(path).close()
    with sqlite3.connect(path) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "resyncs" not in tables and "tickets" in tables


def test_a_catalog_from_before_schema_versions_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE cursors (system TEXT PRIMARY KEY, cursor TEXT NOT NULL)")
        raw.execute("INSERT INTO cursors VALUES ('jira', '2024-05-01T10:00:00+00:00')")
    catalog = Catalog(path)
    assert catalog.read().execute("SELECT cursor FROM cursors").fetchone()[0] == "2024-05-01T10:00:00+00:00"
    assert catalog.read().execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 0
    assert catalog.read().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def _one_forked_write(data_path: Path, n: int) -> None:
    """Like an RQ work horse: open the store in a fresh process, write once, leave with os._exit."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            store = PersistenceService(data_path, fsync=False)
            store.catalog.wal_limit_bytes = 64 * 1024
            store.upsert(TicketResource(ticket_id=str(n % 50), content=f"version {n} " + "x" * 2000, source_type="m"))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_wal_stays_bounded_when_every_process_is_the_first_opener(tmp_path: Path) -> None:
    # Nobody keeps the database open and nobody closes it: without a checkpoint discipline each process
    # recovers the whole WAL and appends to it, so it grows by one write's pages per process.
    data_path = tmp_path / "data"
    PersistenceService(data_path, fsync=False).close()
    wal = data_path / "catalog.sqlite3-wal"
    sizes = []
    for n in range(300):
        _one_forked_write(data_path, n)
        sizes.append(wal.stat().st_size if wal.exists() else 0)
    assert max(sizes) < 64 * 1024 + 32 * 1024, max(sizes)
    store = PersistenceService(data_path)
    assert store.count() == 50
    assert store.get("m", "49").content.startswith("version 299 ")


def test_checkpoint_truncates_the_wal(tmp_path: Path) -> None:
    store = PersistenceService(tmp_path / "data", fsync=False)
    for n in range(20):
        store.upsert(TicketResource(ticket_id=str(n), content="x" * 5000, source_type="m"))
    assert store.catalog.wal_size() > 0
    assert store.catalog.checkpoint() is True
    assert store.catalog.wal_size() == 0
    assert store.count() == 20


def test_a_checkpoint_kept_from_finishing_by_a_long_reader_is_not_retried_on_every_commit(tmp_path: Path) -> None:
    store = PersistenceService(tmp_path / "data", fsync=False)
    store.catalog.wal_limit_bytes = 64 * 1024
    attempts: list[bool] = []
    real_checkpoint = store.catalog.checkpoint
    store.catalog.checkpoint = lambda: attempts.append(real_checkpoint()) or attempts[-1]  # type: ignore[method-assign]
    reader = sqlite3.connect(store.catalog.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM tickets").fetchone()  # a long read: holds its snapshot
    n = 0
    while store.catalog.wal_size() < 3 * 64 * 1024:
        store.upsert(TicketResource(ticket_id=str(n), content="x" * 3000, source_type="m"))
        n += 1
    # One failed attempt per limit's worth of growth, not one per commit (each waits for the reader).
    assert attempts and not any(attempts) and len(attempts) <= 3, (attempts, n)
    reader.execute("COMMIT")
    reader.close()
    failed = len(attempts)
    for k in range(200):  # once the WAL has grown another limit's worth, the next attempt finishes
        store.upsert(TicketResource(ticket_id=f"after-{k}", content="x" * 3000, source_type="m"))
        if len(attempts) > failed:
            break
    assert attempts[failed:] == [True] and store.catalog.wal_size() == 0

"""The SQLite catalog beside the ticket files: what is stored, for which upstream version, and sync state.

SQLite in WAL mode with `BEGIN IMMEDIATE` write transactions gives one writer at a time across
every worker process, which is what makes persistence's compare-then-write ordering safe.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    hash            TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    updated_at      TEXT,              -- upstream update time, ISO-8601 UTC ('' when unknown)
    updated_ts      REAL,              -- the same as epoch seconds, for ordering
    content_digest  TEXT NOT NULL,
    metadata_digest TEXT NOT NULL,
    written_at      TEXT NOT NULL,     -- when we last wrote the files
    UNIQUE (source, ticket_id)
);
CREATE TABLE IF NOT EXISTS cursors (
    system     TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS removals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source          TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    removed_at      TEXT NOT NULL,     -- ISO-8601 UTC
    removed_ts      REAL NOT NULL,
    reason          TEXT NOT NULL,     -- deleted upstream | out of scope | delete webhook
    updated_at      TEXT,              -- the removed copy's catalog facts, to restore it as it was
    updated_ts      REAL,
    content_digest  TEXT,
    metadata_digest TEXT,
    in_trash        INTEGER NOT NULL,  -- 1 while its files are in trash/ (0 after purge or restore)
    restored_at     TEXT,
    purged_at       TEXT
);
CREATE INDEX IF NOT EXISTS removals_by_ticket ON removals (source, ticket_id);
CREATE INDEX IF NOT EXISTS removals_by_time ON removals (removed_ts);
CREATE TABLE IF NOT EXISTS resyncs (
    system      TEXT PRIMARY KEY,
    finished_at TEXT NOT NULL,
    summary     TEXT NOT NULL          -- JSON
);
"""


@dataclass(frozen=True)
class CatalogEntry:
    hash: str
    source: str
    ticket_id: str
    updated_at: str
    updated_ts: float | None
    content_digest: str
    metadata_digest: str
    written_at: str


class Catalog:
    """One connection per thread (sqlite3 connections must not cross threads)."""

    def __init__(self, path: Path, busy_timeout: float = 60.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) != os.getpid():
            # Inherited across fork (RQ forks a work horse per job): SQLite connections must not cross a
            # fork, so leave the parent's alone and open our own.
            conn = None
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction: no other process writes until it ends."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def read(self) -> sqlite3.Connection:
        return self._connection()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def entry_from_row(row: sqlite3.Row) -> CatalogEntry:
    return CatalogEntry(**{key: row[key] for key in row.keys()})  # noqa: SIM118 - iterating a Row yields values

"""The SQLite catalog beside the ticket files: what is stored, for which upstream version, and sync state.

SQLite in WAL mode with short `BEGIN IMMEDIATE` write transactions gives one writer at a time across
every worker process, which is what makes persistence's check-then-rename ordering safe.

Costs stay flat however many processes come and go (RQ forks a work horse per job and the horse
leaves with `os._exit`, so its connection is never closed):

- the schema runs once per database (`PRAGMA user_version`), not once per connection;
- a commit that leaves the WAL above `wal_limit_bytes` (1 MiB) checkpoints it with TRUNCATE. Without this,
  a process that is the first to open the database rebuilds the WAL index from the whole WAL and
  cannot reset it, so the WAL (and every later first open) grows by one job's pages per job;
- `journal_size_limit` trims the WAL file whenever SQLite itself resets it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from data_manager.collectors.changes import Change, ChangeKind

# Each version's statements bring a catalog at the version before it up to that version, in place;
# version 0 is an empty database (or one from before versions, whose tables the IF NOT EXISTS keep).
_VERSION_1 = (
    """CREATE TABLE IF NOT EXISTS tickets (
    hash            TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    updated_at      TEXT,              -- upstream update time, ISO-8601 UTC ('' when unknown)
    updated_ts      REAL,              -- the same as epoch seconds, for ordering
    content_digest  TEXT NOT NULL,
    metadata_digest TEXT NOT NULL,     -- of the metadata's canonical JSON form (see persistence)
    written_at      TEXT NOT NULL,     -- when we last wrote the files
    UNIQUE (source, ticket_id)
)""",
    """CREATE TABLE IF NOT EXISTS cursors (
    system     TEXT PRIMARY KEY,
    cursor     TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS removals (
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
)""",
    "CREATE INDEX IF NOT EXISTS removals_by_ticket ON removals (source, ticket_id)",
    "CREATE INDEX IF NOT EXISTS removals_by_time ON removals (removed_ts)",
    """CREATE TABLE IF NOT EXISTS resyncs (
    system      TEXT PRIMARY KEY,
    finished_at TEXT NOT NULL,
    summary     TEXT NOT NULL          -- JSON
)""",
)
_VERSION_2 = (
    # The change feed: every write and removal gets the next seq in the transaction that commits it.
    """CREATE TABLE IF NOT EXISTS changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused, so a reader's "after" stays valid
    source      TEXT NOT NULL,
    ticket_id   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    kind        TEXT NOT NULL,         -- written | removed
    changed_at  TEXT NOT NULL          -- ISO-8601 UTC
)""",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (_VERSION_1, _VERSION_2)
SCHEMA_VERSION = len(MIGRATIONS)

WAL_LIMIT_BYTES = 1024 * 1024  # checkpoint (TRUNCATE) after a commit that leaves the WAL larger
CHECKPOINT_BUSY_MS = 250  # a checkpoint that would wait longer for other writers is left to the next commit

# Connections inherited across a fork belong to the parent: never close (or let the garbage collector
# close) them in the child, where SQLite's bookkeeping of the parent's locks is not ours to touch.
_inherited: list[sqlite3.Connection] = []


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
    """One connection per thread and process (sqlite3 connections must not cross threads or forks)."""

    def __init__(self, path: Path, busy_timeout: float = 60.0, *, wal_limit_bytes: int = WAL_LIMIT_BYTES) -> None:
        self.path = Path(path)
        self.wal_path = self.path.with_name(self.path.name + "-wal")
        self.busy_timeout = busy_timeout
        self.wal_limit_bytes = wal_limit_bytes
        self._local = threading.local()
        self._writers = threading.RLock()
        self._writers_pid = os.getpid()
        self._next_checkpoint_bytes = 0
        self._connection()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) != os.getpid():
            # Inherited across fork: leave the parent's connection alone and open our own. The parent
            # keeps the database open, so this open does not have to recover the WAL.
            _inherited.append(conn)
            conn = None
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA journal_size_limit={self.wal_limit_bytes}")
            _ensure_schema(conn)
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction: no other process writes until it ends. Keep it short.

        Threads of one process queue on a mutex first: SQLite's busy handler would make each of them
        sleep in growing steps (up to 100 ms) while another thread holds the lock for a millisecond.
        """
        conn = self._connection()
        with self._process_writers():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            self._bound_wal()

    def _process_writers(self) -> contextlib.AbstractContextManager[bool]:
        if self._writers_pid != os.getpid():  # forked: the parent's mutex may have been held by another thread
            self._writers, self._writers_pid = threading.RLock(), os.getpid()
        return self._writers

    def read(self) -> sqlite3.Connection:
        return self._connection()

    def wal_size(self) -> int:
        try:
            return self.wal_path.stat().st_size
        except FileNotFoundError:
            return 0

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it; False when other connections kept it from finishing.

        For housekeeping and for commits that leave the WAL over its limit. It waits at most
        `CHECKPOINT_BUSY_MS` for other writers, so it never stalls a job for long.
        """
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError:  # locked: another process is checkpointing or writing
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        return not busy

    def _bound_wal(self) -> None:
        """Checkpoint when the WAL is over its limit; after a checkpoint a long reader kept from finishing,
        wait for another limit's worth of growth, so commits do not each pay the checkpoint's wait."""
        size = self.wal_size()
        if size > max(self.wal_limit_bytes, self._next_checkpoint_bytes):
            finished = self.checkpoint()
            self._next_checkpoint_bytes = 0 if finished else size + self.wal_limit_bytes

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            if getattr(self._local, "pid", None) == os.getpid():
                conn.close()
            else:
                _inherited.append(conn)
            self._local.conn = None


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema once per database; a connection to a current database only reads a header.

    The versions a catalog lacks run in order in one transaction, so a crash mid-upgrade leaves the old version.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    conn.execute("PRAGMA journal_mode=WAL")  # persistent in the database file; not allowed inside a transaction
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have upgraded it
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def entry_from_row(row: sqlite3.Row) -> CatalogEntry:
    return CatalogEntry(**{key: row[key] for key in row.keys()})  # noqa: SIM118 - iterating a Row yields values


def record_change(conn: sqlite3.Connection, source: str, ticket_id: str, hash_: str, kind: ChangeKind) -> None:
    """Give a write or removal the next change-feed seq; call it inside the transaction that commits the change."""
    conn.execute(
        "INSERT INTO changes (source, ticket_id, hash, kind, changed_at) VALUES (?, ?, ?, ?, ?)",
        (source, ticket_id, hash_, kind.value, datetime.now(UTC).isoformat()),
    )


def change_from_row(row: sqlite3.Row) -> Change:
    return Change(
        seq=row["seq"], system=row["source"], ticket_id=row["ticket_id"], hash=row["hash"], kind=ChangeKind(row["kind"])
    )

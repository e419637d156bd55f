"""`PostgresPersistence`: the ticket store in PostgreSQL, for workers on many machines.

The same public API and guarantees as the embedded `PersistenceService` (see `TicketStore`):
- Idempotent: identical content and metadata → no write and no change-feed entry (decided from digests
  of the canonical form, first without a transaction, then again by the write statement itself).
- Atomic: a write or removal is one transaction: the row, the removal log, the trash and the feed entry.
- Ordered: the guard is in the upsert statement (`ON CONFLICT ... DO UPDATE ... WHERE stored.updated_ts
  <= excluded.updated_ts`), so no interleaving of workers lets an older snapshot overwrite a newer one.
- Hash collisions (two ticket ids, one file name) are refused, as the files would be.
- The change feed numbers each change in commit order (see `migrations/0002_change_feed.sql`), and
  announces it with NOTIFY, so `wait_for_changes` wakes at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from data_manager.collectors.catalog import CatalogEntry
from data_manager.collectors.changes import Change, ChangeKind
from data_manager.collectors.persistence import (
    PersistenceError,
    Removal,
    RemovalReason,
    StoredTicket,
    StoreUnavailable,
    UpsertOutcome,
    canonical_metadata,
    persist_resource_files,
)
from data_manager.collectors.postgres.migrations import UPGRADE_COMMAND, current_version, latest_version, upgrade
from data_manager.collectors.postgres.pool import PoolSettings, ProcessPool
from data_manager.collectors.postgres.url import redact_url
from data_manager.collectors.resource_base import BaseResource
from data_manager.collectors.tickets.model import parse_datetime
from data_manager.collectors.tickets.ticket_resource import TicketResource

NOTIFY_CHANNEL = "ticket_changes"
_ENTRY_COLUMNS = "hash, source, ticket_id, updated_at, updated_ts, content_digest, metadata_digest, written_at"
_STREAM_BATCH = 500

# The ordered, idempotent write: the guard and the "unchanged" test are in the statement itself, so
# it is right under any interleaving of writers (the row is locked from the conflict to the commit).
_UPSERT = f"""
INSERT INTO tickets AS stored (hash, source, ticket_id, updated_at, updated_ts, content, metadata,
                               content_digest, metadata_digest, written_at)
VALUES (%(hash)s, %(source)s, %(ticket_id)s, %(updated_at)s, %(updated_ts)s, %(content)s, %(metadata)s,
        %(content_digest)s, %(metadata_digest)s, %(written_at)s)
ON CONFLICT (hash) DO UPDATE SET
    updated_at = excluded.updated_at, updated_ts = excluded.updated_ts, content = excluded.content,
    metadata = excluded.metadata, content_digest = excluded.content_digest,
    metadata_digest = excluded.metadata_digest, written_at = excluded.written_at
WHERE stored.source = excluded.source AND stored.ticket_id = excluded.ticket_id
  AND (stored.updated_ts IS NULL OR excluded.updated_ts IS NULL OR stored.updated_ts <= excluded.updated_ts)
  AND (stored.content_digest, stored.metadata_digest) IS DISTINCT FROM (excluded.content_digest, excluded.metadata_digest)
RETURNING {_ENTRY_COLUMNS}
"""


# The feed entries of one transaction: the counter moves by n, the entries take the n numbers up to it, and
# the notification goes out at commit. Data-modifying CTEs run once, whether or not anything reads them.
_FEED = """
WITH counter AS (UPDATE change_counter SET seq = seq + %(n)s RETURNING seq),
     logged AS (
         INSERT INTO changes (seq, source, ticket_id, hash, kind)
         SELECT counter.seq - %(n)s + entry.n, entry.source, entry.ticket_id, entry.hash, %(kind)s
         FROM counter,
              unnest(%(sources)s::text[], %(ticket_ids)s::text[], %(hashes)s::text[])
                  WITH ORDINALITY AS entry (source, ticket_id, hash, n)
         RETURNING seq)
SELECT pg_notify(%(channel)s, counter.seq::text) FROM counter
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Row:
    """A ticket as one upsert statement's parameters."""

    params: dict[str, Any]

    @property
    def hash(self) -> str:
        return str(self.params["hash"])


def _row_of(resource: TicketResource, updated_at: datetime | str | None) -> _Row:
    metadata = resource.get_metadata()
    when = parse_datetime(updated_at if updated_at is not None else resource.metadata.get("updated_at") or None)
    canonical = canonical_metadata(metadata)
    content = resource.get_content()
    return _Row(
        {
            "hash": resource.get_hash(),
            "source": resource.source_type,
            "ticket_id": str(resource.ticket_id),
            "updated_at": when.isoformat() if when else "",
            "updated_ts": when.timestamp() if when else None,
            "content": content,
            "metadata": canonical if metadata is not None else None,
            "content_digest": _digest(content),
            "metadata_digest": _digest(canonical),
            "written_at": _now(),
        }
    )


def _entry(row: dict[str, Any]) -> CatalogEntry:
    return CatalogEntry(**{key: row[key] for key in CatalogEntry.__dataclass_fields__})


class PostgresPersistence:
    """Tickets, catalog, sync state, removal log, trash and change feed in one PostgreSQL database."""

    def __init__(self, url: str, settings: PoolSettings | None = None) -> None:
        self._url = url
        self.pool = ProcessPool(url, settings or PoolSettings())
        self._listener: psycopg.Connection[tuple[object, ...]] | None = None
        self._listener_pid = 0
        self._listener_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresPersistence({redact_url(self._url)!r})"

    @property
    def display_url(self) -> str:
        return redact_url(self._url)

    # -- the seed's API: files, on every store -----------------------------------------------------
    def persist_resource(self, resource: BaseResource, target_dir: str | os.PathLike[str]) -> Path:
        return persist_resource_files(resource, target_dir)

    # -- the store itself ----------------------------------------------------------------------------
    def location(self, hash_: str) -> str:
        return f"{self.display_url} (ticket {hash_})"

    def require_current_schema(self) -> None:
        with self._errors("check the schema"), self.pool.connect(autocommit=True) as conn:
            version = current_version(conn)
        latest = latest_version()
        if version < latest:
            raise PersistenceError(
                f"the database {self.display_url} has schema version {version}, this code needs {latest}: "
                f"run `{UPGRADE_COMMAND}`"
            )
        if version > latest:
            raise PersistenceError(
                f"the database {self.display_url} has schema version {version}, newer than this code's {latest}: "
                f"upgrade the code"
            )

    def upgrade_schema(self, *, target: int | None = None) -> list[str]:
        with self._errors("upgrade the schema"), self.pool.connect(autocommit=True) as conn:
            return [f"{m.version:04d}_{m.name}" for m in upgrade(conn, target=target)]

    def schema_version(self) -> int:
        with self._errors("read the schema version"), self.pool.connect(autocommit=True) as conn:
            return current_version(conn)

    def close(self) -> None:
        with self._listener_lock:
            if self._listener is not None and self._listener_pid == os.getpid():
                self._listener.close()
            self._listener = None
        self.pool.close()

    # -- writes --------------------------------------------------------------------------------------
    def upsert(self, resource: TicketResource, *, updated_at: datetime | str | None = None) -> UpsertOutcome:
        """Store the resource unless an identical or newer copy is stored: one transaction, feed entry included."""
        return self.upsert_many([(resource, updated_at)])[0]

    def upsert_many(
        self, items: Iterable[TicketResource | tuple[TicketResource, datetime | str | None]]
    ) -> list[UpsertOutcome]:
        """Upsert several tickets in one transaction (one commit for the lot); outcomes in the given order.

        Rows are locked in hash order, so concurrent batches never deadlock; one refused item (a hash
        collision) refuses the whole batch, as nothing of a failed transaction is kept.
        """
        rows = [_row_of(*item) if isinstance(item, tuple) else _row_of(item, None) for item in items]
        outcomes: dict[int, UpsertOutcome] = {}
        with self._errors("store tickets"), self.pool.pool().connection() as conn:
            settled = self._settle_without_lock(conn, rows)
            outcomes.update(settled)
            pending = sorted((i for i in range(len(rows)) if i not in settled), key=lambda i: rows[i].hash)
            if pending:
                with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                    written = []
                    for i in pending:
                        row = rows[i]
                        cur.execute(_UPSERT, row.params)
                        if cur.fetchone() is not None:
                            outcomes[i] = UpsertOutcome.WRITTEN
                            written.append(row)
                            continue
                        stored = cur.execute(
                            "SELECT source, ticket_id, updated_ts FROM tickets WHERE hash = %s", (row.hash,)
                        ).fetchone()
                        outcomes[i] = self._why_not_written(row, stored)
                    self._feed(cur, [(r.params["source"], r.params["ticket_id"], r.hash) for r in written], "written")
        return [outcomes[i] for i in range(len(rows))]

    def _settle_without_lock(self, conn: psycopg.Connection[Any], rows: list[_Row]) -> dict[int, UpsertOutcome]:
        """STALE or UNCHANGED decided from one read without a transaction (the common case when nothing changed).

        Safe: a stored version only moves forward, so what is stale or identical now stays so, and the
        write statement checks again anyway.
        """
        columns = "hash, source, ticket_id, updated_ts, content_digest, metadata_digest"
        with conn.cursor(row_factory=dict_row) as cur:
            if len(rows) == 1:  # the common case, and `= %s` plans faster than `= ANY(%s)`
                found = cur.execute(f"SELECT {columns} FROM tickets WHERE hash = %s", (rows[0].hash,)).fetchall()
            else:
                found = cur.execute(
                    f"SELECT {columns} FROM tickets WHERE hash = ANY(%s)", ([r.hash for r in rows],)
                ).fetchall()
        stored = {r["hash"]: r for r in found}
        settled: dict[int, UpsertOutcome] = {}
        for i, row in enumerate(rows):
            current = stored.get(row.hash)
            if current is None:
                continue
            self._refuse_other_owner(row, current)
            p = row.params
            if (
                p["updated_ts"] is not None
                and current["updated_ts"] is not None
                and p["updated_ts"] < current["updated_ts"]
            ):
                settled[i] = UpsertOutcome.STALE
            elif (current["content_digest"], current["metadata_digest"]) == (p["content_digest"], p["metadata_digest"]):
                settled[i] = UpsertOutcome.UNCHANGED
        return settled

    def _why_not_written(self, row: _Row, stored: dict[str, Any] | None) -> UpsertOutcome:
        if stored is None:  # cannot happen: a conflict means a row, and rows are locked until commit
            raise PersistenceError(f"{row.params['source']}:{row.params['ticket_id']} vanished during its upsert")
        self._refuse_other_owner(row, stored)
        p = row.params
        if p["updated_ts"] is not None and stored["updated_ts"] is not None and p["updated_ts"] < stored["updated_ts"]:
            return UpsertOutcome.STALE
        return UpsertOutcome.UNCHANGED

    @staticmethod
    def _refuse_other_owner(row: _Row, stored: dict[str, Any]) -> None:
        p = row.params
        if (stored["source"], stored["ticket_id"]) != (p["source"], p["ticket_id"]):
            raise PersistenceError(
                f"resource {p['source']}:{p['ticket_id']} maps to {row.hash}, which already holds "
                f"{stored['source']}:{stored['ticket_id']}; refusing to overwrite"
            )

    def _feed(self, cur: psycopg.Cursor[Any], changes: list[tuple[str, str, str]], kind: str) -> None:
        """Number `changes`, log them and announce them: the transaction's LAST statement (see 0002_change_feed.sql).

        One statement, so the counter's row lock is held for one round trip and the commit."""
        if not changes:
            return
        sources, ticket_ids, hashes = (list(column) for column in zip(*changes, strict=True))
        cur.execute(
            _FEED,
            {
                "n": len(changes),
                "sources": sources,
                "ticket_ids": ticket_ids,
                "hashes": hashes,
                "kind": kind,
                "channel": NOTIFY_CHANNEL,
            },
        )

    def delete(self, source_type: str, ticket_id: str, *, reason: str = RemovalReason.DELETED_UPSTREAM.value) -> bool:
        """Move a ticket to the trash and log the removal, in one transaction; False when nothing was stored."""
        with (
            self._errors(f"remove {source_type}:{ticket_id}"),
            self.pool.pool().connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            row = cur.execute(
                "SELECT * FROM tickets WHERE source = %s AND ticket_id = %s FOR UPDATE",
                (source_type, str(ticket_id)),
            ).fetchone()
            if row is None:
                return False
            now = datetime.now(UTC)
            removal = cur.execute(
                """INSERT INTO removals (source, ticket_id, hash, removed_at, removed_ts, reason, updated_at,
                                             updated_ts, content_digest, metadata_digest, in_trash)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, TRUE) RETURNING id""",
                (
                    source_type,
                    str(ticket_id),
                    row["hash"],
                    now.isoformat(),
                    now.timestamp(),
                    str(reason),
                    row["updated_at"],
                    row["updated_ts"],
                    row["content_digest"],
                    row["metadata_digest"],
                ),
            ).fetchone()
            assert removal is not None
            cur.execute(
                "INSERT INTO trash (removal_id, content, metadata) VALUES (%s, %s, %s)",
                (removal["id"], row["content"], row["metadata"]),
            )
            cur.execute("DELETE FROM tickets WHERE hash = %s", (row["hash"],))
            self._feed(cur, [(source_type, str(ticket_id), row["hash"])], "removed")
        return True

    # -- trash and the removal log -------------------------------------------------------------------
    def removals(self, *, since: datetime | None = None, source_type: str | None = None) -> list[Removal]:
        query = "SELECT * FROM removals WHERE removed_ts >= %s"
        args: list[Any] = [since.timestamp() if since else 0.0]
        if source_type is not None:
            query += " AND source = %s"
            args.append(source_type)
        return [Removal.from_row(r) for r in self._fetch(query + " ORDER BY removed_ts DESC, id DESC", args)]

    def restore(self, source_type: str, ticket_id: str) -> Removal:
        """Put the most recently trashed copy back (a `written` change); `PersistenceError` when none can be."""
        with (
            self._errors(f"restore {source_type}:{ticket_id}"),
            self.pool.pool().connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            if cur.execute(
                "SELECT 1 FROM tickets WHERE source = %s AND ticket_id = %s", (source_type, str(ticket_id))
            ).fetchone():
                raise PersistenceError(f"{source_type}:{ticket_id} is stored already; nothing to restore")
            row = cur.execute(
                """SELECT r.*, t.content, t.metadata FROM removals r JOIN trash t ON t.removal_id = r.id
                       WHERE r.source = %s AND r.ticket_id = %s AND r.in_trash
                       ORDER BY r.removed_ts DESC, r.id DESC LIMIT 1 FOR UPDATE OF r""",
                (source_type, str(ticket_id)),
            ).fetchone()
            if row is None:
                raise PersistenceError(
                    f"no trashed copy of {source_type}:{ticket_id} (never removed, already restored, or purged)"
                )
            occupied = cur.execute("SELECT source, ticket_id FROM tickets WHERE hash = %s", (row["hash"],)).fetchone()
            if occupied is not None:
                raise PersistenceError(
                    f"{row['hash']} now holds {occupied['source']}:{occupied['ticket_id']}; "
                    f"not restoring {source_type}:{ticket_id} over it"
                )
            cur.execute(
                """INSERT INTO tickets (hash, source, ticket_id, updated_at, updated_ts, content, metadata,
                                            content_digest, metadata_digest, written_at)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    row["hash"],
                    source_type,
                    str(ticket_id),
                    row["updated_at"] or "",
                    row["updated_ts"],
                    row["content"],
                    row["metadata"],
                    row["content_digest"] or "",
                    row["metadata_digest"] or "",
                    _now(),
                ),
            )
            cur.execute("DELETE FROM trash WHERE removal_id = %s", (row["id"],))
            cur.execute("UPDATE removals SET in_trash = FALSE, restored_at = %s WHERE id = %s", (_now(), row["id"]))
            self._feed(cur, [(source_type, str(ticket_id), row["hash"])], "written")
        assert row is not None
        return Removal.from_row({**row, "in_trash": True})

    def purge_trash(self, older_than: timedelta, *, now: datetime | None = None) -> int:
        cutoff = (now or datetime.now(UTC)) - older_than
        with self._errors("purge the trash"), self.pool.pool().connection() as conn, conn.transaction():
            purged = conn.execute(
                """WITH gone AS (UPDATE removals SET in_trash = FALSE, purged_at = %s
                                     WHERE in_trash AND removed_ts < %s RETURNING id)
                       DELETE FROM trash WHERE removal_id IN (SELECT id FROM gone) RETURNING removal_id""",
                (_now(), cutoff.timestamp()),
            ).fetchall()
        return len(purged)

    # -- reads ---------------------------------------------------------------------------------------
    def has_copy(self, source_type: str, ticket_id: str) -> bool:
        return bool(
            self._fetch("SELECT 1 FROM tickets WHERE source = %s AND ticket_id = %s", (source_type, str(ticket_id)))
        )

    def get(self, source_type: str, ticket_id: str) -> StoredTicket | None:
        rows = self._fetch(
            f"SELECT {_ENTRY_COLUMNS}, content, metadata FROM tickets WHERE source = %s AND ticket_id = %s",
            (source_type, str(ticket_id)),
        )
        return self._stored(rows[0]) if rows else None

    def get_by_hash(self, hash_: str) -> StoredTicket | None:
        rows = self._fetch(f"SELECT {_ENTRY_COLUMNS}, content, metadata FROM tickets WHERE hash = %s", (hash_,))
        return self._stored(rows[0]) if rows else None

    def list_entries(self, source_type: str | None = None) -> list[CatalogEntry]:
        return list(self.iter_entries(source_type))

    def iter_entries(self, source_type: str | None = None) -> Iterator[CatalogEntry]:
        """Streams in keyset pages (no transaction held open between them), in hash order."""
        after = ""
        while True:
            if source_type is None:
                rows = self._fetch(
                    f"SELECT {_ENTRY_COLUMNS} FROM tickets WHERE hash > %s ORDER BY hash LIMIT %s",
                    (after, _STREAM_BATCH),
                )
            else:
                rows = self._fetch(
                    f"SELECT {_ENTRY_COLUMNS} FROM tickets WHERE source = %s AND hash > %s ORDER BY hash LIMIT %s",
                    (source_type, after, _STREAM_BATCH),
                )
            for row in rows:
                yield _entry(row)
            if len(rows) < _STREAM_BATCH:
                return
            after = rows[-1]["hash"]

    def ticket_ids(self, source_type: str) -> set[str]:
        return {r["ticket_id"] for r in self._fetch("SELECT ticket_id FROM tickets WHERE source = %s", (source_type,))}

    def count(self, source_type: str | None = None) -> int:
        if source_type is None:
            rows = self._fetch("SELECT COUNT(*) AS n FROM tickets", ())
        else:
            rows = self._fetch("SELECT COUNT(*) AS n FROM tickets WHERE source = %s", (source_type,))
        return int(rows[0]["n"])

    # -- the change feed -----------------------------------------------------------------------------
    def changes(self, after: int = 0, limit: int = 1000) -> list[Change]:
        """Committed changes with `seq > after`, oldest first: no gaps, each once."""
        rows = self._fetch(
            "SELECT seq, source, ticket_id, hash, kind FROM changes WHERE seq > %s ORDER BY seq LIMIT %s",
            (after, limit),
        )
        return [Change(int(r["seq"]), r["source"], r["ticket_id"], r["hash"], ChangeKind(r["kind"])) for r in rows]

    def last_change_seq(self) -> int:
        return int(self._fetch("SELECT seq FROM change_counter", ())[0]["seq"])

    def wait_for_changes(self, after: int, timeout: float) -> bool:
        """Whether a change with `seq > after` is committed, waiting up to `timeout` seconds (LISTEN/NOTIFY)."""
        with self._errors("wait for changes"), self._listener_lock:
            conn = self._listening()
            if self.last_change_seq() > after:
                return True
            for _ in conn.notifies(timeout=max(0.0, timeout), stop_after=1):
                break
            return self.last_change_seq() > after

    def _listening(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._listener is not None and (self._listener_pid != os.getpid() or self._listener.closed):
            self._listener = None  # a parent's connection after a fork: never touched here
        if self._listener is None:
            conn = self.pool.connect(autocommit=True)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._listener, self._listener_pid = conn, os.getpid()
        return self._listener

    # -- sync state ----------------------------------------------------------------------------------
    def get_cursor(self, system: str) -> datetime | None:
        rows = self._fetch("SELECT cursor FROM cursors WHERE system = %s", (system,))
        return parse_datetime(rows[0]["cursor"]) if rows else None

    def set_cursor(self, system: str, when: datetime) -> None:
        value = parse_datetime(when)
        assert value is not None
        self._execute(
            "INSERT INTO cursors (system, cursor) VALUES (%s, %s) ON CONFLICT (system) DO UPDATE SET cursor = excluded.cursor",
            (system, value.isoformat()),
        )

    def record_resync(self, system: str, summary: dict[str, Any]) -> None:
        self._execute(
            """INSERT INTO resyncs (system, finished_at, summary) VALUES (%s, %s, %s)
               ON CONFLICT (system) DO UPDATE SET finished_at = excluded.finished_at, summary = excluded.summary""",
            (system, _now(), json.dumps(summary, sort_keys=True, default=str)),
        )

    def last_resync(self, system: str) -> dict[str, Any] | None:
        rows = self._fetch("SELECT finished_at, summary FROM resyncs WHERE system = %s", (system,))
        if not rows:
            return None
        return {"finished_at": rows[0]["finished_at"], **json.loads(rows[0]["summary"])}

    # -- helpers -------------------------------------------------------------------------------------
    def _fetch(self, query: str, args: Any) -> list[dict[str, Any]]:
        with self._errors("read"), self.pool.pool().connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, args).fetchall()

    def _execute(self, query: str, args: Any) -> None:
        with self._errors("write"), self.pool.pool().connection() as conn:
            conn.execute(query, args)

    @staticmethod
    def _stored(row: dict[str, Any]) -> StoredTicket:
        metadata = json.loads(row["metadata"]) if row["metadata"] else {}
        return StoredTicket(entry=_entry(row), content=row["content"], metadata=metadata)

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return _database_errors(doing, self.display_url)


@contextlib.contextmanager
def _database_errors(doing: str, where: str) -> Iterator[None]:
    """Driver errors as `PersistenceError`s naming the database (password hidden) and what failed."""
    try:
        yield
    except psycopg.Error as exc:  # the pool's PoolTimeout and PoolClosed are psycopg errors too
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        # OperationalError covers what passes: a refused or dropped connection, a server shutting down, the
        # pool's timeout, statement_timeout, deadlocks and serialisation failures. The rest is our bug or data.
        error = StoreUnavailable if isinstance(exc, psycopg.OperationalError) else PersistenceError
        raise error(f"cannot {doing} in {where}: {message}") from None

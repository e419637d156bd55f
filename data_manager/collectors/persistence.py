"""`PersistenceService`: stores resources as files plus a catalog, idempotently, atomically and in order.

- Idempotent: identical content and metadata → nothing is written at all.
- Atomic: each file is staged (written and fsynced where no reader sees it, see `staging`) and then linked
  or renamed into place in one step; a reader never sees a torn file.
- Ordered: a snapshot whose upstream update time is older than the stored one never overwrites it,
  even with many worker processes writing at once: files are staged outside any lock, and only the
  short catalog transaction that re-checks the guard, publishes them and records the version is serialised.
- Cheap when nothing changed: "unchanged" is decided from digests of the canonical form (content
  text, metadata as sorted JSON) against the catalog, with no YAML rendering and no write lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from data_manager.collectors.adoption import Adoption, adopt
from data_manager.collectors.catalog import Catalog, CatalogEntry, change_from_row, entry_from_row, record_change
from data_manager.collectors.changes import Change, ChangeKind
from data_manager.collectors.file_names import CONTENT_SUFFIX, META_SUFFIX
from data_manager.collectors.metadata_form import canonical_metadata as canonical_metadata
from data_manager.collectors.metadata_form import metadata_digest_of as metadata_digest_of
from data_manager.collectors.metadata_yaml import render_yaml
from data_manager.collectors.resource_base import BaseResource, ResourceMetadata
from data_manager.collectors.staging import (
    SYNC_FILE_SYSTEM_MIN_FILES,
    UNNAMED_FILES_LIMIT,
    StagedFile,
    can_sync_file_system,
    open_directory,
    stage_files,
    sync_file_system,
)
from data_manager.collectors.tickets.errors import TransientError
from data_manager.collectors.tickets.model import parse_datetime
from data_manager.collectors.tickets.ticket_resource import TicketResource, resource_hash
from data_manager.collectors.trash_repair import repair as repair_trash
from data_manager.collectors.trash_repair import trash_name

TICKETS_DIR = "tickets"
TRASH_DIR = "trash"
CATALOG_FILE = "catalog.sqlite3"
CHANGE_POLL_SECONDS = 0.1  # how often `wait_for_changes` looks at the catalog


class PersistenceError(Exception):
    """Storing or reading a resource failed; the message names the resource and the path."""


class StoreUnavailable(PersistenceError, TransientError):
    """The store could not be reached or answered in time (connection refused, server restarting, pool exhausted).

    Retried like an unreachable ticket system, so a database that is down for a while delays jobs but never
    moves an accepted event to the failed registry.
    """


class UpsertOutcome(str, Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"  # identical content and metadata were already stored
    STALE = "stale"  # the stored copy is newer upstream; kept


class RemovalReason(str, Enum):
    """Why a stored copy was removed (the catalog's removal log says it in these words)."""

    DELETED_UPSTREAM = "deleted upstream"
    OUT_OF_SCOPE = "out of scope"
    DELETE_WEBHOOK = "delete webhook"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Removal:
    """One logged removal of a stored copy."""

    id: int
    source: str
    ticket_id: str
    hash: str
    removed_at: str
    reason: str
    in_trash: bool
    restored_at: str | None
    purged_at: str | None

    @classmethod
    def from_row(cls, row: Any) -> Removal:
        return cls(
            id=row["id"],
            source=row["source"],
            ticket_id=row["ticket_id"],
            hash=row["hash"],
            removed_at=row["removed_at"],
            reason=row["reason"],
            in_trash=bool(row["in_trash"]),
            restored_at=row["restored_at"],
            purged_at=row["purged_at"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.source,
            "ticket_id": self.ticket_id,
            "removed_at": self.removed_at,
            "reason": self.reason,
            "in_trash": self.in_trash,
            "restored_at": self.restored_at or "",
            "purged_at": self.purged_at or "",
        }


@dataclass(frozen=True)
class StoredTicket:
    entry: CatalogEntry
    content: str
    metadata: dict[str, Any]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def render_metadata(metadata: ResourceMetadata | None) -> str:
    """The metadata file's text ("" when none)."""
    if metadata is None:
        return ""
    return render_yaml(metadata.as_dict())


def metadata_yaml(resource: BaseResource) -> str:
    return render_metadata(resource.get_metadata())


def atomic_write(path: Path, text: str, *, fsync: bool = True) -> None:
    """Write `text` to `path` atomically: staged beside it (see `staging`), then published in one step."""
    (staged,) = stage_files([(path, text)], fsync=fsync)
    try:
        staged.publish()
    finally:
        staged.discard()


@dataclass
class _Staged:
    """Fsynced files waiting to be published; whatever is not published is discarded."""

    files: list[StagedFile]

    def discard(self) -> None:
        for file in self.files:
            file.discard()
        self.files.clear()


@dataclass(frozen=True)
class _Snapshot:
    """What `upsert` compares against the catalog: identity, upstream time and digests of the canonical form."""

    source: str
    ticket_id: str
    updated_ts: float | None
    content_digest: str
    metadata_digest: str
    has_metadata: bool


@dataclass
class _Prepared:
    """One ticket of an upsert: its hash, texts, upstream time and digests, computed once."""

    hash: str
    content: str
    metadata: ResourceMetadata | None
    when: datetime | None
    snapshot: _Snapshot
    _meta_text: str | None = None

    def meta_text(self) -> str:
        """The metadata file's YAML, rendered only for a ticket that is written (it is the costly part)."""
        if self._meta_text is None:
            self._meta_text = render_metadata(self.metadata)
        return self._meta_text

    def describe(self) -> str:
        return f"{self.snapshot.source}:{self.snapshot.ticket_id} as {self.hash}{CONTENT_SUFFIX}"

    def row(self) -> dict[str, Any]:
        """Its catalog row once written."""
        return {
            "hash": self.hash,
            "source": self.snapshot.source,
            "ticket_id": self.snapshot.ticket_id,
            "updated_at": self.when.isoformat() if self.when else "",
            "updated_ts": self.snapshot.updated_ts,
            "content_digest": self.snapshot.content_digest,
            "metadata_digest": self.snapshot.metadata_digest,
            "written_at": _now(),
        }


def _prepare(resource: TicketResource, updated_at: datetime | str | None) -> _Prepared:
    content = resource.get_content()
    metadata = resource.get_metadata()
    when = parse_datetime(updated_at if updated_at is not None else resource.metadata.get("updated_at") or None)
    snapshot = _Snapshot(
        source=resource.source_type,
        ticket_id=str(resource.ticket_id),
        updated_ts=when.timestamp() if when else None,
        content_digest=_digest(content),
        metadata_digest=_digest(canonical_metadata(metadata)),
        has_metadata=metadata is not None,
    )
    return _Prepared(resource.get_hash(), content, metadata, when, snapshot)


STAGE_THREADS = 8  # concurrent fsyncs are written back together: ~10x cheaper than in turn


def _differs(path: Path, text: str) -> bool:
    """Whether `path` does not already hold exactly `text` (as written by `atomic_write`)."""
    try:
        return path.read_bytes() != text.encode("utf-8")
    except FileNotFoundError:
        return True


def _identity(metadata: Any) -> tuple[str, str] | None:
    extra = metadata.get("extra") if isinstance(metadata, dict) else None
    if isinstance(extra, dict) and extra.get("ticket_id") is not None and extra.get("source_type") is not None:
        return str(extra["source_type"]), str(extra["ticket_id"])
    return None


def _refuse_other_owner(resource: BaseResource, path: Path, meta_path: Path) -> None:
    """Raise when `meta_path` describes a different resource than `resource` (two ids, one file name)."""
    metadata = resource.get_metadata()
    mine = _identity(metadata.as_dict()) if metadata is not None else None
    if mine is None:
        return
    try:
        stored = _identity(yaml.safe_load(meta_path.read_text(encoding="utf-8")))
    except (FileNotFoundError, yaml.YAMLError, UnicodeDecodeError):
        return
    if stored is not None and stored != mine:
        raise PersistenceError(
            f"resource {mine[0]}:{mine[1]} maps to {path}, which already holds "
            f"{stored[0]}:{stored[1]}; refusing to overwrite"
        )


def persist_resource_files(resource: BaseResource, target_dir: str | os.PathLike[str], *, fsync: bool = True) -> Path:
    """The seed's `persist_resource`: a resource's content and metadata files in `target_dir`; the content path.

    As idempotent as `upsert`: a file whose bytes already match is not written (it keeps its inode and
    mtime). A file that holds another resource mapping to the same name (`a/b`, `a_b`) is refused.
    """
    directory = Path(target_dir)
    path = directory / resource.get_filename()
    meta_path = path.with_name(path.name + META_SUFFIX)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _refuse_other_owner(resource, path, meta_path)
        content = resource.get_content()
        if _differs(path, content):
            atomic_write(path, content, fsync=fsync)
        meta = metadata_yaml(resource)
        if meta and _differs(meta_path, meta):
            atomic_write(meta_path, meta, fsync=fsync)
    except OSError as exc:
        raise PersistenceError(f"cannot write resource {resource.get_hash()} to {path}: {exc.strerror}") from None
    return path


class PersistenceService:
    """Ticket files under `<data_path>/tickets/` plus the SQLite catalog `<data_path>/catalog.sqlite3`."""

    def __init__(self, data_path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.data_path = Path(data_path)
        self.tickets_dir = self.data_path / TICKETS_DIR
        self.trash_dir = self.data_path / TRASH_DIR
        self.fsync = fsync
        try:
            self.tickets_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PersistenceError(f"cannot create data directory {self.tickets_dir}: {exc.strerror}") from None
        self.catalog = Catalog(self.data_path / CATALOG_FILE)

    def __repr__(self) -> str:
        return f"PersistenceService({str(self.data_path)!r})"

    # -- the seed's API ----------------------------------------------------------------------------
    def persist_resource(self, resource: BaseResource, target_dir: str | os.PathLike[str]) -> Path:
        """Write a resource's content and metadata into `target_dir` (no catalog); returns the content path."""
        return persist_resource_files(resource, target_dir, fsync=self.fsync)

    # -- the store itself ----------------------------------------------------------------------------
    def location(self, hash_: str) -> str:
        return str(self.content_path(hash_))

    def require_current_schema(self) -> None:
        """The catalog upgrades its own schema when it opens (one file, one process at a time): always current."""

    def upgrade_schema(self) -> list[str]:
        return []

    # -- the service's API -------------------------------------------------------------------------
    def content_path(self, hash_: str) -> Path:
        return self.tickets_dir / f"{hash_}{CONTENT_SUFFIX}"

    def metadata_path(self, hash_: str) -> Path:
        return self.tickets_dir / f"{hash_}{CONTENT_SUFFIX}{META_SUFFIX}"

    def upsert(self, resource: TicketResource, *, updated_at: datetime | str | None = None) -> UpsertOutcome:
        """Store the resource unless an identical or newer copy is already stored.

        "Unchanged" and "stale" are decided from the catalog and digests of the canonical form, without
        rendering YAML and without the write lock. A write stages both files (fsynced temp names)
        first; the exclusive transaction only re-checks the guard, renames them into place, records
        the new version and its change-feed entry. The renames precede the commit, so after a crash
        the files are never older than the catalog says (see `reconcile`).
        """
        return self._upsert_batch([_prepare(resource, updated_at)], sync_directory=False)[0]

    def upsert_many(self, items: Iterable[tuple[TicketResource, datetime | str | None]]) -> list[UpsertOutcome]:
        """`upsert` for many tickets with one catalog transaction: the outcomes in the order given.

        Group commit: unchanged and stale ones are decided from digests without writing; the files of
        the others are written under temp names and fsynced together (in parallel, which the file
        system's journal commits as one); then one transaction re-checks the ordering guard per ticket,
        renames them into place, records their rows and change-feed entries, fsyncs the directory once
        and commits. A ticket given twice is settled in order (the later snapshot against the earlier).
        Any refusal (two ids for one file name) raises before anything is renamed: nothing of the batch
        is stored then, and the caller may retry its tickets one by one to learn which was refused.
        """
        return self._upsert_batch([_prepare(resource, updated_at) for resource, updated_at in items], True)

    def _upsert_batch(self, batch: list[_Prepared], sync_directory: bool) -> list[UpsertOutcome]:
        outcomes: list[UpsertOutcome | None] = [None] * len(batch)
        staged = _Staged([])
        current = ""
        try:
            reader = self.catalog.read()
            writes: list[tuple[int, _Prepared]] = []
            for index, item in enumerate(batch):
                current = item.describe()
                row = reader.execute("SELECT * FROM tickets WHERE hash = ?", (item.hash,)).fetchone()
                settled = self._settled(item.hash, row, item.snapshot)
                if settled is None and row is not None and self._legacy_unchanged(item.hash, row, item.snapshot, item):
                    settled = UpsertOutcome.UNCHANGED
                if settled is not None:
                    outcomes[index] = settled
                else:
                    writes.append((index, item))
            current = f"{len(writes)} ticket(s) in {self.tickets_dir}"
            files = self._stage_all(writes, staged)
            if writes:
                self._commit_writes(writes, files, outcomes, sync_directory)
        except OSError as exc:
            raise PersistenceError(f"cannot store {current}: {exc.strerror or exc}") from None
        finally:
            staged.discard()
        assert all(outcome is not None for outcome in outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    def _stage_item(self, item: _Prepared, unnamed: bool, fsync: bool) -> list[StagedFile]:
        """Write (and fsync) a ticket's files, not yet visible; on failure nothing of it is left behind."""
        files = [(self.content_path(item.hash), item.content)]
        if item.metadata is not None:
            files.append((self.metadata_path(item.hash), item.meta_text()))
        return stage_files(files, fsync=fsync, unnamed=unnamed)

    def _stage_all(self, writes: list[tuple[int, _Prepared]], staged: _Staged) -> dict[int, list[StagedFile]]:
        """Stage every ticket to write; several at once in parallel (creating and fsyncing files mostly waits on
        the file system, which writes concurrent waiters' files back together). Raises the first failure, naming
        its ticket, with every staged file in `staged` (so it is discarded)."""
        files: dict[int, list[StagedFile]] = {}
        failure: tuple[_Prepared, Exception] | None = None
        unnamed = 2 * len(writes) <= UNNAMED_FILES_LIMIT  # each unnamed file holds a descriptor until published
        # A large batch is made durable with one sync of the file system once all is written, not file by file.
        whole = self.fsync and 2 * len(writes) >= SYNC_FILE_SYSTEM_MIN_FILES and can_sync_file_system()
        fsync_each = self.fsync and not whole

        def keep(index: int, item_files: list[StagedFile]) -> None:
            files[index] = item_files
            staged.files.extend(item_files)

        if len(writes) <= 1:
            for index, item in writes:
                try:
                    keep(index, self._stage_item(item, unnamed, fsync_each))
                except Exception as exc:
                    failure = (item, exc)
        else:
            with ThreadPoolExecutor(max_workers=min(STAGE_THREADS, len(writes)), thread_name_prefix="stage") as pool:
                futures = [
                    (index, item, pool.submit(self._stage_item, item, unnamed, fsync_each)) for index, item in writes
                ]
                for index, item, future in futures:
                    try:
                        keep(index, future.result())
                    except Exception as exc:  # every future is collected first, so no staged file is lost
                        failure = failure or (item, exc)
        if failure is not None:
            failed, error = failure
            if not isinstance(error, OSError):
                raise error
            raise PersistenceError(f"cannot store {failed.describe()}: {error.strerror or error}") from None
        if whole:
            sync_file_system(self.tickets_dir)
        return files

    def _commit_writes(
        self,
        writes: list[tuple[int, _Prepared]],
        files: dict[int, list[StagedFile]],
        outcomes: list[UpsertOutcome | None],
        sync_directory: bool,
    ) -> None:
        """The one transaction: re-check every staged ticket (in order), then publish, record and commit."""
        with self.catalog.write() as conn, open_directory(self.tickets_dir) as directory_fd:
            rows: dict[str, Any] = {}  # what this batch has decided so far, per hash
            publish: list[tuple[int, _Prepared]] = []
            for index, item in writes:
                staged = item.hash in rows
                row = (
                    rows[item.hash]
                    if staged
                    else (conn.execute("SELECT * FROM tickets WHERE hash = ?", (item.hash,)).fetchone())
                )
                settled = self._settled(item.hash, row, item.snapshot, staged=staged)
                if settled is not None:
                    outcomes[index] = settled
                    continue
                rows[item.hash] = item.row()
                publish.append((index, item))
            for index, item in publish:
                try:
                    for file in files[index]:  # the content first: a crash between leaves a file newer than its row
                        file.publish(directory_fd)
                except OSError as exc:
                    raise PersistenceError(f"cannot store {item.describe()}: {exc.strerror or exc}") from None
                values = item.row()
                conn.execute(
                    """INSERT INTO tickets (hash, source, ticket_id, updated_at, updated_ts, content_digest,
                                            metadata_digest, written_at)
                       VALUES (:hash, :source, :ticket_id, :updated_at, :updated_ts, :content_digest,
                               :metadata_digest, :written_at)
                       ON CONFLICT(hash) DO UPDATE SET updated_at = excluded.updated_at,
                           updated_ts = excluded.updated_ts, content_digest = excluded.content_digest,
                           metadata_digest = excluded.metadata_digest, written_at = excluded.written_at""",
                    values,
                )
                record_change(conn, item.snapshot.source, item.snapshot.ticket_id, item.hash, ChangeKind.WRITTEN)
                outcomes[index] = UpsertOutcome.WRITTEN
            if publish and sync_directory and self.fsync:
                os.fsync(directory_fd)  # the batch's new names, durable with one fsync of the directory

    def _settled(self, hash_: str, row: Any, snapshot: _Snapshot, *, staged: bool = False) -> UpsertOutcome | None:
        """STALE or UNCHANGED when nothing needs writing, None when the snapshot must be written.

        Safe on a row read without the lock: a stored version only ever moves forward, so a snapshot
        stale against an older read is stale now; the write transaction checks again anyway. A catalog row
        whose content file is gone (lost files, `housekeeping.drop_lost`) settles nothing: the snapshot is
        written. `staged`: the row is one this batch is about to publish, its files not yet in place.
        """
        if row is None:
            return None
        if (row["source"], row["ticket_id"]) != (snapshot.source, snapshot.ticket_id):
            raise PersistenceError(
                f"resource {snapshot.source}:{snapshot.ticket_id} maps to {self.content_path(hash_)}, which already "
                f"holds {row['source']}:{row['ticket_id']}; refusing to overwrite"
            )
        content_present = self.content_path(hash_).exists()
        if not staged and not content_present:
            return None
        if (
            snapshot.updated_ts is not None
            and row["updated_ts"] is not None
            and snapshot.updated_ts < row["updated_ts"]
        ):
            return UpsertOutcome.STALE
        if (
            row["content_digest"] == snapshot.content_digest
            and row["metadata_digest"] == snapshot.metadata_digest
            and content_present
            and (not snapshot.has_metadata or self.metadata_path(hash_).exists())
        ):
            return UpsertOutcome.UNCHANGED
        return None

    def _legacy_unchanged(self, hash_: str, row: sqlite3.Row, snapshot: _Snapshot, item: _Prepared) -> bool:
        """An entry from before canonical digests (its metadata digest is of the YAML) for identical files.

        Its digest is brought up to date once, so an upgrade does not rewrite every stored ticket.
        """
        if row["content_digest"] != snapshot.content_digest or row["metadata_digest"] != _digest(item.meta_text()):
            return False
        if not self.content_path(hash_).exists() or (snapshot.has_metadata and not self.metadata_path(hash_).exists()):
            return False
        with self.catalog.write() as conn:
            conn.execute(
                "UPDATE tickets SET metadata_digest = ? WHERE hash = ? AND metadata_digest = ?",
                (snapshot.metadata_digest, hash_, row["metadata_digest"]),
            )
        return True

    def reconcile(self, hash_: str) -> bool:
        """Make a catalog entry agree with its files after a crash mid-write; True when the entry changed.

        A write renames the content, then the metadata, then commits; a kill -9 in between leaves files
        newer than the catalog (never older). The entry adopts them by the rule the startup scan uses too
        (`adoption.adopt`), so later writes compare against the real files. Files a killed delete or
        restore left moved are first put back (`trash_repair`). Nothing is deleted; an entry without files
        is left for a resync.
        """
        with self.catalog.write() as conn:
            try:
                repair_trash(conn, self.tickets_dir, self.trash_dir, hash_)
                outcome = adopt(conn, hash_, self.content_path(hash_), self.metadata_path(hash_))
            except OSError as exc:
                raise PersistenceError(f"cannot read {exc.filename}: {exc.strerror}") from None
        return outcome in (Adoption.ADDED, Adoption.UPDATED)

    def delete(self, source_type: str, ticket_id: str, *, reason: str = "deleted upstream") -> bool:
        """Move a ticket's files to the trash and log the removal; False when nothing was stored.

        The files go to `<data_path>/trash/` (outside `tickets/`, so indexers never see them) where
        `restore` can bring them back until `purge_trash` removes them for good. They move before the
        commit, so a kill -9 in between leaves them in the trash of a removal that never happened; the
        start-up repair (and this method, before it moves anything) puts them back (`trash_repair`).
        """
        hash_ = resource_hash(source_type, str(ticket_id))
        with self.catalog.write() as conn:
            row = conn.execute(
                "SELECT * FROM tickets WHERE source = ? AND ticket_id = ?", (source_type, str(ticket_id))
            ).fetchone()
            if row is not None:
                hash_ = row["hash"]
            self._repair_trash(conn, hash_)
            files = [path for path in (self.content_path(hash_), self.metadata_path(hash_)) if path.exists()]
            if row is None and not files:
                return False
            now = datetime.now(UTC)
            removal_id = conn.execute(
                """INSERT INTO removals (source, ticket_id, hash, removed_at, removed_ts, reason, updated_at,
                                         updated_ts, content_digest, metadata_digest, in_trash)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)""",
                (
                    source_type,
                    str(ticket_id),
                    hash_,
                    now.isoformat(),
                    now.timestamp(),
                    str(reason),
                    row["updated_at"] if row is not None else None,
                    row["updated_ts"] if row is not None else None,
                    row["content_digest"] if row is not None else None,
                    row["metadata_digest"] if row is not None else None,
                ),
            ).lastrowid
            assert removal_id is not None
            try:
                self.trash_dir.mkdir(parents=True, exist_ok=True)
                for path in files:
                    os.replace(path, self._trash_path(path, removal_id))
            except OSError as exc:
                raise PersistenceError(
                    f"cannot move {source_type}:{ticket_id} from {self.tickets_dir} to the trash {self.trash_dir}: "
                    f"{exc.strerror}"
                ) from None
            conn.execute("DELETE FROM tickets WHERE hash = ?", (hash_,))
            record_change(conn, source_type, str(ticket_id), hash_, ChangeKind.REMOVED)
        return True

    # -- trash and the removal log -------------------------------------------------------------------
    def _trash_path(self, path: Path, removal_id: int) -> Path:
        """`trash/<hash>.<removal id>.txt[.meta.yaml]`: one ticket removed twice keeps both copies apart."""
        return self.trash_dir / trash_name(path.name, removal_id)

    def _repair_trash(self, conn: sqlite3.Connection, hash_: str) -> None:
        try:
            repair_trash(conn, self.tickets_dir, self.trash_dir, hash_)
        except OSError as exc:
            raise PersistenceError(f"cannot repair the trash of {hash_} in {self.trash_dir}: {exc.strerror}") from None

    def removals(self, *, since: datetime | None = None, source_type: str | None = None) -> list[Removal]:
        """Logged removals, newest first (optionally only those at or after `since`, of one system)."""
        query = "SELECT * FROM removals WHERE removed_ts >= ?"
        args: list[Any] = [since.timestamp() if since else 0.0]
        if source_type is not None:
            query += " AND source = ?"
            args.append(source_type)
        rows = self.catalog.read().execute(query + " ORDER BY removed_ts DESC, id DESC", args).fetchall()
        return [Removal.from_row(row) for row in rows]

    def restore(self, source_type: str, ticket_id: str) -> Removal:
        """Put the most recently trashed copy of a ticket back into `tickets/` and the catalog.

        Raises `PersistenceError` when a copy is stored already or no trashed copy is left. The next
        sync of the ticket decides its fate as usual. The files move before the commit; the start-up
        repair (and this method, first) moves those of a killed restore back to the trash (`trash_repair`).
        """
        with self.catalog.write() as conn:
            self._repair_trash(conn, resource_hash(source_type, str(ticket_id)))
            stored = conn.execute(
                "SELECT hash FROM tickets WHERE source = ? AND ticket_id = ?", (source_type, str(ticket_id))
            ).fetchone()
            if stored is not None:
                raise PersistenceError(f"{source_type}:{ticket_id} is stored already; nothing to restore")
            row = conn.execute(
                """SELECT * FROM removals WHERE source = ? AND ticket_id = ? AND in_trash = 1
                   ORDER BY removed_ts DESC, id DESC LIMIT 1""",
                (source_type, str(ticket_id)),
            ).fetchone()
            if row is None:
                raise PersistenceError(
                    f"no trashed copy of {source_type}:{ticket_id} (never removed, already restored, or purged)"
                )
            removal = Removal.from_row(row)
            occupied = conn.execute("SELECT source, ticket_id FROM tickets WHERE hash = ?", (removal.hash,)).fetchone()
            if occupied is not None:
                raise PersistenceError(
                    f"{self.content_path(removal.hash)} now holds {occupied['source']}:{occupied['ticket_id']}; "
                    f"not restoring {source_type}:{ticket_id} over it"
                )
            if removal.hash != resource_hash(source_type, str(ticket_id)):
                self._repair_trash(conn, removal.hash)
            if not self._trash_path(self.content_path(removal.hash), removal.id).exists():
                raise PersistenceError(f"the trashed copy of {source_type}:{ticket_id} has no content file")
            try:
                for path in (self.content_path(removal.hash), self.metadata_path(removal.hash)):
                    trashed = self._trash_path(path, removal.id)
                    if trashed.exists():
                        os.replace(trashed, path)
            except OSError as exc:
                raise PersistenceError(f"cannot restore {source_type}:{ticket_id}: {exc.strerror}") from None
            conn.execute(
                """INSERT INTO tickets (hash, source, ticket_id, updated_at, updated_ts, content_digest,
                                        metadata_digest, written_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    removal.hash,
                    source_type,
                    str(ticket_id),
                    row["updated_at"] or "",
                    row["updated_ts"],
                    row["content_digest"] or "",
                    row["metadata_digest"] or "",
                    _now(),
                ),
            )
            conn.execute("UPDATE removals SET in_trash = 0, restored_at = ? WHERE id = ?", (_now(), removal.id))
            record_change(conn, source_type, str(ticket_id), removal.hash, ChangeKind.WRITTEN)
        return removal

    def purge_trash(self, older_than: timedelta, *, now: datetime | None = None) -> int:
        """Delete trashed copies removed longer ago than `older_than`; returns how many went.

        The purge commits first and unlinks after: a kill -9 in between leaves files of a committed
        purge, which the start-up repair deletes (`trash_repair`); never a removal that claims a copy
        in the trash that is gone.
        """
        cutoff = (now or datetime.now(UTC)) - older_than
        with self.catalog.write() as conn:
            rows = conn.execute(
                "SELECT id, hash FROM removals WHERE in_trash = 1 AND removed_ts < ?", (cutoff.timestamp(),)
            ).fetchall()
            for row in rows:
                conn.execute("UPDATE removals SET in_trash = 0, purged_at = ? WHERE id = ?", (_now(), row["id"]))
        for row in rows:
            for path in (self.content_path(row["hash"]), self.metadata_path(row["hash"])):
                with suppress(FileNotFoundError):
                    self._trash_path(path, row["id"]).unlink()
        return len(rows)

    def has_copy(self, source_type: str, ticket_id: str) -> bool:
        """Whether anything of the ticket is stored (a catalog entry, or files a crash left behind)."""
        row = (
            self.catalog.read()
            .execute("SELECT 1 FROM tickets WHERE source = ? AND ticket_id = ?", (source_type, str(ticket_id)))
            .fetchone()
        )
        return row is not None or self.content_path(resource_hash(source_type, str(ticket_id))).exists()

    def get(self, source_type: str, ticket_id: str) -> StoredTicket | None:
        row = (
            self.catalog.read()
            .execute("SELECT * FROM tickets WHERE source = ? AND ticket_id = ?", (source_type, str(ticket_id)))
            .fetchone()
        )
        return self._load(entry_from_row(row)) if row is not None else None

    def get_by_hash(self, hash_: str) -> StoredTicket | None:
        row = self.catalog.read().execute("SELECT * FROM tickets WHERE hash = ?", (hash_,)).fetchone()
        return self._load(entry_from_row(row)) if row is not None else None

    def list_entries(self, source_type: str | None = None) -> list[CatalogEntry]:
        if source_type is None:
            rows = self.catalog.read().execute("SELECT * FROM tickets ORDER BY hash").fetchall()
        else:
            rows = (
                self.catalog.read()
                .execute("SELECT * FROM tickets WHERE source = ? ORDER BY hash", (source_type,))
                .fetchall()
            )
        return [entry_from_row(row) for row in rows]

    def iter_entries(self, source_type: str | None = None, *, page: int = 500) -> Iterator[CatalogEntry]:
        """Every entry (of one system), in hash order, read `page` at a time: memory stays flat for any count."""
        query = "SELECT * FROM tickets WHERE hash > ?" + (" AND source = ?" if source_type is not None else "")
        after = ""
        while True:
            args: tuple[Any, ...] = (after, source_type) if source_type is not None else (after,)
            rows = self.catalog.read().execute(query + " ORDER BY hash LIMIT ?", (*args, page)).fetchall()
            for row in rows:
                yield entry_from_row(row)
            if len(rows) < page:
                return
            after = rows[-1]["hash"]

    def ticket_ids(self, source_type: str) -> set[str]:
        rows = self.catalog.read().execute("SELECT ticket_id FROM tickets WHERE source = ?", (source_type,)).fetchall()
        return {row["ticket_id"] for row in rows}

    def count(self, source_type: str | None = None) -> int:
        if source_type is None:
            return int(self.catalog.read().execute("SELECT COUNT(*) FROM tickets").fetchone()[0])
        return int(
            self.catalog.read().execute("SELECT COUNT(*) FROM tickets WHERE source = ?", (source_type,)).fetchone()[0]
        )

    # -- the change feed ---------------------------------------------------------------------------
    def changes(self, after: int = 0, limit: int = 1000) -> list[Change]:
        """Committed changes with a seq greater than `after`, oldest first, at most `limit` of them."""
        rows = (
            self.catalog.read()
            .execute(
                "SELECT seq, source, ticket_id, hash, kind FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (int(after), max(0, int(limit))),
            )
            .fetchall()
        )
        return [change_from_row(row) for row in rows]

    def last_change_seq(self) -> int:
        """The newest committed change's seq (0 when there is none yet)."""
        return int(self.catalog.read().execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])

    def wait_for_changes(self, after: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a change with a seq greater than `after`; True when there is one.

        SQLite has no notifications: this polls the catalog every `CHANGE_POLL_SECONDS` (one indexed read).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self.last_change_seq() > after:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(CHANGE_POLL_SECONDS, remaining))

    # -- sync state --------------------------------------------------------------------------------
    def get_cursor(self, system: str) -> datetime | None:
        row = self.catalog.read().execute("SELECT cursor FROM cursors WHERE system = ?", (system,)).fetchone()
        return parse_datetime(row["cursor"]) if row else None

    def set_cursor(self, system: str, when: datetime) -> None:
        value = parse_datetime(when)
        assert value is not None
        with self.catalog.write() as conn:
            conn.execute(
                "INSERT INTO cursors (system, cursor) VALUES (?, ?) ON CONFLICT(system) DO UPDATE SET cursor = excluded.cursor",
                (system, value.isoformat()),
            )

    def record_resync(self, system: str, summary: dict[str, Any]) -> None:
        with self.catalog.write() as conn:
            conn.execute(
                """INSERT INTO resyncs (system, finished_at, summary) VALUES (?, ?, ?)
                   ON CONFLICT(system) DO UPDATE SET finished_at = excluded.finished_at, summary = excluded.summary""",
                (system, _now(), json.dumps(summary, sort_keys=True, default=str)),
            )

    def last_resync(self, system: str) -> dict[str, Any] | None:
        row = (
            self.catalog.read()
            .execute("SELECT finished_at, summary FROM resyncs WHERE system = ?", (system,))
            .fetchone()
        )
        if row is None:
            return None
        return {"finished_at": row["finished_at"], **json.loads(row["summary"])}

    def close(self) -> None:
        self.catalog.close()

    # -- helpers -----------------------------------------------------------------------------------
    def _load(self, entry: CatalogEntry) -> StoredTicket:
        path = self.content_path(entry.hash)
        try:
            content = path.read_text(encoding="utf-8")
            meta_path = self.metadata_path(entry.hash)
            metadata = yaml.safe_load(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        except OSError as exc:
            raise PersistenceError(f"cannot read {entry.source}:{entry.ticket_id} at {path}: {exc.strerror}") from None
        return StoredTicket(entry=entry, content=content, metadata=metadata or {})

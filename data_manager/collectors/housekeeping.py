"""Crash leftovers in the data directory: orphaned temp files, and a catalog that disagrees with its files.

Writes go temp file → fsync → rename, inside the catalog's write transaction, so a crash (SIGKILL,
power loss) can leave:
- a temp file that was never renamed (litter: harmless to readers, but it stays forever);
- a renamed file whose catalog row was not committed: a file without a row (a new ticket), or a row
  whose digest does not match the file (an update);
- a row whose file is gone (a delete interrupted between the unlink and the commit).

`remove_orphaned_temp_files` removes temp files older than a few minutes (a live writer's temp file
is seconds old); `reconcile` makes the catalog describe the files again. Both run when a worker
starts; the temp sweep also runs from the worker's housekeeping. Nothing here removes a ticket's
file: a file the catalog does not know and that does not say which ticket it is stays, and is reported.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from data_manager.collectors.catalog import record_change
from data_manager.collectors.changes import ChangeKind
from data_manager.collectors.persistence import PersistenceService, metadata_digest_of
from data_manager.collectors.tickets.model import parse_datetime
from data_manager.collectors.tickets.ticket_resource import resource_hash

log = logging.getLogger("tickets.housekeeping")
TEMP_SUFFIX = ".tmp"
ORPHAN_AGE_SECONDS = 300.0
CONTENT_SUFFIX = ".txt"


@dataclass
class ReconcileReport:
    rows_added: list[str] = field(default_factory=list)  # file without row: the row is rebuilt from the file
    rows_updated: list[str] = field(default_factory=list)  # digest mismatch: the row follows the file
    rows_removed: list[str] = field(default_factory=list)  # row without file: an interrupted delete
    unknown_files: list[str] = field(default_factory=list)  # a file that does not say which ticket it is

    @property
    def changed(self) -> int:
        return len(self.rows_added) + len(self.rows_updated) + len(self.rows_removed)


def remove_orphaned_temp_files(directory: Path, older_than: float = ORPHAN_AGE_SECONDS) -> list[Path]:
    """Delete `.<name>.<random>.tmp` files not modified for `older_than` seconds; returns them."""
    removed = []
    cutoff = time.time() - older_than
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)]
    except FileNotFoundError:
        return []
    for path in candidates:
        try:
            if path.stat().st_mtime <= cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue  # renamed or removed meanwhile
    if removed:
        log.warning("removed %d orphaned temp file(s) in %s", len(removed), directory)
    return removed


def _digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _headers(text: str) -> dict[str, str]:
    """The `Name: value` header lines at the top of a normalised ticket file."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        name, sep, value = line.partition(": ")
        if sep:
            found.setdefault(name, value)
    return found


def _updated(headers: dict[str, str]) -> tuple[str, float | None]:
    try:
        when: datetime | None = parse_datetime(headers.get("Updated") or None)
    except (ValueError, TypeError):
        when = None
    return (when.isoformat(), when.timestamp()) if when else ("", None)


def reconcile(persistence: PersistenceService) -> ReconcileReport:
    """Make the catalog agree with the ticket files (under the catalog's write lock)."""
    report = ReconcileReport()
    directory = persistence.tickets_dir
    with persistence.catalog.write() as conn:
        rows = {row["hash"]: row for row in conn.execute("SELECT * FROM tickets").fetchall()}
        files = {
            p.name[: -len(CONTENT_SUFFIX)]: p
            for p in directory.iterdir()
            if p.name.endswith(CONTENT_SUFFIX) and not p.name.startswith(".")
        }
        for hash_, row in rows.items():
            path = files.get(hash_)
            if path is None:
                conn.execute("DELETE FROM tickets WHERE hash = ?", (hash_,))
                record_change(conn, row["source"], row["ticket_id"], hash_, ChangeKind.REMOVED)
                report.rows_removed.append(hash_)
                continue
            meta_path = persistence.metadata_path(hash_)
            if not _maybe_newer((path, meta_path), row["written_at"]):
                continue
            content_digest = _digest_of(path)
            metadata_digest = (
                metadata_digest_of(meta_path.read_text(encoding="utf-8"))
                if meta_path.exists()
                else row["metadata_digest"]
            )
            if (content_digest, metadata_digest) == (row["content_digest"], row["metadata_digest"]):
                continue
            updated_at, updated_ts = _updated(_headers(path.read_text(encoding="utf-8", errors="replace")))
            conn.execute(
                """UPDATE tickets SET content_digest = ?, metadata_digest = ?, updated_at = ?, updated_ts = ?,
                   written_at = ? WHERE hash = ?""",
                (content_digest, metadata_digest, updated_at, updated_ts, _mtime_iso(path), hash_),
            )
            record_change(conn, row["source"], row["ticket_id"], hash_, ChangeKind.WRITTEN)  # indexers re-read it
            report.rows_updated.append(hash_)
        for hash_, path in files.items():
            if hash_ in rows:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            headers = _headers(text)
            source, _, ticket_id = headers.get("Ticket", "").partition(":")
            if not source or not ticket_id or resource_hash(source, ticket_id) != hash_:
                report.unknown_files.append(path.name)
                continue
            meta_path = persistence.metadata_path(hash_)
            updated_at, updated_ts = _updated(headers)
            added = conn.execute(
                """INSERT INTO tickets (hash, source, ticket_id, updated_at, updated_ts, content_digest,
                                        metadata_digest, written_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (
                    hash_,
                    source,
                    ticket_id,
                    updated_at,
                    updated_ts,
                    hashlib.sha256(text.encode("utf-8")).hexdigest(),
                    metadata_digest_of(meta_path.read_text(encoding="utf-8") if meta_path.exists() else ""),
                    _mtime_iso(path),
                ),
            ).rowcount
            if added:
                record_change(conn, source, ticket_id, hash_, ChangeKind.WRITTEN)
                report.rows_added.append(hash_)
    if report.changed or report.unknown_files:
        log.warning(
            "catalog reconciled with the files in %s: %d row(s) added, %d updated, %d removed; unknown files: %s",
            directory,
            len(report.rows_added),
            len(report.rows_updated),
            len(report.rows_removed),
            ", ".join(report.unknown_files[:5]) or "none",
        )
    return report


def _maybe_newer(paths: tuple[Path, ...], written_at: str) -> bool:
    """Whether a file was replaced after its row was written (only then are the files read).

    A row's `written_at` is taken just after its files are renamed into place, so a file modified
    later was written by a transaction that never committed."""
    try:
        written = datetime.fromisoformat(written_at).timestamp()
    except (TypeError, ValueError):
        return True
    return any(p.exists() and p.stat().st_mtime > written for p in paths)


def _mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(os.stat(path).st_mtime, UTC).isoformat()


def startup_check(persistence: PersistenceService, older_than: float = ORPHAN_AGE_SECONDS) -> ReconcileReport:
    """What a worker runs when it starts: sweep old temp files, then reconcile the catalog."""
    remove_orphaned_temp_files(persistence.tickets_dir, older_than)
    return reconcile(persistence)

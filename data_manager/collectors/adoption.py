"""The one rule for what the catalog adopts from a ticket's files after a crash.

A write renames the content file, then the metadata file, then commits, so a crash leaves files ahead
of the catalog, never behind. Both repairs, `PersistenceService.reconcile` (one hash) and the startup
scan `housekeeping.reconcile` (the whole directory), apply `adopt`, so they cannot disagree:

- the entry takes the digests of what is on disk;
- its upstream time moves forward only, and only to the time the metadata file records: the metadata
  is renamed last, so the catalog never claims a version that is not wholly on disk;
- a new entry is made only for the ticket whose hash the files carry, as named by the metadata file,
  or by the content's `Ticket:` header when the metadata file is missing (a crash between the renames);
- every change gets a change-feed entry, so indexers read the repaired files;
- nothing is deleted; a file that does not say whose it is stays, for the caller to report.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from data_manager.collectors.catalog import record_change
from data_manager.collectors.changes import ChangeKind
from data_manager.collectors.metadata_form import canonical_metadata, parse_metadata
from data_manager.collectors.tickets.model import parse_datetime
from data_manager.collectors.tickets.ticket_resource import resource_hash


class Adoption(str, Enum):
    """What `adopt` did with one hash's files."""

    UNCHANGED = "unchanged"  # the entry already describes the files
    UPDATED = "updated"  # the entry now describes the files
    ADDED = "added"  # there was no entry: one was made for the ticket the files name
    UNKNOWN = "unknown"  # no entry, and the files do not say they are the ticket of this hash: left alone
    CLAIMED = "claimed"  # no entry, but the ticket they name has one under another hash: left alone
    MISSING = "missing"  # no content file: nothing to adopt


@dataclass(frozen=True)
class OnDisk:
    """What a ticket's two files say, read once."""

    content_digest: str
    metadata_digest: str
    identity: tuple[str, str] | None  # (source, ticket id) the files name
    updated: datetime | None  # the upstream time the metadata file records


def read_files(content_path: Path, metadata_path: Path) -> OnDisk | None:
    """The files' digests and claims; None without a content file. Other read errors (OSError) propagate."""
    try:
        content = content_path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        meta_text: str | None = metadata_path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        meta_text = None
    metadata = parse_metadata(meta_text or "")
    extra = metadata.extra if metadata is not None else {}
    named = (extra.get("source_type"), extra.get("ticket_id"))
    if meta_text is None:
        source, _, ticket_id = _header(content.decode("utf-8", errors="replace"), "Ticket").partition(":")
        named = (source, ticket_id)
    try:
        updated = parse_datetime(extra.get("updated_at") or None)
    except (TypeError, ValueError):
        updated = None
    return OnDisk(
        content_digest=hashlib.sha256(content).hexdigest(),
        metadata_digest=hashlib.sha256(canonical_metadata(metadata).encode("utf-8")).hexdigest(),
        identity=(named[0], named[1]) if named[0] and named[1] else None,
        updated=updated,
    )


def adopt(conn: sqlite3.Connection, hash_: str, content_path: Path, metadata_path: Path) -> Adoption:
    """Make the entry of `hash_` describe its files, inside the caller's write transaction."""
    row = conn.execute("SELECT * FROM tickets WHERE hash = ?", (hash_,)).fetchone()
    files = read_files(content_path, metadata_path)
    if files is None:
        return Adoption.MISSING
    digests = (files.content_digest, files.metadata_digest)
    if row is None:
        if files.identity is None or resource_hash(*files.identity) != hash_:
            return Adoption.UNKNOWN
        (source, ticket_id), updated_at, updated_ts = files.identity, "", None
    else:
        if digests == (row["content_digest"], row["metadata_digest"]):
            return Adoption.UNCHANGED
        source, ticket_id = row["source"], row["ticket_id"]
        updated_at, updated_ts = row["updated_at"], row["updated_ts"]
    if files.updated is not None and (updated_ts is None or files.updated.timestamp() > updated_ts):
        updated_at, updated_ts = files.updated.isoformat(), files.updated.timestamp()
    # written_at: when the catalog last took the files in (the startup scan reads only files renamed since).
    values = (updated_at, updated_ts, *digests, datetime.now(UTC).isoformat())
    if row is None:
        added = conn.execute(
            """INSERT INTO tickets (hash, source, ticket_id, updated_at, updated_ts, content_digest,
                                    metadata_digest, written_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            (hash_, source, ticket_id, *values),
        ).rowcount
        if not added:
            return Adoption.CLAIMED
    else:
        conn.execute(
            """UPDATE tickets SET updated_at = ?, updated_ts = ?, content_digest = ?, metadata_digest = ?,
                                  written_at = ? WHERE hash = ?""",
            (*values, hash_),
        )
    record_change(conn, source, ticket_id, hash_, ChangeKind.WRITTEN)
    return Adoption.ADDED if row is None else Adoption.UPDATED


def _header(text: str, name: str) -> str:
    """The value of a `Name: value` line among the header lines at the top of a normalised ticket file."""
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(": ")
        if sep and key == name:
            return value
    return ""

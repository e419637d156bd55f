"""Bring `trash/` back in line with the committed catalog after a kill -9 inside a removal, restore or purge.

`delete` and `restore` move a ticket's files (between `tickets/<hash>.txt[.meta.yaml]` and
`trash/<hash>.<removal id>.txt[.meta.yaml]`) inside the catalog transaction that records the move, so a
kill before the commit leaves the files moved and the catalog as it was. `purge_trash` commits first and
unlinks after, so a kill leaves files of a committed purge. `repair`, run under the catalog's write lock
(no operation in flight), makes the files follow the committed catalog again, and deletes only what the
catalog has committed to deleting:

- a trash file no logged removal of its hash claims is from a rolled-back delete: it goes back to
  `tickets/` when the ticket's row exists and its place there is free. Otherwise (a newer file is there,
  or the row is gone) it is renamed `<name>.unclaimed`, kept and reported: never overwritten, never deleted,
  and out of the way of a later removal that reuses the rolled-back removal id;
- the newest trashed copy of a ticket (the one `restore` takes) whose content file left the trash while
  `tickets/` holds that very content (same digest) and no row is a rolled-back restore: back to the trash;
- a trash file of a purged removal is the rest of a committed purge: deleted.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from data_manager.collectors.adoption import read_files
from data_manager.collectors.file_names import CONTENT_SUFFIX, META_SUFFIX

UNCLAIMED_SUFFIX = ".unclaimed"


@dataclass
class TrashRepair:
    """What `repair` did, by file name."""

    put_back: list[str] = field(default_factory=list)  # trash → tickets/: a rolled-back delete, undone
    set_aside: list[str] = field(default_factory=list)  # of a rolled-back delete, with no free place: kept
    restores_undone: list[str] = field(default_factory=list)  # tickets/ → trash: a rolled-back restore, undone
    purges_finished: list[str] = field(default_factory=list)  # of a committed purge: deleted

    @property
    def changed(self) -> int:
        return len(self.put_back) + len(self.set_aside) + len(self.restores_undone) + len(self.purges_finished)


def trash_name(name: str, removal_id: int) -> str:
    """`<hash>.<removal id>.txt[.meta.yaml]` for a ticket file's `name`: one ticket removed twice keeps both."""
    stem, _, rest = name.partition(CONTENT_SUFFIX)
    return f"{stem}.{removal_id}{CONTENT_SUFFIX}{rest}"


def parse_trash_name(name: str) -> tuple[str, int] | None:
    """`(ticket file name, removal id)` of a trash file's name; None for anything else (e.g. set aside)."""
    left, sep, rest = name.partition(CONTENT_SUFFIX)
    stem, dot, removal_id = left.rpartition(".")
    original = f"{stem}{CONTENT_SUFFIX}{rest}"
    if not (sep and dot and stem and removal_id.isdigit()) or not (
        original.endswith(CONTENT_SUFFIX) or original.endswith(CONTENT_SUFFIX + META_SUFFIX)
    ):
        return None
    return (original, int(removal_id)) if trash_name(original, int(removal_id)) == name else None


def hash_of(ticket_file: str) -> str:
    return ticket_file.removesuffix(META_SUFFIX).removesuffix(CONTENT_SUFFIX)


def repair(conn: sqlite3.Connection, tickets_dir: Path, trash_dir: Path, hash_: str | None = None) -> TrashRepair:
    """Repair the trash (of one hash, or all of it) inside the caller's write transaction."""
    report = TrashRepair()
    names = _names(trash_dir, None if hash_ is None else hash_.partition(CONTENT_SUFFIX)[0] + ".")
    groups: dict[tuple[str, int], list[str]] = {}
    for name in names:
        parsed = parse_trash_name(name)
        if parsed is not None and (hash_ is None or hash_of(parsed[0]) == hash_):
            groups.setdefault((hash_of(parsed[0]), parsed[1]), []).append(name)
    for (ticket_hash, removal_id), files in sorted(groups.items()):
        removal = conn.execute("SELECT hash, in_trash, purged_at FROM removals WHERE id = ?", (removal_id,)).fetchone()
        if removal is not None and removal["hash"] == ticket_hash and removal["in_trash"]:
            continue
        if removal is not None and removal["hash"] == ticket_hash and removal["purged_at"]:
            for name in files:
                (trash_dir / name).unlink(missing_ok=True)
            report.purges_finished.extend(files)
            continue
        _unclaimed(conn, tickets_dir, trash_dir, ticket_hash, files, names, report)
    _undo_restores(conn, tickets_dir, trash_dir, hash_, report)
    return report


def _names(trash_dir: Path, prefix: str | None) -> list[str]:
    try:
        with os.scandir(trash_dir) as entries:
            return sorted(e.name for e in entries if prefix is None or e.name.startswith(prefix))
    except FileNotFoundError:
        return []


def _unclaimed(
    conn: sqlite3.Connection,
    tickets_dir: Path,
    trash_dir: Path,
    ticket_hash: str,
    files: list[str],
    names: list[str],
    report: TrashRepair,
) -> None:
    """Put a rolled-back delete's files back, all or none; if they cannot all go back, set them all aside.

    Every writer of `tickets/` renames inside a catalog write transaction, and we hold the lock: a free
    place stays free until we have moved into it. A file already set aside (a kill mid-way through setting
    its group aside) keeps the rest of its group from going back alone.
    """
    places = [(trash_dir / name, tickets_dir / _original(name)) for name in files]
    row = conn.execute("SELECT 1 FROM tickets WHERE hash = ?", (ticket_hash,)).fetchone()
    aside = any(other.startswith(name + UNCLAIMED_SUFFIX) for name in files for other in names)
    if row is not None and not aside and not any(place.exists() for _, place in places):
        for trashed, place in places:
            os.replace(trashed, place)
            report.put_back.append(place.name)
        return
    for trashed, _ in places:
        target, n = trashed.with_name(trashed.name + UNCLAIMED_SUFFIX), 1
        while target.exists():
            n += 1
            target = trashed.with_name(f"{trashed.name}{UNCLAIMED_SUFFIX}.{n}")
        os.replace(trashed, target)
        report.set_aside.append(trashed.name)


def _original(name: str) -> str:
    parsed = parse_trash_name(name)
    assert parsed is not None
    return parsed[0]


def _undo_restores(
    conn: sqlite3.Connection, tickets_dir: Path, trash_dir: Path, hash_: str | None, report: TrashRepair
) -> None:
    """Move a rolled-back restore's files back to the trash (restore moves the content first, then the metadata)."""
    query = "SELECT * FROM removals WHERE in_trash = 1" + (" AND hash = ?" if hash_ is not None else "")
    rows = conn.execute(query + " ORDER BY removed_ts DESC, id DESC", (hash_,) if hash_ is not None else ()).fetchall()
    newest: set[tuple[str, str]] = set()
    for removal in rows:
        if (removal["source"], removal["ticket_id"]) in newest:
            continue  # restore only ever takes a ticket's newest trashed copy
        newest.add((removal["source"], removal["ticket_id"]))
        content = tickets_dir / (removal["hash"] + CONTENT_SUFFIX)
        metadata = content.with_name(content.name + META_SUFFIX)
        trashed_content = trash_dir / trash_name(content.name, removal["id"])
        trashed_metadata = trash_dir / trash_name(metadata.name, removal["id"])
        if trashed_content.exists():
            continue
        if conn.execute("SELECT 1 FROM tickets WHERE hash = ?", (removal["hash"],)).fetchone() is not None:
            continue
        files = read_files(content, metadata)
        if files is None or files.content_digest != removal["content_digest"]:
            continue
        os.replace(content, trashed_content)
        report.restores_undone.append(content.name)
        if metadata.exists() and not trashed_metadata.exists() and files.metadata_digest == removal["metadata_digest"]:
            os.replace(metadata, trashed_metadata)
            report.restores_undone.append(metadata.name)

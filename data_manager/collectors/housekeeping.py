"""Crash leftovers in the data directory: orphaned temp files, and a catalog that disagrees with its files.

Writes go temp file → fsync → rename, inside the catalog's write transaction, so a crash (SIGKILL,
power loss) can leave:
- a temp file that was never renamed (litter: harmless to readers, but it stays forever);
- a renamed file whose catalog row was not committed: a file without a row (a new ticket), or a row
  whose digest does not match the file (an update);
- files a removal or restore moved before its commit was rolled back, or a committed purge had not yet
  unlinked (`trash_repair`, which runs first, so a ticket whose removal never committed has its files
  back before rows are checked);
- a row whose file is gone (deleted by hand, an incomplete backup restored, a disk problem: a removal moves
  files to the trash). The ticket is reported in `files_lost` and its row kept: the worker submits a re-fetch,
  then drops the row (`drop_lost`). A kill in between leaves the row, so the next start finds it again.

`remove_orphaned_temp_files` removes temp files older than a few minutes (a live writer's temp file
is seconds old); `reconcile` makes the catalog describe the files again (but for lost files). Both run when a worker
starts; the temp sweep also runs from the worker's housekeeping. Nothing here removes a ticket's
file but what a committed purge removed already: a file the catalog does not know and that does not say
which ticket it is stays, and is reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from data_manager.collectors.adoption import Adoption, adopt
from data_manager.collectors.catalog import record_change
from data_manager.collectors.changes import ChangeKind
from data_manager.collectors.file_names import CONTENT_SUFFIX
from data_manager.collectors.persistence import PersistenceError, PersistenceService
from data_manager.collectors.staging import TEMP_SUFFIX
from data_manager.collectors.trash_repair import TrashRepair
from data_manager.collectors.trash_repair import repair as repair_trash

log = logging.getLogger("tickets.housekeeping")
ORPHAN_AGE_SECONDS = 300.0
RENAME_CLOCK_SLACK_SECONDS = 1.0  # see `_renamed_since`


class LostTicket(NamedTuple):
    """A ticket whose catalog row outlived its files: the data layer reports it, the worker fetches it again."""

    system: str  # the instance name, as the catalog keeps it
    ticket_id: str


@dataclass
class ReconcileReport:
    rows_added: list[str] = field(default_factory=list)  # file without row: the row is rebuilt from the file
    rows_updated: list[str] = field(default_factory=list)  # digest mismatch: the row follows the file
    files_lost: list[LostTicket] = field(default_factory=list)  # row without file: kept until `drop_lost`
    unknown_files: list[str] = field(default_factory=list)  # a file that does not say which ticket it is
    claimed_files: list[str] = field(default_factory=list)  # names a ticket the catalog keeps under another hash
    trash: TrashRepair = field(default_factory=TrashRepair)  # killed removals, restores and purges, settled

    @property
    def changed(self) -> int:
        return len(self.rows_added) + len(self.rows_updated) + self.trash.changed

    def record(self, hash_: str, outcome: Adoption) -> None:
        if outcome is Adoption.ADDED:
            self.rows_added.append(hash_)
        elif outcome is Adoption.UPDATED:
            self.rows_updated.append(hash_)
        elif outcome is Adoption.UNKNOWN:
            self.unknown_files.append(hash_ + CONTENT_SUFFIX)
        elif outcome is Adoption.CLAIMED:
            self.claimed_files.append(hash_ + CONTENT_SUFFIX)


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


def reconcile(persistence: PersistenceService) -> ReconcileReport:
    """Make the catalog agree with the ticket files (under the catalog's write lock).

    Every file a crash can have left ahead of the catalog (one without a row, or one renamed into place
    after its row was written) is adopted by `adoption.adopt`, the rule `PersistenceService.reconcile`
    applies to one hash. The trash is repaired first (`trash_repair`): a delete killed before its commit
    gets its files back, so its row is not taken for one without files. A row whose content file is
    still gone is listed in `files_lost` and kept: dropping it before a re-fetch is submitted would lose the
    ticket if the process died in between (`drop_lost` drops it once the caller has submitted one).
    """
    report = ReconcileReport()
    directory = persistence.tickets_dir
    with persistence.catalog.write() as conn:
        try:
            report.trash = repair_trash(conn, directory, persistence.trash_dir)
        except OSError as exc:
            raise PersistenceError(f"cannot repair the trash {persistence.trash_dir}: {exc.strerror}") from None
        rows = {row["hash"]: row for row in conn.execute("SELECT * FROM tickets").fetchall()}
        files = sorted(
            p.name[: -len(CONTENT_SUFFIX)]
            for p in directory.iterdir()
            if p.name.endswith(CONTENT_SUFFIX) and not p.name.startswith(".")
        )
        on_disk = set(files)
        for hash_, row in sorted(rows.items()):
            if hash_ not in on_disk:
                report.files_lost.append(LostTicket(row["source"], row["ticket_id"]))
        for hash_ in files:
            paths = (persistence.content_path(hash_), persistence.metadata_path(hash_))
            if hash_ in rows and not _renamed_since(paths, rows[hash_]["written_at"]):
                continue
            try:
                outcome = adopt(conn, hash_, *paths)
            except OSError as exc:
                raise PersistenceError(f"cannot read {exc.filename}: {exc.strerror}") from None
            report.record(hash_, outcome)
    if report.trash.changed:
        log.warning(
            "trash repaired after a killed removal, restore or purge in %s: put back %s; kept as *.unclaimed "
            "(no free place to go back to) %s; restores undone %s; purges finished %s",
            persistence.trash_dir,
            ", ".join(report.trash.put_back) or "none",
            ", ".join(report.trash.set_aside) or "none",
            ", ".join(report.trash.restores_undone) or "none",
            ", ".join(report.trash.purges_finished) or "none",
        )
    if report.changed or report.files_lost or report.unknown_files or report.claimed_files:
        log.warning(
            "catalog reconciled with the files in %s: %d row(s) added, %d updated; %d row(s) whose files were lost "
            "(%s); unknown files: %s; files naming a ticket stored under another name: %s",
            directory,
            len(report.rows_added),
            len(report.rows_updated),
            len(report.files_lost),
            ", ".join(f"{lost.system}:{lost.ticket_id}" for lost in report.files_lost[:5]) or "none",
            ", ".join(report.unknown_files[:5]) or "none",
            ", ".join(report.claimed_files[:5]) or "none",
        )
    return report


def _renamed_since(paths: tuple[Path, ...], written_at: str) -> bool:
    """Whether a file may have been renamed into place after its row was written (only those are read).

    A rename sets a file's ctime, not its mtime; and a write stamps the mtime when it stages its files,
    before it takes the lock, so a rename that follows another writer's commit can carry an older mtime.
    The file system's clock lags the one `written_at` is read from by a few ms, hence the slack.
    """
    try:
        written = datetime.fromisoformat(written_at).timestamp()
    except (TypeError, ValueError):
        return True
    for path in paths:
        try:
            if path.stat().st_ctime > written - RENAME_CLOCK_SLACK_SECONDS:
                return True
        except FileNotFoundError:
            continue
    return False


def startup_check(persistence: PersistenceService, older_than: float = ORPHAN_AGE_SECONDS) -> ReconcileReport:
    """What a worker runs when it starts: sweep old temp files, then reconcile the catalog.

    The report's `files_lost` are tickets whose files the store no longer holds: the caller must have them
    fetched again, then `drop_lost` their rows.
    """
    remove_orphaned_temp_files(persistence.tickets_dir, older_than)
    return reconcile(persistence)


def drop_lost(persistence: PersistenceService, lost: Iterable[LostTicket]) -> list[LostTicket]:
    """Drop the rows of lost tickets whose content file is still gone, each with a REMOVED entry; returns them.

    Called once their re-fetch is submitted, so a kill before leaves the rows for the next start to report.
    The feed says what the store holds: the copy is gone until the re-fetch records WRITTEN (or, if the
    ticket is gone upstream too, for good). A re-fetch that already wrote the files (another worker, under
    the same write lock) keeps its row.
    """
    dropped = []
    with persistence.catalog.write() as conn:
        for ticket in lost:
            row = conn.execute(
                "SELECT hash FROM tickets WHERE source = ? AND ticket_id = ?", (ticket.system, ticket.ticket_id)
            ).fetchone()
            if row is None or persistence.content_path(row["hash"]).exists():
                continue
            conn.execute("DELETE FROM tickets WHERE hash = ?", (row["hash"],))
            record_change(conn, ticket.system, ticket.ticket_id, row["hash"], ChangeKind.REMOVED)
            dropped.append(ticket)
    if dropped:
        log.warning(
            "dropped %d catalog row(s) whose files were lost (re-fetched unless their system is not configured): %s",
            len(dropped),
            ", ".join(f"{t.system}:{t.ticket_id}" for t in dropped[:5]),
        )
    return dropped

"""Crash leftovers: old temp files swept, catalog reconciled with the files (each case a crash leaves)."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from data_manager.collectors.housekeeping import (
    LostTicket,
    drop_lost,
    reconcile,
    remove_orphaned_temp_files,
    startup_check,
)
from data_manager.collectors.persistence import PersistenceService, render_metadata
from data_manager.collectors.tickets.ticket_resource import TicketResource
from service.worker_health import WorkerHealth, scheduler_problems


def resource(ticket_id: str, text: str, hour: int = 1) -> TicketResource:
    when = datetime(2024, 5, 1, hour, tzinfo=UTC)
    content = f"Title: {text}\nTicket: memory:{ticket_id}\nUpdated: {when.isoformat()}\n\n{text}\n"
    return TicketResource(ticket_id=ticket_id, content=content, source_type="memory", metadata={"updated_at": when})


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_only_temp_files_older_than_the_threshold_are_removed(tmp_path: Path) -> None:
    old, young, ticket = tmp_path / ".memory_T1.txt.abc.tmp", tmp_path / ".memory_T2.txt.def.tmp", tmp_path / "x.txt"
    for path in (old, young, ticket):
        path.write_text("x")
    past = time.time() - 3600
    os.utime(old, (past, past))
    os.utime(ticket, (past, past))
    assert remove_orphaned_temp_files(tmp_path, older_than=300) == [old]
    assert young.exists() and ticket.exists()


def test_reconcile_makes_the_catalog_describe_the_files(tmp_path: Path) -> None:
    persistence = PersistenceService(tmp_path)
    for ticket_id in ("T1", "T2", "T3"):
        persistence.upsert(resource(ticket_id, f"first {ticket_id}"))
    # A crash after the renames, before the commit: an update's files with the old row ...
    time.sleep(0.01)
    newer = resource("T1", "second T1", hour=2)
    persistence.content_path("memory_T1").write_text(newer.content)
    persistence.metadata_path("memory_T1").write_text(render_metadata(newer.get_metadata()))
    # ... a new ticket's file with no row at all ...
    persistence.content_path("memory_T9").write_text(resource("T9", "new T9").content)
    # ... and a file deleted by hand: the row outlives it.
    persistence.content_path("memory_T3").unlink()
    # A file that does not say which ticket it is stays where it is.
    persistence.content_path("memory_T8").write_text("no headers here")

    report = reconcile(persistence)
    assert (report.rows_updated, report.rows_added) == (["memory_T1"], ["memory_T9"])
    assert report.files_lost == [("memory", "T3")]  # for the worker to fetch again; the row stays until then
    assert report.unknown_files == ["memory_T8.txt"]
    assert {e.hash for e in persistence.list_entries()} == {"memory_T1", "memory_T2", "memory_T3", "memory_T9"}
    assert drop_lost(persistence, report.files_lost) == [("memory", "T3")]
    entries = {e.hash: e for e in persistence.list_entries()}
    assert set(entries) == {"memory_T1", "memory_T2", "memory_T9"}
    assert entries["memory_T1"].content_digest == sha(persistence.content_path("memory_T1"))
    assert entries["memory_T1"].updated_at.startswith("2024-05-01T02:00")
    assert (entries["memory_T9"].source, entries["memory_T9"].ticket_id) == ("memory", "T9")
    assert persistence.content_path("memory_T8").exists()
    # A second start finds nothing to do; an older snapshot no longer overwrites the newer file.
    second = startup_check(persistence)
    assert second.changed == 0 and second.files_lost == []
    assert persistence.upsert(resource("T1", "first T1")).value == "stale"


def test_scheduler_problems_name_the_worker() -> None:
    assert scheduler_problems([WorkerHealth("a", True, "running"), WorkerHealth("b", True, "standby")]) == []
    assert scheduler_problems([WorkerHealth("a", True, "running"), WorkerHealth("b", True, "stopped")]) == [
        "worker b: scheduler stopped"
    ]
    [problem] = scheduler_problems([WorkerHealth("a", True, "off"), WorkerHealth("d", False, "running")])
    assert "no live worker runs a scheduler" in problem
    assert scheduler_problems([]) == []


@pytest.mark.parametrize("upstream_hour", [1, 0], ids=["same version", "older upstream"])
def test_a_lost_ticket_fetched_again_before_its_row_is_dropped_keeps_its_row(
    tmp_path: Path, upstream_hour: int
) -> None:
    """The re-fetch may run (another worker) between the report and the drop: it must write, and stay.

    Neither "unchanged" nor "stale" against a row whose files are gone: the row describes nothing.
    """
    persistence = PersistenceService(tmp_path)
    persistence.upsert(resource("T1", "first T1"))
    persistence.content_path("memory_T1").unlink()
    persistence.metadata_path("memory_T1").unlink()
    lost = startup_check(persistence).files_lost
    assert lost == [LostTicket("memory", "T1")]
    seq = persistence.last_change_seq()

    assert persistence.upsert(resource("T1", "first T1", hour=upstream_hour)).value == "written"
    assert drop_lost(persistence, lost) == []

    ticket = persistence.get("memory", "T1")
    assert ticket is not None and "first T1" in ticket.content
    assert persistence.metadata_path("memory_T1").exists()
    assert [(c.ticket_id, c.kind.value) for c in persistence.changes(after=seq)] == [("T1", "written")]
    assert startup_check(persistence).files_lost == []


def test_a_lost_ticket_gone_upstream_before_its_row_is_dropped_is_removed_and_logged(tmp_path: Path) -> None:
    """The re-fetch finds the ticket gone upstream while its row (without files) is still there."""
    persistence = PersistenceService(tmp_path)
    persistence.upsert(resource("T1", "first T1"))
    persistence.content_path("memory_T1").unlink()
    persistence.metadata_path("memory_T1").unlink()
    lost = startup_check(persistence).files_lost
    seq = persistence.last_change_seq()

    assert persistence.delete("memory", "T1") is True  # nothing to move to the trash: no crash
    assert drop_lost(persistence, lost) == []

    assert persistence.get("memory", "T1") is None
    assert [(r.source, r.ticket_id) for r in persistence.removals()] == [("memory", "T1")]
    assert [(c.ticket_id, c.kind.value) for c in persistence.changes(after=seq)] == [("T1", "removed")]
    assert startup_check(persistence).files_lost == []

"""kill -9 inside `delete`, `restore` and `purge_trash` of the embedded store, then the worker's start-up repair.

Each operation moves or deletes files and commits a catalog transaction; whatever point the kill hits,
after `startup_check` the ticket must be wholly in one committed state: stored (row and files, nothing
claimed in the trash), removed (no row, the removal logged with its files in the trash, restorable) or
purged. Nothing is left in the trash that no removal claims, and the change feed says the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_manager.collectors.changes import ChangeKind
from data_manager.collectors.housekeeping import startup_check
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import TicketResource
from tests.persistence.crash_points import run_killed

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
HASH = "jira_PROJ-7"


def resource(content: str, minutes: int = 0) -> TicketResource:
    updated = T0 + timedelta(minutes=minutes)
    metadata = {"url": "https://jira/browse/PROJ-7", "updated_at": updated.isoformat(), "rev": content}
    return TicketResource(ticket_id="PROJ-7", content=content, source_type="jira", created_at=T0, metadata=metadata)


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    store = PersistenceService(tmp_path / "data")
    store.upsert(resource("v1"))
    return store


def trash_files(store: PersistenceService) -> list[str]:
    """The trash's files of PROJ-7 (and anything a repair would name after it)."""
    names = (p.name for p in store.trash_dir.iterdir()) if store.trash_dir.exists() else iter(())
    return sorted(name for name in names if name.startswith(HASH + "."))


def ticket_files(store: PersistenceService) -> list[str]:
    return sorted(p.name for p in store.tickets_dir.iterdir() if p.name.startswith(HASH + "."))


def last_change(store: PersistenceService) -> ChangeKind:
    return [c.kind for c in store.changes() if c.ticket_id == "PROJ-7"][-1]


def settle(data_path: Path) -> str:
    """Run the start-up repair in a fresh process's view; return which whole state the ticket is in."""
    store = PersistenceService(data_path)
    startup_check(store)
    assert startup_check(store).changed == 0  # the repair is done in one go
    removals = [r for r in store.removals() if r.ticket_id == "PROJ-7"]
    in_trash = [r for r in removals if r.in_trash]
    stored = store.get("jira", "PROJ-7")
    if stored is not None:
        assert stored.content == "v1" and stored.metadata["extra"]["rev"] == "v1"
        assert ticket_files(store) == [f"{HASH}.txt", f"{HASH}.txt.meta.yaml"]
        assert in_trash == [] and trash_files(store) == []
        assert last_change(store) is ChangeKind.WRITTEN
        return "stored"
    assert ticket_files(store) == []
    assert last_change(store) is ChangeKind.REMOVED
    if not in_trash:
        assert removals[0].purged_at and trash_files(store) == []
        return "purged"
    newest = removals[0]
    assert in_trash == [newest]
    assert trash_files(store) == [f"{HASH}.{newest.id}.txt", f"{HASH}.{newest.id}.txt.meta.yaml"]
    store.restore("jira", "PROJ-7")  # restorable, as it was
    assert store.get("jira", "PROJ-7").content == "v1"  # type: ignore[union-attr]
    assert store.get("jira", "PROJ-7").metadata["extra"]["rev"] == "v1"  # type: ignore[union-attr]
    assert trash_files(store) == []
    return "removed"


def _delete(data_path: Path) -> None:
    PersistenceService(data_path).delete("jira", "PROJ-7")


def _restore(data_path: Path) -> None:
    PersistenceService(data_path).restore("jira", "PROJ-7")


def _purge(data_path: Path) -> None:
    PersistenceService(data_path).purge_trash(timedelta(0), now=datetime.now(UTC) + timedelta(days=1))


@pytest.mark.parametrize("moves", [1, 2])  # after the content's move; after both, before the commit
def test_delete_killed_after_moving_files_is_undone_at_start_up(store: PersistenceService, moves: int) -> None:
    run_killed("replace", moves, lambda: _delete(store.data_path))
    assert settle(store.data_path) == "stored"
    assert store.removals() == []


@pytest.mark.parametrize("moves", [1, 2])  # after the content's move back; after both, before the commit
def test_restore_killed_after_moving_files_back_is_undone_at_start_up(store: PersistenceService, moves: int) -> None:
    store.delete("jira", "PROJ-7")
    run_killed("replace", moves, lambda: _restore(store.data_path))
    assert settle(store.data_path) == "removed"


@pytest.mark.parametrize("unlinks", [0, 1])  # before any unlink; after the content's
def test_purge_killed_mid_way_is_finished_or_never_happened(store: PersistenceService, unlinks: int) -> None:
    store.delete("jira", "PROJ-7")
    run_killed("unlink", unlinks, lambda: _purge(store.data_path))
    assert settle(store.data_path) in ("purged", "removed")


def test_the_per_entry_repair_puts_back_the_files_of_a_killed_delete(store: PersistenceService) -> None:
    run_killed("replace", 2, lambda: _delete(store.data_path))
    assert store.content_path(HASH).exists() is False
    store.reconcile(HASH)
    assert store.get("jira", "PROJ-7").content == "v1"  # type: ignore[union-attr]
    assert ticket_files(store) == [f"{HASH}.txt", f"{HASH}.txt.meta.yaml"] and trash_files(store) == []


def test_deleting_again_after_a_killed_delete_trashes_the_files_restorably(store: PersistenceService) -> None:
    run_killed("replace", 2, lambda: _delete(store.data_path))
    store.upsert(TicketResource(ticket_id="PROJ-8", content="8", source_type="jira", created_at=T0))
    store.delete("jira", "PROJ-8")  # takes the removal id the killed delete had used
    assert store.delete("jira", "PROJ-7") is True  # a live worker, before any restart
    assert settle(store.data_path) == "removed"


def test_files_of_a_killed_delete_never_overwrite_a_newer_write_and_are_kept(store: PersistenceService) -> None:
    run_killed("replace", 2, lambda: _delete(store.data_path))
    store.upsert(resource("v2", 5))  # a live worker rewrites the ticket before any restart
    report = startup_check(store)
    assert sorted(report.trash.set_aside) == [f"{HASH}.1.txt", f"{HASH}.1.txt.meta.yaml"]
    assert store.get("jira", "PROJ-7").content == "v2"  # type: ignore[union-attr]
    assert trash_files(store) == [f"{HASH}.1.txt.meta.yaml.unclaimed", f"{HASH}.1.txt.unclaimed"]
    kept = store.trash_dir / f"{HASH}.1.txt.unclaimed"
    assert kept.read_text() == "v1"  # both copies kept
    assert startup_check(store).changed == 0
    assert store.delete("jira", "PROJ-7") is True  # a later removal (which may reuse id 1) overwrites nothing
    assert kept.read_text() == "v1"
    store.restore("jira", "PROJ-7")
    assert store.get("jira", "PROJ-7").content == "v2"  # type: ignore[union-attr]

"""Staged files: written and fsynced out of sight, then published in one step, or dropped without a trace."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

import pytest

from data_manager.collectors import persistence, staging
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.staging import stage_files
from tests.persistence.contract.support import resource
from tests.persistence.crash_points import STAGING_KINDS, held_unnamed, use_staging
from tests.persistence.durability import FILE_SYSTEM, record_syncs


@pytest.fixture(params=STAGING_KINDS)
def kind(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    use_staging(request.param, tmp_path, monkeypatch)
    return str(request.param)


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_a_staged_file_is_out_of_sight_until_published(tmp_path: Path, kind: str) -> None:
    (staged,) = stage_files([(tmp_path / "a.txt", "new")])
    if kind == "unnamed":
        assert names(tmp_path) == [] and held_unnamed(os.getpid(), tmp_path) == 1
    else:
        assert [name.startswith(".a.txt.") and name.endswith(".tmp") for name in names(tmp_path)] == [True]
    staged.publish()
    assert names(tmp_path) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "new"
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == staging.FILE_MODE
    assert held_unnamed(os.getpid(), tmp_path) == 0  # the descriptor is closed once published
    staged.discard()  # after publishing: nothing to drop
    assert names(tmp_path) == ["a.txt"]


def test_publishing_replaces_an_existing_file_in_one_step(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    reader = target.open()  # a reader of the old file keeps reading it whole
    before = target.stat().st_ino
    (staged,) = stage_files([(target, "new")])
    assert target.read_text() == "old"
    staged.publish()
    assert target.read_text() == "new" and target.stat().st_ino != before
    assert reader.read() == "old"
    reader.close()
    assert names(tmp_path) == ["a.txt"]  # no temp name left behind


def test_a_discarded_file_leaves_nothing(tmp_path: Path, kind: str) -> None:
    staged = stage_files([(tmp_path / "a.txt", "x"), (tmp_path / "b.txt", "y")])
    for file in staged:
        file.discard()
        file.discard()
    assert names(tmp_path) == [] and held_unnamed(os.getpid(), tmp_path) == 0
    with pytest.raises(ValueError, match="already published or discarded"):
        staged[0].publish()


def test_a_failure_part_way_stages_nothing(tmp_path: Path, kind: str) -> None:
    with pytest.raises(FileNotFoundError):
        stage_files([(tmp_path / "a.txt", "x"), (tmp_path / "missing" / "b.txt", "y")])
    assert names(tmp_path) == [] and held_unnamed(os.getpid(), tmp_path) == 0


def test_without_unnamed_inodes_the_file_system_gets_named_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that refuses O_TMPFILE (EOPNOTSUPP: NFS, some FUSE mounts) is probed once and written the old way."""
    real_open = os.open

    def refusing(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing)
    monkeypatch.setattr(staging, "_unnamed_support", {})
    (staged,) = stage_files([(tmp_path / "a.txt", "x")])
    assert staging.supports_unnamed(tmp_path) is False
    assert [name.endswith(".tmp") for name in names(tmp_path)] == [True]
    staged.publish()
    assert names(tmp_path) == ["a.txt"]


def test_a_large_batch_stages_named_files_to_bound_open_descriptors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PersistenceService(tmp_path / "data")
    if not staging.supports_unnamed(store.tickets_dir):
        pytest.skip("this file system makes no unnamed inodes")
    monkeypatch.setattr(persistence, "UNNAMED_FILES_LIMIT", 4)
    fsynced = record_syncs(monkeypatch)
    store.upsert_many([(resource("x", ticket_id=f"A-{n}"), None) for n in range(2)])  # 4 files: unnamed
    assert sum(name.endswith(" (deleted)") for name in fsynced) == 4
    fsynced.clear()
    store.upsert_many([(resource("x", ticket_id=f"B-{n}"), None) for n in range(3)])  # 6 files: named
    assert sum(name.endswith(".tmp") for name in fsynced) == 6
    assert store.count() == 5


def test_a_large_batch_is_made_durable_by_one_sync_of_the_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not staging.can_sync_file_system():
        pytest.skip("no syncfs(2) that reports write-back errors here")
    store = PersistenceService(tmp_path / "data")
    synced = record_syncs(monkeypatch)
    count = staging.SYNC_FILE_SYSTEM_MIN_FILES // 2  # two files a ticket
    store.upsert_many([(resource("x", ticket_id=f"A-{n}"), None) for n in range(count)])
    # Written, then one sync of the file system (before any is published), then the directory's new names.
    assert synced == [FILE_SYSTEM, str(store.tickets_dir)]
    synced.clear()
    store.upsert_many([(resource("y", ticket_id=f"A-{n}"), None) for n in range(count - 1)])  # a smaller batch
    assert FILE_SYSTEM not in synced and len(synced) == 2 * (count - 1) + 1


def test_a_failed_sync_of_the_file_system_stores_nothing_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs(2) reports a write-back error (EIO) as -1: the batch fails whole, as a failed fsync would."""
    if not staging.can_sync_file_system():
        pytest.skip("no syncfs(2) that reports write-back errors here")
    store = PersistenceService(tmp_path / "data")
    store.upsert(resource("v1", ticket_id="A-0"))

    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(staging, "_syncfs", failing)
    count = staging.SYNC_FILE_SYSTEM_MIN_FILES // 2
    with pytest.raises(persistence.PersistenceError, match="Input/output error"):
        store.upsert_many([(resource("v2", ticket_id=f"A-{n}"), None) for n in range(count)])
    assert store.count() == 1 and store.get("jira", "A-0").content == "v1"
    assert [path.name for path in store.tickets_dir.iterdir() if path.name.endswith(".tmp")] == []
    assert held_unnamed(os.getpid(), store.tickets_dir) == 0

"""The embedded store's own behaviour (files, fsync, the SQLite catalog); the contract both stores keep is in contract/."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from data_manager.collectors.persistence import PersistenceError, PersistenceService, UpsertOutcome
from tests.persistence.contract.support import T0, resource


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data")


def test_upsert_writes_the_spec_layout(store: PersistenceService) -> None:
    assert store.upsert(resource()) is UpsertOutcome.WRITTEN
    content = store.data_path / "tickets" / "jira_PROJ-7.txt"
    meta = store.data_path / "tickets" / "jira_PROJ-7.txt.meta.yaml"
    assert content.read_text() == "hello"
    loaded = yaml.safe_load(meta.read_text())
    assert loaded["display_name"] == "jira:PROJ-7"  # the seed's default: no display_name in the metadata dict
    assert loaded["extra"]["ticket_id"] == "PROJ-7" and loaded["extra"]["source_type"] == "jira"
    stored = store.get("jira", "PROJ-7")
    assert stored is not None and stored.content == "hello" and stored.entry.updated_at == T0.isoformat()
    assert store.get_by_hash("jira_PROJ-7") == stored


def test_identical_upsert_writes_nothing(store: PersistenceService) -> None:
    store.upsert(resource())
    path = store.content_path("jira_PROJ-7")
    before = (path.stat().st_mtime_ns, path.stat().st_ino, store.get("jira", "PROJ-7").entry.written_at)
    assert store.upsert(resource()) is UpsertOutcome.UNCHANGED
    after = (path.stat().st_mtime_ns, path.stat().st_ino, store.get("jira", "PROJ-7").entry.written_at)
    assert before == after


def test_a_removed_file_is_rewritten_even_if_the_catalog_matches(store: PersistenceService) -> None:
    store.upsert(resource())
    store.content_path("jira_PROJ-7").unlink()
    assert store.upsert(resource()) is UpsertOutcome.WRITTEN
    assert store.content_path("jira_PROJ-7").read_text() == "hello"


def test_delete_removes_files_and_entry(store: PersistenceService) -> None:
    store.upsert(resource())
    assert store.delete("jira", "PROJ-7") is True
    assert store.get("jira", "PROJ-7") is None
    assert not store.content_path("jira_PROJ-7").exists()
    assert not store.metadata_path("jira_PROJ-7").exists()
    assert store.delete("jira", "PROJ-7") is False


def test_errors_name_the_resource_and_the_path(tmp_path: Path) -> None:
    store = PersistenceService(tmp_path / "data", fsync=False)
    store.tickets_dir.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root ignores directory permissions: make the target a directory instead
            store.tickets_dir.chmod(0o700)
            store.content_path("jira_PROJ-7").mkdir()
        with pytest.raises(PersistenceError) as info:
            store.upsert(resource())
    finally:
        store.tickets_dir.chmod(0o700)
    assert "jira:PROJ-7" in str(info.value) and "jira_PROJ-7.txt" in str(info.value)
    assert store.get("jira", "PROJ-7") is None  # the failed write left no catalog entry


def test_data_dir_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PersistenceError, match="file/tickets"):
        PersistenceService(blocker)


def test_no_temp_files_are_left_behind(store: PersistenceService) -> None:
    for minute in range(20):
        store.upsert(resource(f"v{minute}", T0 + timedelta(minutes=minute)))
    assert sorted(p.name for p in store.tickets_dir.iterdir()) == ["jira_PROJ-7.txt", "jira_PROJ-7.txt.meta.yaml"]


def test_readers_never_see_a_torn_file(store: PersistenceService) -> None:
    versions = [("x" * 200_000) + str(i) for i in range(30)]
    stop = threading.Event()
    seen: set[str] = set()

    def read_loop() -> None:
        path = store.content_path("jira_PROJ-7")
        while not stop.is_set():
            try:
                seen.add(path.read_text())
            except FileNotFoundError:
                pass

    reader = threading.Thread(target=read_loop)
    reader.start()
    for i, text in enumerate(versions):
        store.upsert(resource(text, T0 + timedelta(seconds=i)))
    stop.set()
    reader.join()
    assert seen and seen <= set(versions)


def test_a_forked_child_opens_its_own_catalog_connection(store: PersistenceService) -> None:
    store.upsert(resource("parent", T0))  # the parent now holds an open connection
    pid = os.fork()
    if pid == 0:  # child: must be able to write through the same service object
        code = 0
        try:
            assert store.upsert(resource("child", T0 + timedelta(minutes=1))) is UpsertOutcome.WRITTEN
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("jira", "PROJ-7").content == "child"


def test_unchanged_and_stale_are_decided_without_the_write_lock_or_yaml(
    store: PersistenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from data_manager.collectors import persistence as persistence_module

    store.upsert(resource("new", T0 + timedelta(minutes=5)))
    monkeypatch.setattr(persistence_module, "render_metadata", lambda _: pytest.fail("rendered YAML"))
    blocker = sqlite3.connect(store.catalog.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process's write transaction, held throughout
    try:
        outcomes: list[UpsertOutcome] = []
        worker = threading.Thread(
            target=lambda: outcomes.extend(
                [store.upsert(resource("new", T0 + timedelta(minutes=5))), store.upsert(resource("old", T0))]
            )
        )
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "an unchanged or stale upsert waited for the write lock"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert outcomes == [UpsertOutcome.UNCHANGED, UpsertOutcome.STALE]


def test_an_entry_with_a_yaml_digest_from_before_canonical_digests_is_updated_without_rewriting(
    store: PersistenceService,
) -> None:
    import hashlib

    from data_manager.collectors.persistence import metadata_yaml

    store.upsert(resource())
    legacy = hashlib.sha256(metadata_yaml(resource()).encode()).hexdigest()
    with store.catalog.write() as conn:
        conn.execute("UPDATE tickets SET metadata_digest = ?", (legacy,))
    path = store.content_path("jira_PROJ-7")
    before = (path.stat().st_ino, store.metadata_path("jira_PROJ-7").stat().st_ino)
    assert store.upsert(resource()) is UpsertOutcome.UNCHANGED
    assert (path.stat().st_ino, store.metadata_path("jira_PROJ-7").stat().st_ino) == before
    assert store.get("jira", "PROJ-7").entry.metadata_digest != legacy
    assert store.upsert(resource(project="changed")) is UpsertOutcome.WRITTEN

"""`tickets export` / `tickets import`: the embedded layout out of and into a store, streaming and idempotent."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import Comment, TicketData
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.normalise import normalise
from data_manager.collectors.transfer import TransferError, export_tickets, import_tickets
from tests.pipeline_support.configs import write_config
from workers.cli import main

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def snapshot(n: int, *, title: str = "", minutes: int = 0) -> TicketSnapshot:
    updated = T0 + timedelta(minutes=minutes)
    return TicketSnapshot(
        ticket_id=f"T{n}",
        data=TicketData(title=title or f"Ticket {n} 🙂 ünïcode", description="tray 2\njams", requester="bob"),
        comments=[Comment("ann", f"comment on {n}", updated)],
        created_at=T0,
        updated_at=updated,
        url=f"https://tickets.example/T{n}",
    )


def fill(store: PersistenceService, count: int, system: str = "memory", **kwargs: object) -> None:
    batch = []
    for n in range(count):
        snap = snapshot(n, **kwargs)  # type: ignore[arg-type]
        batch.append((normalise(system, snap), snap.updated_at))
        if len(batch) == 100:
            store.upsert_many(batch)
            batch.clear()
    store.upsert_many(batch)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (directory / "tickets").iterdir() if not p.name.startswith(".")}


def catalog(store: PersistenceService) -> list[tuple[object, ...]]:
    return [
        (e.hash, e.source, e.ticket_id, e.updated_at, e.updated_ts, e.content_digest, e.metadata_digest)
        for e in store.iter_entries()
    ]


@pytest.fixture
def source(tmp_path: Path) -> PersistenceService:
    store = PersistenceService(tmp_path / "source", fsync=False)
    fill(store, 30)
    fill(store, 5, system="jira_legacy")
    return store


def test_export_writes_exactly_the_embedded_layout_and_import_rebuilds_the_store(
    tmp_path: Path, source: PersistenceService
) -> None:
    report = export_tickets(source, tmp_path / "export")
    assert report.exported == 35
    assert files(tmp_path / "export") == files(source.data_path)  # byte for byte, metadata files included
    target = PersistenceService(tmp_path / "target", fsync=False)
    imported = import_tickets(target, tmp_path / "export", batch_size=7)
    assert (imported.read, imported.written, imported.malformed) == (35, 35, [])
    assert files(target.data_path) == files(source.data_path)
    assert catalog(target) == catalog(source)  # upstream times and digests as the source stored them
    assert target.last_change_seq() == 35  # indexers of the new store see every imported ticket


def test_import_reads_a_data_directory_directly_and_is_idempotent(tmp_path: Path, source: PersistenceService) -> None:
    target = PersistenceService(tmp_path / "target", fsync=False)
    import_tickets(target, source.data_path)
    seq = target.last_change_seq()
    again = import_tickets(target, source.data_path)
    assert (again.read, again.written, again.unchanged, again.stale) == (35, 0, 35, 0)
    assert target.last_change_seq() == seq  # nothing written, nothing in the feed


def test_import_keeps_a_newer_copy_already_in_the_store(tmp_path: Path, source: PersistenceService) -> None:
    target = PersistenceService(tmp_path / "target", fsync=False)
    newer = snapshot(3, title="edited later", minutes=60)
    target.upsert(normalise("memory", newer), updated_at=newer.updated_at)
    report = import_tickets(target, source.data_path)
    assert report.stale == 1 and report.written == 34
    assert "edited later" in target.get("memory", "T3").content


def test_export_of_one_system(tmp_path: Path, source: PersistenceService) -> None:
    assert export_tickets(source, tmp_path / "export", "jira_legacy").exported == 5
    names = files(tmp_path / "export")
    assert len(names) == 10 and all(name.startswith("jira_legacy_") for name in names)


def test_a_malformed_ticket_is_named_and_not_imported_while_the_rest_are(
    tmp_path: Path, source: PersistenceService
) -> None:
    export_tickets(source, tmp_path / "export")
    tickets = tmp_path / "export" / "tickets"
    (tickets / "memory_T1.txt.meta.yaml").unlink()  # content without metadata
    (tickets / "memory_T2.txt.meta.yaml").write_text("display_name: [unclosed\n")  # not YAML
    (tickets / "memory_T3.txt").rename(tickets / "memory_T33.txt")  # names another ticket than it holds
    (tickets / "memory_T33.txt.meta.yaml").write_bytes((tickets / "memory_T3.txt.meta.yaml").read_bytes())
    (tickets / "memory_T4.txt").write_bytes(b"\xff\xfe not utf-8")
    (tickets / "memory_T5.txt.meta.yaml").write_text("just a string\n")
    (tickets / ".memory_T6.txt.abc.tmp").write_text("a temp file is no ticket")
    target = PersistenceService(tmp_path / "target", fsync=False)
    report = import_tickets(target, tmp_path / "export")
    bad = {Path(path).name: why for path, why in report.malformed}
    assert set(bad) == {"memory_T1.txt", "memory_T2.txt", "memory_T33.txt", "memory_T4.txt", "memory_T5.txt"}
    assert "memory_T1.txt.meta.yaml is missing" in bad["memory_T1.txt"]
    assert "memory:T3" in bad["memory_T33.txt"] and "memory_T3.txt" in bad["memory_T33.txt"]
    assert "UTF-8" in bad["memory_T4.txt"]
    assert report.read == 35 and report.written == 30  # a metadata file without its content is no ticket
    for ticket_id in ("T1", "T2", "T3", "T33", "T4", "T5"):
        assert not target.has_copy("memory", ticket_id)  # nothing half-imported
    assert target.get("memory", "T7") is not None


def test_import_from_a_directory_without_tickets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="tickets"):
        import_tickets(PersistenceService(tmp_path / "target", fsync=False), tmp_path / "nothing")


def test_the_commands(tmp_path: Path, source: PersistenceService) -> None:
    config = write_config(tmp_path, "redis://127.0.0.1:1/0")  # the configured store: tmp_path / "data"
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "import", "--from", str(source.data_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"] == 35
    result = runner.invoke(
        main, ["--config", str(config), "export", "--to", str(tmp_path / "out"), "--system", "memory"]
    )
    assert result.exit_code == 0 and "exported 30 ticket(s)" in result.output
    (tmp_path / "out" / "tickets" / "memory_T9.txt.meta.yaml").unlink()
    result = runner.invoke(main, ["--config", str(config), "import", "--from", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "0 written, 29 unchanged" in result.output and "memory_T9.txt" in result.output
    result = runner.invoke(main, ["--config", str(config), "import", "--from", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "is not a directory" in result.output


def _peak_import_bytes(tmp_path: Path, count: int) -> int:
    data = tmp_path / f"data-{count}"
    fill(PersistenceService(data, fsync=False), count)
    target = PersistenceService(tmp_path / f"target-{count}", fsync=False)
    tracemalloc.start()
    try:
        report = import_tickets(target, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.written == count
    return peak


def test_import_memory_stays_flat(tmp_path: Path) -> None:
    small = _peak_import_bytes(tmp_path, 200)
    large = _peak_import_bytes(tmp_path, 2000)
    assert large < 2 * small, (small, large)  # held: one batch, never the whole directory

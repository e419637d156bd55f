"""Export and import on both stores: the same files out of either, and a data directory into either."""

from __future__ import annotations

from pathlib import Path

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.store import TicketStore
from data_manager.collectors.transfer import export_tickets, import_tickets
from tests.persistence.test_transfer import files, fill


def test_a_data_directory_imported_into_the_store_exports_byte_for_byte(store: TicketStore, tmp_path: Path) -> None:
    embedded = PersistenceService(tmp_path / "embedded", fsync=False)
    fill(embedded, 12)
    fill(embedded, 3, system="jira_legacy")
    report = import_tickets(store, embedded.data_path, batch_size=5)
    assert (report.written, report.malformed) == (15, [])
    assert store.last_change_seq() == 15
    assert import_tickets(store, embedded.data_path).unchanged == 15 and store.last_change_seq() == 15
    assert export_tickets(store, tmp_path / "out").exported == 15
    assert files(tmp_path / "out") == files(embedded.data_path)
    assert export_tickets(store, tmp_path / "legacy", "jira_legacy").exported == 3
    assert set(files(tmp_path / "legacy")) == {name for name in files(embedded.data_path) if "legacy" in name}

"""`tickets import` into either store, then `tickets export` out of it, gives back the embedded layout byte for byte.

The migration path from one machine to many: a data directory loaded into PostgreSQL, and the files an
indexer reads written from it again.
"""

from __future__ import annotations

from pathlib import Path

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.store import TicketStore
from data_manager.collectors.transfer import export_tickets, import_tickets
from tests.persistence.test_transfer import fill


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (directory / "tickets").iterdir() if not p.name.startswith(".")}


def _catalog(store: TicketStore) -> list[tuple[object, ...]]:
    return [
        (e.hash, e.source, e.ticket_id, e.updated_at, e.updated_ts, e.content_digest, e.metadata_digest)
        for e in store.iter_entries()
    ]


def test_import_then_export_round_trips_the_embedded_layout(tmp_path: Path, store: TicketStore) -> None:
    source = PersistenceService(tmp_path / "source", fsync=False)
    fill(source, 40)
    fill(source, 6, system="jira_legacy")
    imported = import_tickets(store, source.data_path, batch_size=9)
    assert (imported.read, imported.written, imported.malformed) == (46, 46, [])
    assert _catalog(store) == _catalog(source)  # upstream times and digests as the source had them
    assert store.last_change_seq() == 46 and {c.kind.value for c in store.changes(after=0, limit=100)} == {"written"}
    again = import_tickets(store, source.data_path)
    assert (again.written, again.unchanged) == (0, 46) and store.last_change_seq() == 46
    report = export_tickets(store, tmp_path / "export")
    assert report.exported == 46
    assert _files(tmp_path / "export") == _files(source.data_path)
    legacy = export_tickets(store, tmp_path / "legacy", "jira_legacy")
    assert legacy.exported == 6 and len(_files(tmp_path / "legacy")) == 12  # content + metadata each

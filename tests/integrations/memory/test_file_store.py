"""The memory integration's file-backed store and its simulated upstream faults."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from data_manager.collectors.tickets.errors import PermanentError, TicketGone, TransientError
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import FileBackedBackend, InMemoryBackend
from data_manager.collectors.tickets.model import Comment, Status, TicketData


def _add_comments(path: str, ticket_id: str, count: int) -> None:
    store = FileBackedBackend(path)
    for n in range(count):
        store.add_comment(ticket_id, Comment("bot", f"comment {n}", datetime(2024, 1, 1, tzinfo=UTC)))


def test_state_is_shared_between_handles_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    first = FileBackedBackend(path)
    ticket_id = first.create(TicketData(title="Printer on fire", status=Status.OPEN))
    second = FileBackedBackend(path)
    second.update(ticket_id, {"status": "in_progress"})
    second.add_comment(ticket_id, Comment("ann", "on it", datetime(2024, 5, 1, tzinfo=UTC)))

    data, comments = first.read(ticket_id)  # sees the other handle's changes
    assert data.status is Status.IN_PROGRESS
    assert [c.text for c in comments] == ["on it"]
    assert FileBackedBackend(path).create(TicketData(title="next")) == "T000002"
    assert [tid for tid, _ in first.ids_changed_since(None)] == ["T000001", "T000002"]


def test_concurrent_processes_lose_no_update(tmp_path: Path) -> None:
    path = str(tmp_path / "tickets.json")
    ticket_id = FileBackedBackend(path).create(TicketData(title="busy"))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_comments, args=(path, ticket_id, 25)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    _, comments = FileBackedBackend(path).read(ticket_id)
    assert len(comments) == 100


def test_corrupt_file_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "tickets.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"tickets\.json is not valid JSON"):
        FileBackedBackend(path)


@pytest.mark.parametrize("backend_kind", ["memory", "file"])
def test_faults_fail_then_recover_and_fetches_are_counted(tmp_path: Path, backend_kind: str) -> None:
    backend = InMemoryBackend() if backend_kind == "memory" else FileBackedBackend(tmp_path / "t.json")
    integration = InMemoryTickets(backend)
    ticket_id = backend.create(TicketData(title="flaky"))
    backend.inject_fault(ticket_id, fail_next=2, error="transient", status=503, retry_after=7)

    for _ in range(2):
        with pytest.raises(TransientError) as caught:
            integration.fetch(ticket_id)
        assert caught.value.status == 503 and caught.value.retry_after == 7
    assert integration.fetch(ticket_id).data.title == "flaky"
    assert backend.fetch_count(ticket_id) == 3

    backend.inject_fault(ticket_id, fail_next=1, error="permanent", status=403)
    with pytest.raises(PermanentError):
        integration.fetch(ticket_id)
    assert integration.fetch(ticket_id).ticket_id == ticket_id


def test_delay_returns_the_data_read_before_the_stall(tmp_path: Path) -> None:
    backend = FileBackedBackend(tmp_path / "t.json")
    integration = InMemoryTickets(backend)
    ticket_id = backend.create(TicketData(title="before"))
    backend.inject_fault(ticket_id, delay_next=1, delay_seconds=0.2)
    started = datetime.now(UTC)
    snapshot = integration.fetch(ticket_id)
    assert (datetime.now(UTC) - started).total_seconds() >= 0.2
    assert snapshot.data.title == "before"


def test_bad_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="error must be one of"):
        InMemoryBackend().inject_fault("T1", fail_next=1, error="sometimes")


def test_from_config_with_store_path_shares_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.json")
    writer = FileBackedBackend(path)
    ticket_id = writer.create(TicketData(title="from another process"))
    integration = InMemoryTickets.from_config({"store_path": path, "webhook_secret": "s"})
    assert integration.fetch(ticket_id).data.title == "from another process"
    writer.delete(ticket_id)
    with pytest.raises(TicketGone):
        integration.fetch(ticket_id)

"""The resync's group commit: batches by size or age, one-by-one fallback, cursor only after durable batches."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from data_manager.collectors.housekeeping import startup_check
from data_manager.collectors.persistence import PersistenceError, PersistenceService, UpsertOutcome
from data_manager.collectors.tickets import TicketData, TicketResource
from data_manager.collectors.tickets.group_commit import GroupCommitter
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import InMemoryBackend
from data_manager.collectors.tickets.resync import InlineDispatcher, resync_system
from tests.persistence.crash_points import die_after_publishes
from tests.persistence.test_persistence_crashes import assert_catalog_agrees_with_files, temp_files

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def resource(ticket_id: str, content: str = "x") -> TicketResource:
    return TicketResource(ticket_id=ticket_id, content=content, source_type="memory", metadata={"updated_at": T0})


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


class Results:
    def __init__(self) -> None:
        self.outcomes: dict[str, UpsertOutcome | None] = {}
        self.errors: dict[str, Exception] = {}
        self.lock = threading.Lock()
        self.first = threading.Event()

    def done_for(self, ticket_id: str):  # type: ignore[no-untyped-def]
        def done(outcome: UpsertOutcome | None, error: Exception | None) -> None:
            with self.lock:
                self.outcomes[ticket_id] = outcome
                if error is not None:
                    self.errors[ticket_id] = error
            self.first.set()

        return done


def test_tickets_are_committed_in_batches_of_max_batch(store: PersistenceService) -> None:
    results = Results()
    with GroupCommitter(store, max_batch=100, max_delay=60) as committer:
        for n in range(250):
            committer.submit(resource(f"T{n}"), None, results.done_for(f"T{n}"))
    assert committer.batches == 3  # 100, 100, and the last 50 flushed by close()
    assert set(results.outcomes.values()) == {UpsertOutcome.WRITTEN} and len(results.outcomes) == 250
    assert store.count() == 250 and store.last_change_seq() == 250


def test_a_lone_ticket_is_committed_after_max_delay_without_waiting_for_close(store: PersistenceService) -> None:
    results = Results()
    with GroupCommitter(store, max_batch=100, max_delay=0.05) as committer:
        committer.submit(resource("T1"), None, results.done_for("T1"))
        assert results.first.wait(30)  # committed while the committer is still open
        assert store.get("memory", "T1") is not None
    assert results.outcomes == {"T1": UpsertOutcome.WRITTEN}


def test_a_refused_batch_is_retried_one_by_one_so_only_the_refused_ticket_fails(store: PersistenceService) -> None:
    store.upsert(resource("a/b"))
    results = Results()
    with GroupCommitter(store, max_batch=10, max_delay=60) as committer:
        for ticket_id in ("T1", "a_b", "T2"):
            committer.submit(resource(ticket_id), None, results.done_for(ticket_id))
    assert results.outcomes == {"T1": UpsertOutcome.WRITTEN, "a_b": None, "T2": UpsertOutcome.WRITTEN}
    assert isinstance(results.errors["a_b"], PersistenceError)


def test_submit_waits_for_room_instead_of_queueing_without_bound(store: PersistenceService) -> None:
    entered = threading.Event()
    release = threading.Event()
    real = store.upsert_many

    def slow(items):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(30)
        return real(items)

    store.upsert_many = slow  # type: ignore[method-assign]
    results = Results()
    committer = GroupCommitter(store, max_batch=2, max_delay=60, max_pending=4)
    submitted = []

    def producer() -> None:
        for n in range(20):
            committer.submit(resource(f"T{n}"), None, results.done_for(f"T{n}"))
            submitted.append(n)

    thread = threading.Thread(target=producer)
    thread.start()
    assert entered.wait(30)
    thread.join(0.3)
    assert thread.is_alive() and len(submitted) <= 2 + 4  # one batch in commit, at most max_pending waiting
    release.set()
    thread.join(30)
    committer.close()
    assert len(results.outcomes) == 20 and store.count() == 20


def test_a_resync_commits_in_batches_and_moves_the_cursor_after_them(tmp_path: Path) -> None:
    backend = InMemoryBackend(clock=lambda: T0)
    for n in range(230):
        backend.create(TicketData(title=f"t{n}"))
    store = PersistenceService(tmp_path / "data", fsync=False)
    batches: list[int] = []
    real = store.upsert_many

    def counting(items):  # type: ignore[no-untyped-def]
        items = list(items)
        batches.append(len(items))
        assert store.get_cursor("memory") is None  # the cursor waits for every batch
        return real(items)

    store.upsert_many = counting  # type: ignore[method-assign]
    summary = resync_system(InMemoryTickets(backend), store, concurrency=4)
    assert summary.ok and summary.written == 230 and summary.fetched == 230
    assert sum(batches) == 230 and len(batches) < 230 / 10 and max(batches) <= 100
    assert store.count() == 230 and store.last_change_seq() == 230
    assert store.get_cursor("memory") == T0
    again = resync_system(InMemoryTickets(backend), store, full=True)
    assert again.ok and again.unchanged == 230 and store.last_change_seq() == 230


def test_one_by_one_is_still_available(store: PersistenceService) -> None:
    backend = InMemoryBackend(clock=lambda: T0)
    for n in range(5):
        backend.create(TicketData(title=f"t{n}"))
    store.upsert_many = None  # type: ignore[assignment,method-assign]  # never used on this path
    summary = resync_system(InMemoryTickets(backend), store, dispatcher=InlineDispatcher(group_commit=False))
    assert summary.ok and summary.written == 5


def test_a_resync_killed_mid_batch_keeps_its_cursor_and_the_next_one_completes(tmp_path: Path) -> None:
    backend = InMemoryBackend(clock=lambda: T0)
    ids = [backend.create(TicketData(title=f"t{n}")) for n in range(150)]
    store = PersistenceService(tmp_path / "data")
    integration = InMemoryTickets(backend)

    def child() -> None:
        die_after_publishes(101)  # inside the second batch's transaction (the first holds 100 tickets, 200 files)
        resync_system(integration, PersistenceService(store.data_path), concurrency=1)
        os._exit(3)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(120)
    assert process.exitcode == -signal.SIGKILL
    assert store.get_cursor("memory") is None  # the resync never finished: its cursor did not move
    assert store.count() < 150
    startup_check(store, older_than=0)
    assert temp_files(store) == []
    summary = resync_system(integration, store)
    assert summary.ok and store.count() == 150 and store.get_cursor("memory") == T0
    assert {entry.ticket_id for entry in store.list_entries()} == set(ids)
    assert_catalog_agrees_with_files(store)
    assert len({c.ticket_id for c in store.changes(limit=10_000)}) == 150  # every stored ticket is in the feed

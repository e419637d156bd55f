"""The resync stores complete tickets a listing brings (`TicketRef.snapshot`) without fetching them again.

The engine's rules hold for them as for fetched ones: an older snapshot never replaces a newer copy,
a failed store holds the cursor, and the plan keeps no snapshot (memory stays flat). The work
starts while the listing is still paging, and a listing that fails midway removes nothing.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import TicketData
from data_manager.collectors.tickets.errors import TransientError
from data_manager.collectors.tickets.integration import TicketRef, TicketSnapshot
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import InMemoryBackend
from data_manager.collectors.tickets.resync import InlineDispatcher, plan_resync, resync_system
from data_manager.collectors.tickets.sync import sync_ticket

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


class ListingTickets(InMemoryTickets):
    """A listing that brings every ticket complete; counts the fetches the resync still makes."""

    def __init__(self, backend: InMemoryBackend) -> None:
        super().__init__(backend)
        self.fetched: list[str] = []
        self.incomplete: set[str] = set()  # listed without content, like a Jira issue with cut-off comments
        self.listed_copies: dict[str, TicketSnapshot] = {}  # what the listing brings instead of the live ticket

    def fetch(self, ticket_id: str) -> TicketSnapshot:
        self.fetched.append(ticket_id)
        return super().fetch(ticket_id)

    def iter_changed(self, since: datetime | None) -> Iterator[TicketRef]:
        for ref in super().iter_changed(since):
            if ref.ticket_id in self.incomplete:
                yield ref
            else:
                snapshot = self.listed_copies.get(ref.ticket_id) or super().fetch(ref.ticket_id)
                yield TicketRef(ref.ticket_id, ref.updated_at, snapshot)


@pytest.fixture
def clock() -> list[datetime]:
    return [T0]


@pytest.fixture
def backend(clock: list[datetime]) -> InMemoryBackend:
    return InMemoryBackend(clock=lambda: clock[0])


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


def test_listed_snapshots_are_stored_and_only_the_incomplete_fetched(
    backend: InMemoryBackend, store: PersistenceService, clock: list[datetime]
) -> None:
    integration = ListingTickets(backend)
    ids = []
    for i in range(6):
        ids.append(backend.create(TicketData(title=f"t{i}")))
        clock[0] += timedelta(minutes=1)
    integration.incomplete = {ids[4]}
    summary = resync_system(integration, store, full=True)
    assert summary.ok and (summary.listed, summary.fetched, summary.written) == (6, 6, 6)
    assert integration.fetched == [ids[4]]
    assert store.ticket_ids("memory") == set(ids)
    assert store.get_cursor("memory") == T0 + timedelta(minutes=5)


def test_the_plan_keeps_no_snapshot_and_the_bulk_path_ignores_them(
    backend: InMemoryBackend, store: PersistenceService
) -> None:
    integration = ListingTickets(backend)
    ticket_id = backend.create(TicketData(title="a"))
    plan = plan_resync(integration, store)  # what the bulk dispatcher sees: ids only, every one fetched later
    assert plan.listed == {ticket_id: integration.fetch(ticket_id).updated_at}
    assert all(ref.snapshot is None for ref in plan.refs) and plan.complete


def test_work_starts_while_the_listing_is_still_paging(backend: InMemoryBackend, store: PersistenceService) -> None:
    """The listing waits (up to 10 s) for the first listed ticket to be fetched before it lists the second."""
    integration = ListingTickets(backend)
    first, second = backend.create(TicketData(title="a")), backend.create(TicketData(title="b"))
    integration.incomplete = {first, second}
    first_fetched = threading.Event()
    waited: list[bool] = []
    listing = integration.iter_changed
    fetch = integration.fetch

    def slow_listing(since: datetime | None) -> Iterator[TicketRef]:
        refs = list(listing(since))
        yield refs[0]
        waited.append(first_fetched.wait(10))  # a sequential resync would fetch nothing until the listing ends
        yield from refs[1:]

    def fetch_and_tell(ticket_id: str) -> TicketSnapshot:
        snapshot = fetch(ticket_id)
        first_fetched.set()
        return snapshot

    integration.iter_changed = slow_listing  # type: ignore[method-assign]
    integration.fetch = fetch_and_tell  # type: ignore[method-assign]
    summary = resync_system(integration, store, full=True)
    assert waited == [True]
    assert summary.ok and (summary.listed, summary.written) == (2, 2)


def test_a_listing_that_fails_midway_removes_nothing_and_holds_the_cursor(
    backend: InMemoryBackend, store: PersistenceService, clock: list[datetime]
) -> None:
    integration = ListingTickets(backend)
    ids = [backend.create(TicketData(title=f"t{i}")) for i in range(4)]
    assert resync_system(integration, store, full=True).ok
    cursor = store.get_cursor("memory")
    clock[0] += timedelta(hours=2)
    backend.update(ids[0], {"title": "changed"})
    backend.delete(ids[3])  # gone upstream: a complete listing would remove our copy
    listing = integration.iter_changed

    def broken(since: datetime | None) -> Iterator[TicketRef]:
        yield next(ref for ref in listing(since) if ref.ticket_id == ids[0])
        raise TransientError("page 2 timed out")

    integration.iter_changed = broken  # type: ignore[method-assign]
    summary = resync_system(integration, store, full=True)
    assert summary.error.startswith("listing failed: TransientError") and summary.deletion_candidates == 0
    assert store.ticket_ids("memory") == set(ids) and store.get_cursor("memory") == cursor
    assert "Title: changed" in store.get("memory", ids[0]).content  # what was listed was still stored


def test_an_older_listed_snapshot_never_replaces_a_newer_copy(
    backend: InMemoryBackend, store: PersistenceService, clock: list[datetime]
) -> None:
    integration = ListingTickets(backend)
    ticket_id = backend.create(TicketData(title="old title"))
    old = integration.fetch(ticket_id)
    clock[0] += timedelta(minutes=5)
    backend.update(ticket_id, {"title": "new title"})
    sync_ticket(integration, store, ticket_id)  # a webhook job stored the newer state
    integration.listed_copies[ticket_id] = dataclasses.replace(old)  # a lagging listing brings the old one
    summary = resync_system(integration, store, full=True, dispatcher=InlineDispatcher())
    assert summary.ok and summary.stale == 1
    assert "Title: new title" in store.get("memory", ticket_id).content


def test_a_failed_store_is_reported_and_holds_the_cursor(
    backend: InMemoryBackend, store: PersistenceService, clock: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    integration = ListingTickets(backend)
    ids = [backend.create(TicketData(title=f"t{i}")) for i in range(3)]
    resync_system(integration, store)
    clock[0] += timedelta(hours=1)
    for ticket_id in ids:
        backend.update(ticket_id, {"description": "changed"})
    real_upsert = store.upsert

    def failing(resource, **kwargs):  # type: ignore[no-untyped-def]
        if resource.ticket_id == ids[1]:
            raise OSError("disk full")
        return real_upsert(resource, **kwargs)

    real_upsert_many = store.upsert_many

    def failing_batch(items):  # type: ignore[no-untyped-def]
        items = list(items)
        if any(resource.ticket_id == ids[1] for resource, _ in items):
            raise OSError("disk full")  # the group commit then stores the batch's tickets one by one
        return real_upsert_many(items)

    monkeypatch.setattr(store, "upsert", failing)
    monkeypatch.setattr(store, "upsert_many", failing_batch)
    summary = resync_system(integration, store)
    assert not summary.ok and summary.failed == 1 and summary.written == 2
    assert summary.failures == [{"ticket_id": ids[1], "error": "OSError: disk full"}]
    assert store.get_cursor("memory") == T0

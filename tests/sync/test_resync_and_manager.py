from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import Comment, TicketData, TicketManager
from data_manager.collectors.tickets.errors import ConfigError, TransientError
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import InMemoryBackend
from data_manager.collectors.tickets.resync import plan_resync, resync_system
from data_manager.collectors.tickets.sync import SyncOutcome, sync_ticket
from tests.integrations.memory import store_of

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(clock: Clock) -> InMemoryBackend:
    return InMemoryBackend(clock=clock)


@pytest.fixture
def integration(backend: InMemoryBackend) -> InMemoryTickets:
    return InMemoryTickets(backend)


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


class CountingTickets(InMemoryTickets):
    """Counts fetches so tests can see what an incremental resync actually asked for."""

    def __init__(self, backend: InMemoryBackend) -> None:
        super().__init__(backend)
        self.fetched: list[str] = []

    def fetch(self, ticket_id: str):  # type: ignore[no-untyped-def]
        self.fetched.append(ticket_id)
        return super().fetch(ticket_id)


def test_sync_ticket_writes_then_is_unchanged_then_deletes(
    integration: InMemoryTickets, backend: InMemoryBackend, store: PersistenceService
) -> None:
    ticket_id = backend.create(TicketData(title="Printer jam"))
    backend.add_comment(ticket_id, Comment("ann", "toner replaced", T0))
    assert sync_ticket(integration, store, ticket_id) is SyncOutcome.WRITTEN
    assert "toner replaced" in store.get("memory", ticket_id).content
    assert sync_ticket(integration, store, ticket_id) is SyncOutcome.UNCHANGED
    backend.delete(ticket_id)
    assert sync_ticket(integration, store, ticket_id) is SyncOutcome.DELETED
    assert store.get("memory", ticket_id) is None
    assert sync_ticket(integration, store, ticket_id) is SyncOutcome.ABSENT


def test_incremental_resync_fetches_only_what_changed(
    backend: InMemoryBackend, clock: Clock, store: PersistenceService
) -> None:
    integration = CountingTickets(backend)
    integration.resync_overlap_seconds = 60
    ids = []
    for i in range(10):
        ids.append(backend.create(TicketData(title=f"t{i}")))
        clock.advance(minutes=1)
    first = resync_system(integration, store)
    assert (first.mode, first.fetched, first.written) == ("all", 10, 10)
    assert store.get_cursor("memory") == T0 + timedelta(minutes=9)

    clock.advance(minutes=10)
    backend.update(ids[3], {"title": "changed"})
    integration.fetched.clear()
    second = resync_system(integration, store)
    assert second.mode == "incremental"
    # The changed ticket, plus the ones inside the 60 s overlap before the cursor (unchanged, so not rewritten).
    assert sorted(integration.fetched) == sorted([ids[3], ids[8], ids[9]])
    assert (second.written, second.unchanged) == (1, 2)
    assert "Title: changed" in store.get("memory", ids[3]).content
    assert store.get_cursor("memory") == T0 + timedelta(minutes=20)


def test_overlap_window_refetches_recent_changes(
    backend: InMemoryBackend, clock: Clock, store: PersistenceService
) -> None:
    integration = CountingTickets(backend)
    integration.resync_overlap_seconds = 300
    backend.create(TicketData(title="a"))
    resync_system(integration, store)
    clock.advance(minutes=2)  # inside the overlap window of the cursor
    later = backend.create(TicketData(title="b"))
    integration.fetched.clear()
    summary = resync_system(integration, store)
    assert later in integration.fetched and summary.written == 1


def test_full_resync_deletes_only_what_is_really_gone(backend: InMemoryBackend, store: PersistenceService) -> None:
    integration = InMemoryTickets(backend)
    ids = [backend.create(TicketData(title=f"t{i}")) for i in range(5)]
    resync_system(integration, store)
    backend.delete(ids[0])
    summary = resync_system(integration, store, full=True)
    assert summary.mode == "full" and summary.deleted == 1
    assert store.ticket_ids("memory") == set(ids[1:])


def test_full_resync_keeps_a_recently_changed_ticket_the_listing_missed(
    store: PersistenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lagging search index may not list a fresh change yet: such a ticket is refreshed, never removed."""
    recent = Clock()
    recent.now = datetime.now(UTC) - timedelta(minutes=10)
    backend = InMemoryBackend(clock=recent)
    integration = InMemoryTickets(backend)
    ids = [backend.create(TicketData(title=f"t{i}")) for i in range(3)]
    resync_system(integration, store)
    original = integration.iter_changed
    monkeypatch.setattr(
        integration, "iter_changed", lambda since: (r for r in original(since) if r.ticket_id != ids[1])
    )
    summary = resync_system(integration, store, full=True)
    assert (summary.deleted, summary.out_of_scope) == (0, 0) and store.ticket_ids("memory") == set(ids)


class ScopedTickets(InMemoryTickets):
    """A system with a configured scope (titles starting "in:"), applied by its listing and by `in_scope`."""

    def iter_changed(self, since: datetime | None):  # type: ignore[no-untyped-def]
        return (ref for ref in super().iter_changed(since) if self.in_scope(ref.ticket_id))

    def in_scope(self, ticket_id: str) -> bool:
        return self.backend.read(ticket_id)[0].title.startswith("in:")


def test_full_resync_removes_a_long_unchanged_ticket_outside_the_scope(
    backend: InMemoryBackend, store: PersistenceService
) -> None:
    """Stored (e.g. through a webhook) but outside the scope, and not changed lately: our copy goes."""
    integration = ScopedTickets(backend)  # the fixture's clock is in 2024: every ticket is long unchanged
    inside = backend.create(TicketData(title="in: a"))
    outside = backend.create(TicketData(title="out: b"))
    resync_system(integration, store)
    sync_ticket(integration, store, outside)  # what a webhook job does for a ticket outside the scope
    assert store.ticket_ids("memory") == {inside, outside}

    summary = resync_system(integration, store, full=True)

    assert summary.ok and (summary.deleted, summary.out_of_scope) == (0, 1)
    assert store.ticket_ids("memory") == {inside}
    assert len(backend) == 2  # upstream untouched


def test_a_short_listing_never_removes_a_ticket_the_system_says_is_in_scope(
    backend: InMemoryBackend, store: PersistenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration = ScopedTickets(backend)
    ids = [backend.create(TicketData(title=f"in: {i}")) for i in range(3)]
    resync_system(integration, store)
    original = integration.iter_changed
    monkeypatch.setattr(
        integration, "iter_changed", lambda since: (r for r in original(since) if r.ticket_id != ids[1])
    )
    summary = resync_system(integration, store, full=True)
    assert (summary.deleted, summary.out_of_scope) == (0, 0) and store.ticket_ids("memory") == set(ids)


def test_incremental_resync_never_removes_unlisted_tickets(
    backend: InMemoryBackend, store: PersistenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration = InMemoryTickets(backend)
    ids = [backend.create(TicketData(title=f"t{i}")) for i in range(3)]
    resync_system(integration, store)
    monkeypatch.setattr(integration, "iter_changed", lambda since: iter(()))
    summary = resync_system(integration, store)
    assert summary.out_of_scope == 0 and store.ticket_ids("memory") == set(ids)


def test_failures_are_reported_and_hold_the_cursor(
    backend: InMemoryBackend, clock: Clock, store: PersistenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration = InMemoryTickets(backend)
    ids = [backend.create(TicketData(title=f"t{i}")) for i in range(4)]
    resync_system(integration, store)
    clock.advance(hours=1)
    for ticket_id in ids:
        backend.update(ticket_id, {"description": "changed"})
    real_fetch = integration.fetch

    def flaky(ticket_id: str):  # type: ignore[no-untyped-def]
        if ticket_id == ids[2]:
            raise TransientError("upstream timed out")
        return real_fetch(ticket_id)

    monkeypatch.setattr(integration, "fetch", flaky)
    summary = resync_system(integration, store)
    assert not summary.ok and summary.failed == 1 and summary.written == 3
    assert summary.failures == [{"ticket_id": ids[2], "error": "TransientError: upstream timed out"}]
    assert store.get_cursor("memory") == T0  # not advanced: the failed ticket is retried next time
    assert store.last_resync("memory")["failed"] == 1


def test_plan_dedupes_repeated_refs(
    backend: InMemoryBackend, store: PersistenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration = InMemoryTickets(backend)
    ticket_id = backend.create(TicketData(title="a"))
    original = integration.iter_changed
    monkeypatch.setattr(integration, "iter_changed", lambda since: [*original(since), *original(since)])
    assert [r.ticket_id for r in plan_resync(integration, store).refs] == [ticket_id]


def test_manager_skips_disabled_and_collects_enabled(store: PersistenceService) -> None:
    manager = TicketManager({"sources": {"tickets": {"memory": {"enabled": True, "webhook_secret": "s"}}}})
    for i in range(3):
        store_of(manager).create(TicketData(title=f"t{i}"))
    assert manager.systems == ["memory"]
    result = manager.collect(store)
    assert result.ok and result.summaries["memory"].written == 3
    assert store.count("memory") == 3

    disabled = TicketManager({"sources": {"tickets": {"memory": {"enabled": False}}}})
    assert disabled.systems == [] and disabled.collect(store).summaries == {}
    with pytest.raises(KeyError, match="not enabled"):
        disabled.integration("memory")


def test_manager_reports_a_failing_system_without_raising(
    store: PersistenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = TicketManager({"sources": {"tickets": {"memory": {"enabled": True, "webhook_secret": "s"}}}})

    def broken(since: datetime | None):  # type: ignore[no-untyped-def]
        raise TransientError("connection refused")

    monkeypatch.setattr(manager.integration("memory"), "iter_changed", broken)
    result = manager.collect(store)
    assert not result.ok
    assert result.failed_systems == {"memory": "listing failed: TransientError: connection refused"}


def test_manager_config_errors_name_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"data_manager\.sources\.tickets\.memory\.resync_concurrency"):
        TicketManager({"sources": {"tickets": {"memory": {"enabled": True, "resync_concurrency": -1}}}})


class NumberedTickets(InMemoryTickets):
    def display_name(self, snapshot: TicketSnapshot) -> str | None:
        return f"Incident {snapshot.ticket_id.removeprefix('T').lstrip('0')}"


def test_the_pipeline_stores_the_display_name_the_integration_gives(
    backend: InMemoryBackend, store: PersistenceService
) -> None:
    """The display-name hook is used on every path that stores a ticket: a webhook's sync and a resync."""
    first = backend.create(TicketData(title="Printer jam"))
    assert sync_ticket(NumberedTickets(backend), store, first) is SyncOutcome.WRITTEN
    second = backend.create(TicketData(title="Disk full"))
    assert resync_system(NumberedTickets(backend), store).ok
    names = {tid: store.get("memory", tid).metadata["display_name"] for tid in (first, second)}  # type: ignore[union-attr]
    assert names == {first: "Incident 1", second: "Incident 2"}
    sync_ticket(InMemoryTickets(backend), store, first)  # the standard name when the integration gives none
    assert store.get("memory", first).metadata["display_name"] == f"{first}: Printer jam"  # type: ignore[union-attr]

"""Nothing is removed on a lie: credential proof, the mass-deletion guard, the trash and the removal log.

The in-memory system stands in for a ticket system whose key was revoked and which then answers as
the anonymous user: every ticket "does not exist" and the listing is empty; only the credential
check tells the truth (the real Jira and Redmine behaviours are tested against the fake Jira and the
real Redmine in tests/integrations/redmine/).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceError, PersistenceService, RemovalReason
from data_manager.collectors.tickets import TicketData
from data_manager.collectors.tickets.credentials import forget_credentials, prove_credentials
from data_manager.collectors.tickets.errors import CredentialsRefused, PermanentError, TicketGone
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import InMemoryBackend
from data_manager.collectors.tickets.resync import DeleteGuard, resync_system
from data_manager.collectors.tickets.sync import SyncOutcome, sync_ticket


class RevocableTickets(InMemoryTickets):
    """An in-memory system that, once `revoked`, answers as the anonymous user who may see nothing."""

    def __init__(self, backend: InMemoryBackend) -> None:
        super().__init__(backend)
        self.revoked = False
        self.checks = 0

    def verify_credentials(self) -> None:
        self.checks += 1
        if self.revoked:
            raise CredentialsRefused("memory refused the credentials (test)")

    def fetch(self, ticket_id: str) -> TicketSnapshot:
        if self.revoked:
            raise TicketGone(ticket_id, "memory (as seen by the anonymous user)")
        return super().fetch(ticket_id)

    def iter_changed(self, since):  # type: ignore[no-untyped-def]
        return iter(()) if self.revoked else super().iter_changed(since)


@pytest.fixture
def backend() -> InMemoryBackend:
    return InMemoryBackend()


@pytest.fixture
def system(backend: InMemoryBackend) -> RevocableTickets:
    return RevocableTickets(backend)


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


def stored_ids(store: PersistenceService) -> set[str]:
    return store.ticket_ids("memory")


def seed(backend: InMemoryBackend, store: PersistenceService, system: RevocableTickets, count: int) -> list[str]:
    ids = [backend.create(TicketData(title=f"ticket {n}")) for n in range(count)]
    assert resync_system(system, store).written == count
    return ids


# -- credential proof --------------------------------------------------------------------------------
def test_a_revoked_key_during_a_webhook_job_removes_nothing_and_fails_permanently(
    backend: InMemoryBackend, system: RevocableTickets, store: PersistenceService
) -> None:
    [ticket] = seed(backend, store, system, 1)
    system.revoked = True
    forget_credentials(system)
    with pytest.raises(CredentialsRefused, match="refused the credentials") as refused:
        sync_ticket(system, store, ticket, removal_reason=RemovalReason.DELETE_WEBHOOK)
    assert isinstance(refused.value, PermanentError) and refused.value.status == 401  # fails at once, no retries
    assert stored_ids(store) == {ticket}
    assert store.removals() == []


def test_a_revoked_key_during_a_full_resync_removes_nothing_and_fails_the_system(
    backend: InMemoryBackend, system: RevocableTickets, store: PersistenceService
) -> None:
    ids = seed(backend, store, system, 30)
    system.revoked = True
    summary = resync_system(system, store, full=True, guard=DeleteGuard(allow_mass_delete=True))
    assert not summary.ok and summary.error.startswith("credentials refused: ")
    assert "refused the credentials" in summary.error
    assert stored_ids(store) == set(ids) and store.removals() == []
    assert store.last_resync("memory")["error"] == summary.error


def test_a_legitimate_deletion_still_removes_the_copy_into_the_trash(
    backend: InMemoryBackend, system: RevocableTickets, store: PersistenceService
) -> None:
    ticket, kept = seed(backend, store, system, 2)
    backend.delete(ticket)
    assert sync_ticket(system, store, ticket, removal_reason=RemovalReason.DELETE_WEBHOOK) is SyncOutcome.DELETED
    assert stored_ids(store) == {kept}
    [removal] = store.removals()
    assert (removal.source, removal.ticket_id, removal.reason, removal.in_trash) == (
        "memory",
        ticket,
        "delete webhook",
        True,
    )
    assert list((store.data_path / "trash").glob(f"memory_{ticket}.*.txt"))


def test_the_proof_is_cached_and_a_ticket_we_never_stored_needs_none(
    backend: InMemoryBackend, system: RevocableTickets, store: PersistenceService
) -> None:
    ids = seed(backend, store, system, 3)
    forget_credentials(system)
    checks = system.checks
    for ticket in ids:
        backend.delete(ticket)
        assert sync_ticket(system, store, ticket) is SyncOutcome.DELETED
    assert system.checks == checks + 1  # one proof served three removals
    assert sync_ticket(system, store, "T999999") is SyncOutcome.ABSENT
    assert system.checks == checks + 1


def test_the_proof_expires_and_can_be_asked_fresh(system: RevocableTickets) -> None:
    now = [1000.0]
    system.credential_proof_seconds = 60
    prove_credentials(system, clock=lambda: now[0])
    prove_credentials(system, clock=lambda: now[0])
    assert system.checks == 1
    now[0] += 61
    prove_credentials(system, clock=lambda: now[0])
    assert system.checks == 2
    prove_credentials(system, fresh=True, clock=lambda: now[0])
    assert system.checks == 3
    system.revoked = True
    with pytest.raises(CredentialsRefused):
        prove_credentials(system, fresh=True, clock=lambda: now[0])
    with pytest.raises(CredentialsRefused):  # a refusal is never remembered as a proof
        prove_credentials(system, clock=lambda: now[0])


# -- mass-deletion guard -----------------------------------------------------------------------------
def test_guard_stops_a_full_resync_that_would_remove_half(
    backend: InMemoryBackend, system: RevocableTickets, store: PersistenceService
) -> None:
    ids = seed(backend, store, system, 100)
    for ticket in ids[:50]:
        backend.delete(ticket)
    summary = resync_system(system, store, full=True)
    assert not summary.ok and summary.deleted == 0 and stored_ids(store) == set(ids)
    assert "would remove 50 of the 100 stored memory tickets (50%)" in summary.error
    assert "resync.max_delete_fraction" in summary.error and "--allow-mass-delete" in summary.error
    assert store.removals() == []

    summary = resync_system(system, store, full=True, guard=DeleteGuard(allow_mass_delete=True))
    assert summary.ok and summary.deleted == 50 and stored_ids(store) == set(ids[50:])
    assert {r.reason for r in store.removals()} == {"deleted upstream"}


def test_guard_lets_a_small_deletion_through(
    backend: InMemoryBackend, system: RevocableTickets, store: PersistenceService
) -> None:
    ids = seed(backend, store, system, 100)
    for ticket in ids[:5]:
        backend.delete(ticket)
    summary = resync_system(system, store, full=True)
    assert summary.ok and summary.deleted == 5 and stored_ids(store) == set(ids[5:])


@pytest.mark.parametrize(
    ("stored", "removed", "stops"),
    [(100, 10, False), (100, 11, False), (300, 21, False), (300, 31, True), (10, 10, False), (1000, 21, False)],
)
def test_guard_needs_both_limits_exceeded(stored: int, removed: int, stops: bool) -> None:
    from data_manager.collectors.tickets.resync import ResyncPlan

    plan = ResyncPlan("memory", True, None, None, to_delete={str(n) for n in range(removed)}, stored=stored)
    assert (DeleteGuard().refusal(plan) is not None) is stops
    assert DeleteGuard(allow_mass_delete=True).refusal(plan) is None


# -- trash, log, restore, purge ----------------------------------------------------------------------
def test_restore_puts_the_trashed_copy_back_and_purge_empties_the_trash(
    backend: InMemoryBackend, system: RevocableTickets, store: PersistenceService
) -> None:
    ticket, other = seed(backend, store, system, 2)
    before = store.get("memory", ticket)
    assert before is not None
    backend.delete(ticket)
    assert sync_ticket(system, store, ticket) is SyncOutcome.DELETED
    assert not store.content_path(before.entry.hash).exists()

    removal = store.restore("memory", ticket)
    assert removal.reason == "deleted upstream"
    after = store.get("memory", ticket)
    assert after is not None and after.content == before.content and after.metadata == before.metadata
    assert after.entry.content_digest == before.entry.content_digest
    with pytest.raises(PersistenceError, match="stored already"):
        store.restore("memory", ticket)
    assert not list(store.trash_dir.iterdir())

    # The next sync decides its fate as usual: it is gone upstream, so it goes again.
    assert sync_ticket(system, store, ticket) is SyncOutcome.DELETED
    store.delete("memory", other, reason=RemovalReason.OUT_OF_SCOPE)
    assert len(list(store.trash_dir.iterdir())) == 4  # content and metadata of each
    assert store.purge_trash(timedelta(days=7)) == 0  # too young
    assert store.purge_trash(timedelta(days=7), now=datetime.now(UTC) + timedelta(days=8)) == 2
    assert not list(store.trash_dir.iterdir())
    with pytest.raises(PersistenceError, match="no trashed copy"):
        store.restore("memory", ticket)
    log = store.removals(source_type="memory")
    assert [(r.ticket_id, r.reason, r.in_trash) for r in log] == [
        (other, "out of scope", False),
        (ticket, "deleted upstream", False),
        (ticket, "deleted upstream", False),
    ]
    assert [bool(r.purged_at) for r in log] == [True, True, False]  # the first removal was restored instead
    assert store.removals(since=datetime.now(UTC) + timedelta(minutes=1)) == []

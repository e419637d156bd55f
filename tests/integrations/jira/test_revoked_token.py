"""A revoked Jira token, as Jira Cloud serves it: the anonymous user (search 200 and empty, issues 404).

Only `/myself` answers 401. The pipeline's credential proof must catch it before any copy goes; a
real deletion made while the token works still removes the copy (into the trash).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceService, RemovalReason
from data_manager.collectors.tickets.credentials import forget_credentials, prove_credentials
from data_manager.collectors.tickets.errors import CredentialsRefused, PermanentError, TicketGone
from data_manager.collectors.tickets.resync import DeleteGuard, resync_system
from data_manager.collectors.tickets.sync import SyncOutcome, sync_ticket
from tests.integrations.jira.conftest import JiraSetup
from tests.integrations.jira.fake_server import DEFAULT_TOKEN

ISSUES = 30


@pytest.fixture
def anonymous_jira(make_jira: Callable[..., JiraSetup]) -> JiraSetup:
    return make_jira(issues=ISSUES, refused_as_anonymous=True)


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


def revoke(jira: JiraSetup) -> None:
    with jira.fake.lock:
        jira.fake.token = "revoked-by-the-owner"


def myself_calls(jira: JiraSetup) -> int:
    with jira.fake.lock:
        return sum(1 for _, path, _ in jira.fake.requests if path.endswith("/myself"))


def test_the_fake_serves_a_revoked_token_as_the_anonymous_user(anonymous_jira: JiraSetup) -> None:
    client = anonymous_jira.client()
    key = next(iter(anonymous_jira.fake.issues))
    revoke(anonymous_jira)
    assert list(client.iter_changed(None)) == []  # 200, no issues: indistinguishable from an empty project
    with pytest.raises(TicketGone):
        client.fetch(key)  # 404, as for a deleted issue
    with pytest.raises(CredentialsRefused, match="refused the credentials") as refused:
        client.verify_credentials()  # only /myself tells the truth
    assert refused.value.status == 401 and DEFAULT_TOKEN not in str(refused.value)


def test_revoked_token_in_a_webhook_job_removes_nothing(anonymous_jira: JiraSetup, store: PersistenceService) -> None:
    client = anonymous_jira.client()
    assert resync_system(client, store).written == ISSUES
    key = sorted(anonymous_jira.fake.issues)[0]
    revoke(anonymous_jira)
    forget_credentials(client)  # the resync's proof has expired (credential_proof_seconds later)
    with pytest.raises(CredentialsRefused) as refused:
        sync_ticket(client, store, key, removal_reason=RemovalReason.DELETE_WEBHOOK)
    assert isinstance(refused.value, PermanentError)  # the job fails at once into `tickets failed list`
    assert "refused the credentials" in str(refused.value)
    assert store.count("jira") == ISSUES and store.removals() == []


def test_with_credential_proof_seconds_0_every_removal_asks(
    anonymous_jira: JiraSetup, store: PersistenceService
) -> None:
    client = anonymous_jira.client()
    client.credential_proof_seconds = 0
    assert resync_system(client, store).written == ISSUES
    revoke(anonymous_jira)  # at once: no proof is ever reused
    with pytest.raises(CredentialsRefused):
        sync_ticket(client, store, sorted(anonymous_jira.fake.issues)[0])
    assert store.count("jira") == ISSUES


def test_revoked_token_in_a_full_resync_removes_nothing_and_fails_loudly(
    anonymous_jira: JiraSetup, store: PersistenceService
) -> None:
    client = anonymous_jira.client()
    assert resync_system(client, store).written == ISSUES
    revoke(anonymous_jira)
    summary = resync_system(client, store, full=True, guard=DeleteGuard(allow_mass_delete=True))
    assert not summary.ok and summary.error.startswith("credentials refused: ")
    assert summary.deleted == summary.out_of_scope == 0
    assert store.count("jira") == ISSUES and store.removals() == []


def test_a_legitimate_deletion_still_removes(anonymous_jira: JiraSetup, store: PersistenceService) -> None:
    client = anonymous_jira.client()
    assert resync_system(client, store).written == ISSUES
    first, second = sorted(anonymous_jira.fake.issues)[:2]
    anonymous_jira.fake.delete_issue(first)
    assert sync_ticket(client, store, first, removal_reason=RemovalReason.DELETE_WEBHOOK) is SyncOutcome.DELETED
    anonymous_jira.fake.delete_issue(second)
    summary = resync_system(client, store, full=True)
    assert summary.ok and summary.deleted == 1
    assert store.count("jira") == ISSUES - 2
    assert sorted((r.ticket_id, r.reason) for r in store.removals()) == [
        (first, "delete webhook"),
        (second, "deleted upstream"),
    ]


def test_a_401_from_any_call_forgets_the_proof(anonymous_jira: JiraSetup) -> None:
    anonymous_jira.fake.refused_as_anonymous = False  # this time Jira says 401 to everything
    client = anonymous_jira.client()
    key = next(iter(anonymous_jira.fake.issues))
    forget_credentials(client)
    prove_credentials(client)
    prove_credentials(client)
    assert myself_calls(anonymous_jira) == 1  # cached
    revoke(anonymous_jira)
    with pytest.raises(PermanentError, match="401"):
        client.fetch(key)
    with pytest.raises(CredentialsRefused):
        prove_credentials(client)  # the 401 forgot the proof, so this asked again
    assert myself_calls(anonymous_jira) == 2

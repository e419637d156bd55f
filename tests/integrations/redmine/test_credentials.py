"""A refused Redmine key against the real Redmine: nothing is removed on the anonymous user's word.

Redmine answers a key it does not accept as the anonymous user: a deleted issue is 404 for anyone, so
without the pipeline's credential proof a webhook job would remove the copy on a key that proves
nothing. With the proof the job fails permanently and the copy stays; with the right key the same
deletion goes through, into the trash.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from data_manager.collectors.persistence import PersistenceService, RemovalReason
from data_manager.collectors.tickets.errors import CredentialsRefused, PermanentError
from data_manager.collectors.tickets.integrations.redmine import RedmineTickets
from data_manager.collectors.tickets.resync import DeleteGuard, resync_system
from data_manager.collectors.tickets.sync import SyncOutcome, sync_ticket

if TYPE_CHECKING:
    from tests.integrations.redmine.redmine_server import RedmineAdmin, RedmineServer

pytestmark = [pytest.mark.redmine]
pytest_plugins = ("tests.integrations.redmine.redmine_server",)

WRONG_KEY = "0123456789abcdef0123456789abcdef01234567"


def test_refused_key_removes_nothing_and_the_right_key_removes_a_real_deletion(
    redmine_admin: RedmineAdmin, redmine_server: RedmineServer, redmine_project: dict[str, Any], tmp_path: Path
) -> None:
    project = redmine_project["identifier"]
    ids = [str(redmine_admin.create_issue(project, f"kept {n}")["id"]) for n in range(3)]
    store = PersistenceService(tmp_path / "data", fsync=False)
    good = RedmineTickets(redmine_server.url, redmine_server.api_key, project)
    refused = RedmineTickets(redmine_server.url, WRONG_KEY, project)
    try:
        assert resync_system(good, store).written == 3
        deleted = ids[0]
        redmine_admin.delete_issue(int(deleted))

        # A webhook job (delete event) run with the refused key: 404 for the deleted issue, 401 for the others.
        with pytest.raises(CredentialsRefused, match="refused the credentials") as caught:
            sync_ticket(refused, store, deleted, removal_reason=RemovalReason.DELETE_WEBHOOK)
        assert isinstance(caught.value, PermanentError) and caught.value.status == 401
        with pytest.raises(PermanentError, match="401"):
            sync_ticket(refused, store, ids[1])
        assert store.ticket_ids("redmine") == set(ids)

        # A full resync with the refused key: the system fails, nothing is removed, even with the guard off.
        summary = resync_system(refused, store, full=True, guard=DeleteGuard(allow_mass_delete=True))
        assert not summary.ok and summary.error.startswith("credentials refused: ") and "API key" in summary.error
        assert store.ticket_ids("redmine") == set(ids) and store.removals() == []
        for text in (summary.error, str(caught.value)):
            assert WRONG_KEY not in text

        # The same deletion with the key Redmine accepts: removed, logged, in the trash.
        assert sync_ticket(good, store, deleted, removal_reason=RemovalReason.DELETE_WEBHOOK) is SyncOutcome.DELETED
        assert store.ticket_ids("redmine") == set(ids[1:])
        [removal] = store.removals()
        assert (removal.ticket_id, removal.reason, removal.in_trash) == (deleted, "delete webhook", True)
        assert store.restore("redmine", deleted).ticket_id == deleted  # and back, until the next sync decides
        assert resync_system(good, store, full=True).deleted == 1
    finally:
        good.close()
        refused.close()

"""A Server / Data Center comment webhook without an `issue` object, synced end to end against the fake Jira.

The event names the issue only by the numeric id in `comment.self`; the sync fetches it by that id and
stores it under its key, with the new comment.
"""

from __future__ import annotations

import json
from pathlib import Path

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integration import WebhookRequest
from data_manager.collectors.tickets.sync import SyncOutcome, sync_ticket
from tests.integrations.jira.conftest import JiraSetup

FIXTURE = Path(__file__).parent / "fixtures" / "webhook_datacenter_comment_created_no_issue.json"


def comment_event_for(jira: JiraSetup, key: str, comment_id: str) -> WebhookRequest:
    """The fixture's shape, pointing at an issue of the fake."""
    payload = json.loads(FIXTURE.read_text(encoding="utf-8"))
    issue_id = jira.fake.issue(key).id
    payload["comment"]["self"] = f"{jira.url}/rest/api/2/issue/{issue_id}/comment/{comment_id}"
    return WebhookRequest(body=json.dumps(payload).encode(), headers={})


def test_comment_event_without_issue_syncs_the_issue_by_its_id(jira: JiraSetup, tmp_path: Path) -> None:
    client = jira.client()
    key = jira.fake.add_issue("Printer on fire")
    comment_id = jira.fake.add_comment(key, jira.native_text("Replaced the fuser"), author="bob")
    [event] = client.parse_webhook(comment_event_for(jira, key, comment_id))
    assert event.ticket_id == jira.fake.issue(key).id and event.ticket_id.isdigit()

    store = PersistenceService(tmp_path / "data", fsync=False)
    assert sync_ticket(client, store, event.ticket_id) is SyncOutcome.WRITTEN
    stored = store.get("jira", key)
    assert stored is not None and "Replaced the fuser" in stored.content
    assert store.ticket_ids("jira") == {key}  # stored under its key, never under the numeric id

    moved = jira.fake.move_issue(key, "OPS")  # the id follows the issue to its new key
    assert sync_ticket(client, store, event.ticket_id) is SyncOutcome.WRITTEN
    assert moved in store.ticket_ids("jira")

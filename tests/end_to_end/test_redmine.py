"""The pipeline end to end with the real Redmine integration: gunicorn + `tickets worker` + Redis + a real Redmine.

Changes are made in Redmine through its REST API (as a user would), then announced the two ways Redmine
can: the suer/redmine_webhook plugin (`{"payload": ...}`, the shared secret as `?token=`) and Redmine 7's
native webhooks (`{"type": "issue.updated", ...}` signed in `X-Redmine-Signature-256`). The payloads are
built from the issue as Redmine returns it, on the shapes in tests/integrations/redmine/fixtures/.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from rq.job import Job
from rq.registry import FailedJobRegistry

from tests.pipeline_support.configs import SECRET
from tests.pipeline_support.processes import wait_for
from tests.pipeline_support.stack import PipelineStack

if TYPE_CHECKING:
    from tests.integrations.redmine.redmine_server import RedmineAdmin, RedmineServer

pytestmark = [pytest.mark.redmine, pytest.mark.slow]
pytest_plugins = ("tests.integrations.redmine.redmine_server",)

FIXTURES = Path(__file__).resolve().parents[1] / "integrations" / "redmine" / "fixtures"
RESYNC_ISSUES = 30


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def plugin_payload(issue: dict[str, Any], action: str, base_url: str) -> dict[str, Any]:
    """What suer/redmine_webhook posts for `issue` (its last journal for "updated")."""
    payload = fixture("plugin_updated.json")
    body = payload["payload"]
    body["action"] = action
    body["url"] = f"{base_url}/issues/{issue['id']}"
    body["issue"].update(
        {
            "id": issue["id"],
            "subject": issue["subject"],
            "description": issue.get("description") or "",
            "created_on": issue["created_on"],
            "updated_on": issue["updated_on"],
            "root_id": issue["id"],
            "project": {**body["issue"]["project"], "id": issue["project"]["id"], "name": issue["project"]["name"]},
            "status": issue["status"],
            "tracker": issue["tracker"],
            "priority": issue["priority"],
            "custom_fields": [],
        }
    )
    journals = issue.get("journals") or []
    if action == "opened" or not journals:
        del body["journal"]
    else:
        last = journals[-1]
        body["journal"].update(
            {
                "id": last["id"],
                "notes": last["notes"],
                "created_on": last["created_on"],
                "private_notes": last["private_notes"],
                "details": [],
            }
        )
    return payload


def native_payload(issue: dict[str, Any], kind: str) -> dict[str, Any]:
    """What Redmine 7 posts for `issue` (`issue.updated` carries its last journal)."""
    payload = fixture("native_issue_deleted.json" if kind == "issue.deleted" else "native_issue_updated.json")
    payload["type"] = kind
    payload["timestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = (
        "id",
        "project",
        "tracker",
        "status",
        "priority",
        "author",
        "subject",
        "description",
        "start_date",
        "done_ratio",
        "is_private",
        "created_on",
        "updated_on",
        "closed_on",
    )
    payload["data"]["issue"] = {
        **payload["data"]["issue"],
        "assigned_to": None,
        "custom_fields": [],
        **{name: issue.get(name) for name in fields},
    }
    if kind == "issue.updated":
        last = copy.deepcopy((issue.get("journals") or [])[-1])
        payload["data"]["journal"] = {name: last[name] for name in ("id", "created_on", "notes", "user")}
        payload["data"]["journal"]["details"] = [  # the webhook says prop_key/value where REST says name/new_value
            {
                "property": d["property"],
                "prop_key": d["name"],
                "old_value": d.get("old_value"),
                "value": d.get("new_value"),
            }
            for d in last.get("details") or []
        ]
    return payload


def signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Redmine-Signature-256": f"sha256={signature}"}


class RedmineStack:
    def __init__(
        self,
        server: RedmineServer,
        admin: RedmineAdmin,
        project: dict[str, Any],
        stack: PipelineStack,
        api_user: dict[str, Any],
    ) -> None:
        self.server = server
        self.admin = admin
        self.project = project
        self.stack = stack
        self.api_user = api_user  # whose key the pipeline uses

    def set_api_user_status(self, status: int) -> None:
        """1 active, 3 locked: Redmine then answers the user's key with 401."""
        self.admin.call("PUT", f"users/{self.api_user['id']}.json", json={"user": {"status": status}})

    def issue(self, issue_id: int) -> dict[str, Any]:
        return self.admin.get_issue(issue_id)

    def new_issue(self, subject: str, **fields: Any) -> int:
        return int(self.admin.create_issue(self.project["identifier"], subject, **fields)["id"])

    def send_plugin(self, issue_id: int, action: str = "updated", token: str = SECRET) -> requests.Response:
        payload = plugin_payload(self.issue(issue_id), action, self.server.url)
        return self.stack.post_json("redmine", payload, query={"token": token})

    def send_native(
        self, issue: dict[str, Any], kind: str = "issue.updated", secret: str = SECRET
    ) -> requests.Response:
        body, headers = signed(native_payload(issue, kind), secret)
        return self.stack.post("redmine", body, headers)

    def wait_finished(self, response: requests.Response) -> None:
        assert response.status_code == 202, response.text
        job_id = response.json()["jobs"][0]["job_id"]
        wait_for(
            lambda: Job.fetch(job_id, connection=self.stack.redis).get_status() == "finished",
            20,
            what=f"job {job_id} to finish",
        )


@pytest.fixture(scope="module")
def redmine(
    redmine_server: RedmineServer,
    redmine_admin: RedmineAdmin,
    redmine_project: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    module_redis_url: str,
) -> Iterator[RedmineStack]:
    """The pipeline reading Redmine as a project manager (not an admin), as it would in production."""
    api_user = redmine_admin.create_user("e2e-sync", firstname="Sync", lastname="Bot")
    redmine_admin.add_member(redmine_project["identifier"], api_user["id"], "Manager")
    section = {
        "enabled": True,
        "base_url": redmine_server.url,
        "api_key": api_user["api_key"],
        "project_id": redmine_project["identifier"],
        "webhook_secret": SECRET,
        "resync_concurrency": 4,
    }
    stack = PipelineStack(
        tmp_path_factory.mktemp("redmine"), module_redis_url, {"redmine": section}, key_prefix="e2e-redmine"
    )
    try:
        stack.web(env={"WEB_ACCESS_LOG": "-"})  # the access log must not show the plugin's ?token= either
        stack.worker()
        yield RedmineStack(redmine_server, redmine_admin, redmine_project, stack, api_user)
    finally:
        stack.close()
        redmine_admin.delete_user(api_user["id"])


def test_plugin_webhook_with_token_stores_the_new_note(redmine: RedmineStack) -> None:
    issue_id = redmine.new_issue("Mail server rejects attachments", description="Anything over 10 MB bounces.")
    redmine.admin.update_issue(issue_id, notes="Raised the size limit to 25 MB")
    response = redmine.send_plugin(issue_id)
    assert response.status_code == 202, response.text
    assert [(j["ticket_id"], j["outcome"]) for j in response.json()["jobs"]] == [(str(issue_id), "enqueued")]

    content = redmine.stack.wait_stored("redmine", str(issue_id), "Raised the size limit to 25 MB")
    assert "Title: Mail server rejects attachments" in content and "Anything over 10 MB bounces." in content
    assert "Comments (1):" in content and f"Project: {redmine.project['name']}" in content
    assert SECRET not in redmine.stack.log_of("web")
    assert re.search(r'"POST /webhooks/redmine[^"]* HTTP/1.1" 202', redmine.stack.log_of("web"))


def test_native_signed_webhook_stores_the_new_note(redmine: RedmineStack) -> None:
    issue_id = redmine.new_issue("VPN drops every 10 minutes")
    redmine.admin.update_issue(issue_id, notes="Happens on the guest Wi-Fi only")
    assert redmine.send_native(redmine.issue(issue_id)).status_code == 202
    redmine.stack.wait_stored("redmine", str(issue_id), "Happens on the guest Wi-Fi only", "Comments (1):")

    redmine.admin.update_issue(
        issue_id, notes="Fixed by a DHCP lease change", status_id=redmine.admin.status_id("Resolved")
    )
    assert redmine.send_native(redmine.issue(issue_id)).status_code == 202
    content = redmine.stack.wait_stored("redmine", str(issue_id), "Fixed by a DHCP lease change")
    assert "Comments (2):" in content and "Status: Resolved" in content
    assert content.index("Happens on the guest Wi-Fi only") < content.index("Fixed by a DHCP lease change")


def test_private_note_is_never_stored(redmine: RedmineStack) -> None:
    issue_id = redmine.new_issue("Customer asks for a refund")
    redmine.admin.update_issue(issue_id, notes="Refund approved")
    redmine.admin.update_issue(issue_id, notes="INTERNAL: customer is on the legacy price plan", private_notes=True)
    issue = redmine.issue(issue_id)
    assert issue["journals"][-1]["private_notes"] is True  # the webhook announces the private note itself
    as_api_user = redmine.admin.get_issue(issue_id, key=redmine.api_user["api_key"])
    assert "legacy price plan" in as_api_user["journals"][-1]["notes"]  # Redmine shows it to our user: we must drop it
    redmine.wait_finished(redmine.send_native(issue))
    content = redmine.stack.stored("redmine", str(issue_id))
    assert "Refund approved" in content and "Comments (1):" in content
    assert "INTERNAL" not in content and "legacy price plan" not in content


def test_native_issue_deleted_removes_the_copy(redmine: RedmineStack) -> None:
    issue_id = redmine.new_issue("Created by mistake")
    assert redmine.send_plugin(issue_id, action="opened").status_code == 202
    redmine.stack.wait_stored("redmine", str(issue_id), "Title: Created by mistake")
    last_seen = redmine.issue(issue_id)

    redmine.admin.delete_issue(issue_id)
    response = redmine.send_native(last_seen, "issue.deleted")
    assert response.status_code == 202, response.text
    redmine.stack.wait_gone("redmine", str(issue_id))


def test_issue_of_another_project_is_not_stored(redmine: RedmineStack) -> None:
    other = redmine.admin.create_project("e2e-other")
    try:
        redmine.admin.add_member(other["identifier"], redmine.api_user["id"], "Manager")  # visible, but not ours
        issue_id = int(redmine.admin.create_issue(other["identifier"], "Belongs to another team")["id"])
        redmine.admin.update_issue(issue_id, notes="Their business")
        redmine.wait_finished(redmine.send_plugin(issue_id))
        assert not redmine.stack.stored("redmine", str(issue_id))
        redmine.stack.wait_log("worker", rf"job_done system=redmine ticket={issue_id} .*outcome=absent")
    finally:
        redmine.admin.delete_project(other["identifier"])


def test_refused_api_key_fails_the_job_keeps_the_copy_and_requeue_heals(redmine: RedmineStack) -> None:
    issue_id = redmine.new_issue("Kept while our key is refused")
    assert redmine.send_plugin(issue_id, action="opened").status_code == 202
    redmine.stack.wait_stored("redmine", str(issue_id), "Title: Kept while our key is refused")
    redmine.admin.update_issue(issue_id, notes="Written while the key was refused")
    redmine.set_api_user_status(3)
    try:
        job_id = redmine.send_plugin(issue_id).json()["jobs"][0]["job_id"]
        registry = FailedJobRegistry(redmine.stack.names.live_queue, connection=redmine.stack.redis)
        wait_for(lambda: job_id in registry.get_job_ids(), 20, what="the job in the failed registry")
        [failed] = [f for f in redmine.stack.failed() if f["ticket_id"] == str(issue_id)]
        assert (failed["job_id"], failed["attempts"]) == (job_id, 1) and "answered 401" in failed["error"]
        content = redmine.stack.stored("redmine", str(issue_id))  # a refused key is no reason to drop the copy
        assert "Title: Kept while our key is refused" in content and "Written while" not in content
    finally:
        redmine.set_api_user_status(1)

    result = redmine.stack.cli("failed", "requeue", "--all")
    assert result.returncode == 0 and f"requeued {job_id} (redmine {issue_id})" in result.stdout, result.stdout
    redmine.stack.wait_stored("redmine", str(issue_id), "Written while the key was refused")
    assert redmine.api_user["api_key"] not in redmine.stack.logs() + failed["error"]


def test_wrong_token_or_signature_is_refused_and_nothing_is_queued(redmine: RedmineStack) -> None:
    issue_id = redmine.new_issue("Only for the real Redmine")
    redmine.admin.update_issue(issue_id, notes="A note nobody may inject")
    issue = redmine.issue(issue_id)
    jobs_before = redmine.stack.jobs_for("redmine", str(issue_id))  # SQLite Redmine reuses a deleted issue's id
    plugin_body = json.dumps(plugin_payload(issue, "updated", redmine.server.url)).encode()
    json_headers = {"Content-Type": "application/json"}
    native_body, native_headers = signed(native_payload(issue, "issue.updated"), secret="not-the-secret")
    attempts = [
        redmine.stack.post("redmine", plugin_body, json_headers, query={"token": "not-the-secret"}),
        redmine.stack.post("redmine", plugin_body, {**json_headers, "X-Webhook-Token": "not-the-secret"}),
        redmine.stack.post("redmine", plugin_body, json_headers),  # no token at all
        redmine.send_native(issue, secret="not-the-secret"),
        # A signature that does not verify is refused even when the right token comes along.
        redmine.stack.post("redmine", native_body, native_headers, query={"token": SECRET}),
    ]
    assert [r.status_code for r in attempts] == [401] * len(attempts), [r.text for r in attempts]
    assert {r.json()["error"] for r in attempts} == {"unauthenticated"}
    assert redmine.stack.jobs_for("redmine", str(issue_id)) == jobs_before  # answered after queueing: nothing queued
    assert not redmine.stack.stored("redmine", str(issue_id))


def test_full_resync_via_the_cli_stores_every_issue_of_the_project(redmine: RedmineStack) -> None:
    project = redmine.project["identifier"]
    ids = redmine.admin.create_issues(project, RESYNC_ISSUES, prefix="resync")
    closed = redmine.admin.status_id("Closed")
    for issue_id in ids[::5]:
        redmine.admin.update_issue(issue_id, notes=f"closing {issue_id}", status_id=closed)

    result = redmine.stack.cli("resync", "--system", "redmine", "--full", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(
        r"^redmine \(full\): fetched (\d+), written (\d+), unchanged (\d+), stale 0, deleted \d+, failed 0 in ",
        result.stdout,
        re.M,
    )
    assert summary, result.stdout

    listed = redmine.admin.call("GET", "issues.json", params={"project_id": project, "status_id": "*", "limit": 100})
    upstream = {str(issue["id"]): issue for issue in listed["issues"]}
    assert listed["total_count"] == len(upstream) and set(map(str, ids)) <= set(upstream)
    fetched, written, unchanged = map(int, summary.groups())
    assert fetched == written + unchanged == len(upstream)
    assert redmine.stack.stored_ids("redmine") == set(upstream)  # and nothing else (the deleted issue is gone)
    for issue_id, issue in upstream.items():
        content = redmine.stack.stored("redmine", issue_id)
        assert f"Title: {issue['subject']}\n" in content
        if int(issue_id) in ids[::5]:
            assert f"closing {issue_id}" in content and "Status: Closed (closed)" in content

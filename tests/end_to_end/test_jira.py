"""The pipeline end to end with the real Jira integration: gunicorn + `tickets worker` + Redis + a fake Jira.

The fake Jira (tests/integrations/jira/fake_server.py) serves from a thread of this process; the web and worker
processes reach it over loopback HTTP exactly as they would reach Jira, with the configured token and
the real comment paging, search paging, rate limiting and authentication failures. One stack per
deployment serves the whole module; each test works on issues of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from rq.job import Job
from rq.registry import FailedJobRegistry

from data_manager.collectors.persistence import META_SUFFIX
from tests.integrations.jira.fake_server import (
    DEFAULT_TOKEN,
    DEFAULT_USERNAME,
    FakeJira,
    RunningFakeJira,
    start_fake_jira,
    text_as_adf,
)
from tests.pipeline_support.configs import SECRET
from tests.pipeline_support.processes import wait_for
from tests.pipeline_support.stack import PipelineStack

pytestmark = pytest.mark.slow

SEEDED_ISSUES = 200
SERVER_ZONES = {"cloud": "UTC", "datacenter": "Europe/Berlin"}  # DC in a non-UTC profile zone, as in the Jira tests
COMMENT_LINE = re.compile(r"^--- Comment \d+ by .* at \S+ ---$")


@dataclass
class JiraStack:
    """A fake Jira of one deployment and the pipeline configured against it."""

    server: RunningFakeJira
    stack: PipelineStack

    @property
    def fake(self) -> FakeJira:
        return self.server.fake

    def text(self, text: str) -> Any:
        """Text as this deployment stores it: ADF on Cloud, wiki markup on Data Center."""
        return text_as_adf(text) if self.fake.deployment == "cloud" else text

    def issue_path(self, key: str) -> str:
        return f"/rest/api/{self.fake.api_version}/issue/{key}"

    def requests_to(self, path: str) -> list[tuple[str, str]]:
        with self.fake.lock:
            return [(method, query) for method, seen, query in self.fake.requests if seen == path]

    def send(self, event: str, key: str, *, secret: str = SECRET, **kwargs: Any) -> requests.Response:
        body, headers = self.fake.signed_webhook(event, key, secret, **kwargs)
        return self.stack.post("jira", body, headers)

    def send_payload(self, payload: dict[str, Any]) -> requests.Response:
        """A payload of our own making, signed as Jira signs its admin webhooks."""
        body = json.dumps(payload).encode()
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return self.stack.post(
            "jira", body, {"Content-Type": "application/json", "X-Hub-Signature": f"sha256={signature}"}
        )

    def expected_comments(self, key: str) -> list[str]:
        """What the copy must show: the visible comments (no role/group or JSM-internal ones), oldest first."""
        issue = self.fake.issue(key)
        ordered = sorted(issue.comments, key=lambda c: (c.created, int(c.id)))
        return [plain(c.body) for c in ordered if self.fake.comment_visible(c)]


def plain(body: Any) -> str:
    if isinstance(body, str):
        return body
    return "".join(node.get("text", "") for block in body["content"] for node in block.get("content", []))


def stored_comments(content: str) -> list[str]:
    """The text under each comment header of a stored ticket (the tests' comments are one line each)."""
    lines = content.splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if COMMENT_LINE.match(line)]


def jira_section(server: RunningFakeJira, deployment: str) -> dict[str, Any]:
    return {
        "enabled": True,
        "deployment": deployment,
        "base_url": server.url,
        "username": DEFAULT_USERNAME if deployment == "cloud" else None,
        "api_token": DEFAULT_TOKEN,
        "jql_query": "project in (PROJ, OPS)",
        "jql_timezone": SERVER_ZONES[deployment],
        "webhook_secret": SECRET,
        "max_retries": 1,  # one in-client retry, so a longer 429 spell reaches the job's own retry
        "resync_concurrency": 4,
    }


def run_stack(deployment: str, directory: Path, redis_url: str) -> Iterator[JiraStack]:
    server = start_fake_jira(deployment=deployment, issues=SEEDED_ISSUES, timezone_name=SERVER_ZONES[deployment])
    stack = PipelineStack(
        directory, redis_url, {"jira": jira_section(server, deployment)}, key_prefix=f"e2e-jira-{deployment}"
    )
    try:
        stack.web()
        stack.worker()
        yield JiraStack(server, stack)
    finally:
        stack.close()
        server.stop()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, module_redis_url: str) -> Iterator[JiraStack]:
    yield from run_stack("cloud", tmp_path_factory.mktemp("jira-cloud"), module_redis_url)


@pytest.fixture(scope="module")
def datacenter(tmp_path_factory: pytest.TempPathFactory, module_redis_url: str) -> Iterator[JiraStack]:
    yield from run_stack("datacenter", tmp_path_factory.mktemp("jira-dc"), module_redis_url)


def new_issue(jira: JiraStack, summary: str, **fields: Any) -> str:
    """An issue created a day ago (so its comments can be spread over the hours since)."""
    return jira.fake.add_issue(summary, created=datetime.now(UTC) - timedelta(days=1), **fields)


def add_comments(jira: JiraStack, key: str, count: int) -> None:
    """`count` comments a minute apart; every 40th limited to a role, every 55th a JSM internal note."""
    start = jira.fake.issue(key).created
    for n in range(1, count + 1):
        jira.fake.add_comment(
            key,
            jira.text(f"Comment {n} of {count} on {key}: step {n} checked ✓"),
            author=("ann", "bob", "chen", "customer")[n % 4],
            visibility={"type": "role", "value": "Developers"} if n % 40 == 0 else None,
            jsd_public=False if n % 55 == 0 else None,
            created=start + timedelta(minutes=n),
            touch=False,
        )


# -- webhooks -------------------------------------------------------------------------------------
def test_issue_updated_stores_the_latest_issue_with_all_250_comments(cloud: JiraStack) -> None:
    key = new_issue(
        cloud,
        "Checkout fails for EU customers",
        description=cloud.text("Card payments time out."),
        reporter="customer",
        assignee="chen",
    )
    add_comments(cloud, key, 250)
    body, headers = cloud.fake.signed_webhook("jira:issue_updated", key, SECRET)  # describes the state before ...
    cloud.fake.update_issue(
        key, summary="Checkout fails for EU customers (PSP timeout)", status="In Progress"
    )  # ... this

    comments_path = cloud.issue_path(key) + "/comment"
    earlier = len(cloud.requests_to(comments_path))
    response = cloud.stack.post("jira", body, headers)
    assert response.status_code == 202, response.text
    [job] = response.json()["jobs"]
    assert (job["ticket_id"], job["outcome"]) == (key, "enqueued")

    content = cloud.stack.wait_stored("jira", key, "Title: Checkout fails for EU customers (PSP timeout)")
    expected = cloud.expected_comments(key)
    assert len(expected) == 250 - 6 - 4  # 6 role-restricted (every 40th), 4 internal (every 55th), none both
    assert f"Comments ({len(expected)}):" in content
    assert stored_comments(content) == expected  # every page, in order, nothing restricted
    assert "Status: In Progress" in content and "Requester: Customer Zoë" in content and "Assignee: 陈伟" in content
    assert "Card payments time out." in content
    pages = [query for method, query in cloud.requests_to(comments_path)[earlier:] if method == "GET"]
    assert [re.search(r"startAt=(\d+)", q).group(1) for q in pages] == ["0", "100", "200"]  # type: ignore[union-attr]


def test_comment_created_adds_the_new_comment(cloud: JiraStack) -> None:
    key = cloud.fake.add_issue("Printer on the 3rd floor is offline", reporter="bob")
    cloud.fake.add_comment(key, cloud.text("First look: the printer has no power"), author="ann")
    assert cloud.send("jira:issue_created", key).status_code == 202
    cloud.stack.wait_stored("jira", key, "First look: the printer has no power", "Comments (1):")

    comment_id = cloud.fake.add_comment(key, cloud.text("Replaced the fuse; it prints again"), author="chen")
    response = cloud.send("comment_created", key, comment_id=comment_id)
    assert response.status_code == 202, response.text
    content = cloud.stack.wait_stored("jira", key, "Replaced the fuse; it prints again")
    assert "Comments (2):" in content
    assert stored_comments(content) == ["First look: the printer has no power", "Replaced the fuse; it prints again"]


def test_issue_deleted_removes_the_copy_only_once_jira_says_it_is_gone(cloud: JiraStack) -> None:
    key = cloud.fake.add_issue("Duplicate of an older report")
    assert cloud.send("jira:issue_created", key).status_code == 202
    cloud.stack.wait_stored("jira", key, "Title: Duplicate of an older report")

    # A delete event while Jira still has the issue (a late or reordered delivery) is checked, not obeyed.
    job_id = cloud.send("jira:issue_deleted", key).json()["jobs"][0]["job_id"]
    wait_for(
        lambda: Job.fetch(job_id, connection=cloud.stack.redis).get_status() == "finished", 20, what="the job to finish"
    )
    assert cloud.stack.stored("jira", key)

    cloud.fake.delete_issue(key)
    response = cloud.send("jira:issue_deleted", key)
    assert response.status_code == 202, response.text
    cloud.stack.wait_gone("jira", key)
    assert not cloud.stack.path("jira", key).with_suffix(".txt" + META_SUFFIX).exists()


def test_issue_moved_to_another_project_replaces_the_copy_under_the_old_key(cloud: JiraStack) -> None:
    old_key = new_issue(cloud, "Belongs to operations")
    assert cloud.send("jira:issue_created", old_key).status_code == 202
    cloud.stack.wait_stored("jira", old_key, "Title: Belongs to operations")

    new_key = cloud.fake.move_issue(old_key, "OPS")
    payload = cloud.fake.webhook_payload("jira:issue_updated", new_key)
    payload["changelog"][
        "items"
    ] = [  # as Jira reports a move (tests/integrations/jira/fixtures/webhook_jira_issue_updated_moved.json)
        {
            "field": "project",
            "fieldtype": "jira",
            "fieldId": "project",
            "from": "10000",
            "fromString": "PROJ",
            "to": "10001",
            "toString": "OPS",
        },
        {"field": "Key", "fieldtype": "jira", "from": None, "fromString": old_key, "to": None, "toString": new_key},
    ]
    response = cloud.send_payload(payload)
    assert response.status_code == 202, response.text
    assert [job["ticket_id"] for job in response.json()["jobs"]] == [old_key, new_key]
    cloud.stack.wait_stored("jira", new_key, "Title: Belongs to operations", "Project: OPS")
    cloud.stack.wait_gone("jira", old_key)  # Jira still answers for the old key, with the moved issue: gone here


def test_badly_signed_webhooks_are_refused_and_nothing_is_queued_or_fetched(cloud: JiraStack) -> None:
    key = cloud.fake.add_issue("Only for the right sender")
    wrong_secret, wrong_headers = cloud.fake.signed_webhook("jira:issue_updated", key, "not-the-secret")
    good_body, good_headers = cloud.fake.signed_webhook("jira:issue_updated", key, SECRET)
    tampered = good_body.replace(b"jira:issue_updated", b"jira:issue_created")
    unsigned = {k: v for k, v in good_headers.items() if k != "X-Hub-Signature"}
    assert cloud.stack.jobs_for("jira", key) == []
    for body, headers in ((wrong_secret, wrong_headers), (tampered, good_headers), (good_body, unsigned)):
        response = cloud.stack.post("jira", body, headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthenticated"
    # The web process answers only after queueing, so "nothing queued" can be checked at once.
    assert cloud.stack.jobs_for("jira", key) == []
    assert not cloud.stack.stored("jira", key)
    assert cloud.requests_to(cloud.issue_path(key)) == []


def test_rate_limited_fetch_is_retried_by_the_job_after_retry_after(cloud: JiraStack) -> None:
    key = cloud.fake.add_issue("Fetched despite rate limiting")
    path = cloud.issue_path(key)
    # Two 429s: the client's one retry meets the second, so the job itself must retry (after Retry-After).
    cloud.fake.inject(429, path=re.escape(path) + "$", method="GET", times=2, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert cloud.send("jira:issue_updated", key).status_code == 202
    cloud.stack.wait_stored("jira", key, "Title: Fetched despite rate limiting")
    assert time.monotonic() - started >= 2.0  # both waits honoured Retry-After: 1
    assert [method for method, _ in cloud.requests_to(path)] == ["GET"] * 3
    worker_log = cloud.stack.wait_log("worker", rf"job_done system=jira ticket={key} .*outcome=written attempt=2")
    assert re.search(rf"job_retry system=jira ticket={key} .*attempt=1 .*answered 429", worker_log)


def test_rejected_token_fails_the_job_which_is_listed_then_requeued(cloud: JiraStack) -> None:
    key = cloud.fake.add_issue("Synced once the token works again")
    with cloud.fake.lock:
        cloud.fake.token = "rotated-by-an-admin"  # our configured token is no longer accepted: Jira answers 401
    try:
        job_id = cloud.send("jira:issue_updated", key).json()["jobs"][0]["job_id"]
        registry = FailedJobRegistry(cloud.stack.names.live_queue, connection=cloud.stack.redis)
        wait_for(lambda: job_id in registry.get_job_ids(), 20, what="the job in the failed registry")
        [failed] = [f for f in cloud.stack.failed() if f["ticket_id"] == key]
        assert (failed["job_id"], failed["system"], failed["attempts"]) == (job_id, "jira", 1)  # permanent: no retries
        assert "answered 401" in failed["error"] and "not authenticated" in failed["error"]
        assert not cloud.stack.stored("jira", key)
        assert len(cloud.requests_to(cloud.issue_path(key))) == 1
    finally:
        with cloud.fake.lock:
            cloud.fake.token = DEFAULT_TOKEN

    result = cloud.stack.cli("failed", "requeue", "--all")
    assert result.returncode == 0, result.stderr
    assert f"requeued {job_id} (jira {key})" in result.stdout and "1 job(s) requeued" in result.stdout
    cloud.stack.wait_stored("jira", key, "Title: Synced once the token works again")
    assert [f for f in cloud.stack.failed() if f["ticket_id"] == key] == []
    credential = base64.b64encode(f"{DEFAULT_USERNAME}:{DEFAULT_TOKEN}".encode()).decode()
    for text in (cloud.stack.logs(), failed["error"]):
        assert DEFAULT_TOKEN not in text and credential not in text


# -- resync -------------------------------------------------------------------------------------------
def expected_texts(jira: JiraStack) -> dict[str, list[str]]:
    """Per issue: its title and its visible comment count, as the stored copy must show them."""
    with jira.fake.lock:
        return {
            key: [f"Title: {issue.summary}\n", f"Comments ({len(jira.expected_comments(key))}):"]
            for key, issue in jira.fake.issues.items()
        }


def test_full_resync_inline_persists_every_issue(cloud: JiraStack) -> None:
    expected = expected_texts(cloud)
    assert len(expected) >= SEEDED_ISSUES
    started = time.monotonic()
    result = cloud.stack.cli("resync", "--system", "jira", "--full", timeout=120)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(
        r"^jira \(full\): fetched (\d+), written (\d+), unchanged (\d+), stale 0, deleted \d+, failed 0 in ",
        result.stdout,
        re.M,
    )
    assert summary, result.stdout
    fetched, written, unchanged = map(int, summary.groups())
    assert fetched == written + unchanged == len(expected)
    cloud.stack.wait_all_stored("jira", expected, timeout=1)  # already there: the command has finished
    assert cloud.stack.stored_ids("jira") == set(expected)
    print(f"inline full resync of {fetched} Jira issues: {took:.1f}s")


def test_datacenter_issue_updated_stores_wiki_text_and_every_comment(datacenter: JiraStack) -> None:
    key = new_issue(
        datacenter,
        "VPN drops every 10 minutes",
        description="Seen on *all* laptops since Monday.",
        reporter="bob",
        assignee="ann",
    )
    add_comments(datacenter, key, 120)
    response = datacenter.send("jira:issue_updated", key)
    assert response.status_code == 202, response.text
    content = datacenter.stack.wait_stored("jira", key, "Title: VPN drops every 10 minutes")
    expected = datacenter.expected_comments(key)
    assert len(expected) == 120 - 3 - 2
    assert stored_comments(content) == expected
    assert "Seen on *all* laptops since Monday." in content and "Requester: Bob Müller" in content
    assert "+01:00" not in content and "+02:00" not in content  # Berlin times are stored in UTC


def test_datacenter_full_resync_enqueued_is_persisted_by_the_worker(datacenter: JiraStack) -> None:
    expected = expected_texts(datacenter)
    started = time.monotonic()
    result = datacenter.stack.cli("resync", "--system", "jira", "--full", "--enqueue")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = re.search(
        r"^jira: listed (\d+), enqueued (\d+), already queued (\d+), deletion candidates 0 \(deleted 0, out of scope 0, failed 0\)$",
        result.stdout,
        re.M,
    )
    assert counts, result.stdout
    listed, enqueued, coalesced = map(int, counts.groups())
    assert listed == enqueued + coalesced == len(expected) and enqueued >= len(expected) - 1
    datacenter.stack.wait_all_stored("jira", expected, timeout=60)
    took = time.monotonic() - started
    wait_for(
        lambda: datacenter.stack.redis.llen(f"rq:queue:{datacenter.stack.names.bulk_queue}") == 0,
        10,
        what="bulk queue empty",
    )
    assert datacenter.stack.stored_ids("jira") == set(expected)
    assert FailedJobRegistry(datacenter.stack.names.bulk_queue, connection=datacenter.stack.redis).count == 0
    print(f"enqueued full resync of {listed} Jira DC issues through one worker: {took:.1f}s")


# -- a revoked token (Jira Cloud serves it as the anonymous user) ---------------------------------------
def test_revoked_token_in_a_delete_webhook_and_a_full_resync_removes_nothing(cloud: JiraStack) -> None:
    key = cloud.fake.add_issue("Kept while the token is revoked")
    first = cloud.send("jira:issue_updated", key).json()["jobs"][0]["job_id"]
    cloud.stack.wait_stored("jira", key, "Title: Kept while the token is revoked")
    # The file is written before the job ends; an event before then would only schedule a re-run of it.
    wait_for(
        lambda: Job.fetch(first, connection=cloud.stack.redis).get_status() == "finished", 20, what="the first job"
    )
    stored_before = cloud.stack.stored_ids("jira")
    with cloud.fake.lock:
        cloud.fake.refused_as_anonymous = True  # search 200 and empty, issues 404, only /myself 401
        cloud.fake.token = "revoked-by-the-owner"
    try:
        job_id = cloud.send("jira:issue_deleted", key).json()["jobs"][0]["job_id"]
        registry = FailedJobRegistry(cloud.stack.names.live_queue, connection=cloud.stack.redis)
        wait_for(lambda: job_id in registry.get_job_ids(), 20, what="the job in the failed registry")
        [failed] = [f for f in cloud.stack.failed() if f["ticket_id"] == key]
        assert failed["attempts"] == 1 and "refused the credentials" in failed["error"], failed
        assert "Title: Kept while the token is revoked" in cloud.stack.stored("jira", key)

        result = cloud.stack.cli("resync", "--system", "jira", "--full", "--allow-mass-delete", timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "ERROR credentials refused: " in result.stdout and "refused the credentials" in result.stdout
        assert cloud.stack.stored_ids("jira") == stored_before
    finally:
        with cloud.fake.lock:
            cloud.fake.refused_as_anonymous = False
            cloud.fake.token = DEFAULT_TOKEN
    assert cloud.stack.cli("failed", "purge", "--all").returncode == 0
    for text in (cloud.stack.logs(), failed["error"]):
        assert "revoked-by-the-owner" not in text and DEFAULT_TOKEN not in text

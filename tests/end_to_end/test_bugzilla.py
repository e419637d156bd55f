"""The pipeline end to end with the real Bugzilla integration: gunicorn + `tickets worker` + Redis + a fake Bugzilla.

The fake Bugzilla (tests/integrations/bugzilla/fake_server.py) serves from a thread of this process; the
web, worker and CLI processes reach it over loopback HTTP with the configured API key, exactly as they
would reach an upstream Bugzilla 5.0 (key in the query string, private comments, security groups).
Webhooks are the bugzilla.mozilla.org extension's JSON with its one admin-configured header.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.integrations.bugzilla.fake_server import (
    ADMIN_KEY,
    GENERATED_START,
    FakeBugzilla,
    RunningFakeBugzilla,
    start_fake_bugzilla,
)
from tests.pipeline_support.configs import SECRET
from tests.pipeline_support.processes import ROOT
from tests.pipeline_support.stack import PipelineStack

pytestmark = pytest.mark.slow

SEEDED_BUGS = 120


@dataclass
class BugzillaStack:
    server: RunningFakeBugzilla
    stack: PipelineStack

    @property
    def fake(self) -> FakeBugzilla:
        return self.server.fake

    def send(self, bug_id: int, *, secret: str = SECRET, **kwargs: Any):
        body, headers = self.fake.webhook_request(bug_id, value=secret, **kwargs)
        return self.stack.post("bugzilla", body, headers)

    def resync(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "workers.cli",
                "--config",
                str(self.stack.config),
                "resync",
                "--system",
                "bugzilla",
                *args,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(env or {})},
        )

    def requests_since(self, start: int) -> int:
        with self.fake.lock:
            return len(self.fake.requests) - start


@pytest.fixture(scope="module")
def bz(tmp_path_factory: pytest.TempPathFactory, module_redis_url: str) -> Iterator[BugzillaStack]:
    server = start_fake_bugzilla()
    server.fake.seed(SEEDED_BUGS, comments=3, products=["TestProduct", "TestProduct", "OtherProduct"])
    section = {
        "enabled": True,
        "base_url": server.url,
        "api_key": ADMIN_KEY,
        "products": ["TestProduct"],
        "webhook_secret": SECRET,
        "max_retries": 1,
        "page_size": 50,
    }
    stack = PipelineStack(
        tmp_path_factory.mktemp("bugzilla"), module_redis_url, {"bugzilla": section}, key_prefix="e2e-bugzilla"
    )
    try:
        stack.web()
        stack.worker()
        yield BugzillaStack(server, stack)
    finally:
        stack.close()
        server.stop()


def test_comment_webhook_stores_the_bug_with_hundreds_of_comments(bz: BugzillaStack) -> None:
    fake = bz.fake
    bug = fake.add_bug("Checkout fails for EU customers", description="Card payments time out.", at=GENERATED_START)
    for n in range(1, 301):
        fake.add_comment(
            bug, f"Comment {n}: step checked ✓", private=n % 50 == 0, at=GENERATED_START + timedelta(minutes=n)
        )
    fake.update_bug(bug, status="RESOLVED", resolution="FIXED")
    response = bz.send(bug, target="comment", action="create")
    assert response.status_code == 202, response.text
    content = bz.stack.wait_stored("bugzilla", str(bug), "Title: Checkout fails for EU customers", "Comments (294):")
    assert "Status: RESOLVED FIXED (resolved)" in content and "Card payments time out." in content
    assert "Comment 299: step checked ✓" in content and "Comment 50:" not in content  # private: left out
    assert ADMIN_KEY not in bz.stack.logs()


def test_webhooks_for_other_products_are_acknowledged_and_ignored(bz: BugzillaStack) -> None:
    bug = bz.fake.add_bug("Not ours", product="OtherProduct")
    response = bz.send(bug, changes=[{"field": "status", "removed": "CONFIRMED", "added": "IN_PROGRESS"}])
    assert response.status_code == 200, response.text
    assert bz.stack.jobs_for("bugzilla", str(bug)) == [] and not bz.stack.stored("bugzilla", str(bug))


def test_a_webhook_without_the_secret_header_is_refused(bz: BugzillaStack) -> None:
    bug = bz.fake.add_bug("Only for the right sender")
    assert bz.send(bug, secret="not-the-secret").status_code == 401
    assert bz.send(bug, secret="").status_code == 401
    assert bz.stack.jobs_for("bugzilla", str(bug)) == []


def test_full_resync_stores_every_bug_and_removes_one_that_became_invisible(bz: BugzillaStack) -> None:
    result = bz.resync("--full")
    assert result.returncode == 0, result.stdout + result.stderr
    with bz.fake.lock:
        ours = {str(b.id) for b in bz.fake.bugs.values() if b.product == "TestProduct" and not b.groups}
    assert ours <= bz.stack.stored_ids("bugzilla")
    assert not any(bz.fake.bugs[int(i)].product != "TestProduct" for i in bz.stack.stored_ids("bugzilla"))

    with bz.fake.lock:
        newest = max(b.last_change_time for b in bz.fake.bugs.values())
    start = len(bz.fake.requests)
    quiet = bz.resync("--since", (newest + timedelta(seconds=1)).isoformat())  # nothing changed since then
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert bz.requests_since(start) <= 2, [s.path for s in bz.fake.requests[start:]]  # the listing (+ the key's proof)

    hidden = sorted(ours, key=int)[3]
    bz.fake.hide_bug(int(hidden))
    result = bz.resync("--full")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not bz.stack.stored("bugzilla", hidden)
    assert re.search(r"deleted 1\b", result.stdout), result.stdout


def test_a_key_read_as_anonymous_never_removes_anything(bz: BugzillaStack) -> None:
    pytest.importorskip("data_manager.collectors.tickets.credentials", reason="needs the pipeline's credential proof")
    bug = bz.fake.add_bug("Security sensitive", description="d")
    assert bz.send(bug).status_code == 202
    bz.stack.wait_stored("bugzilla", str(bug), "Title: Security sensitive")
    bz.fake.hide_bug(bug, group="admin")  # the admin still sees it; anonymous does not
    result = bz.resync("--full", env={"TICKETS_BUGZILLA_API_KEY_IN": "header"})  # upstream ignores the header
    assert result.returncode != 0
    assert bz.stack.stored("bugzilla", str(bug))

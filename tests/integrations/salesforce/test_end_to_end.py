"""Salesforce end to end: gunicorn + `tickets worker` + Redis + the fake Salesforce over loopback HTTP.

Outbound Message → SOAP Ack (only once the events are queued) → the worker fetches the Case with all
its comments → the file. And `tickets resync`: full, then incremental with a deleted Case and a
session that expires in the middle of the listing (the OAuth client credentials flow renews it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from data_manager.collectors.tickets.integrations.salesforce._outbound import ACK_ENVELOPE
from tests.integrations.salesforce.fake_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    ORG_ID,
    FakeSalesforce,
    RunningFakeSalesforce,
    start_fake_salesforce,
)
from tests.pipeline_support.configs import SECRET
from tests.pipeline_support.fixtures import module_redis_url, redis_database  # noqa: F401
from tests.pipeline_support.stack import PipelineStack

pytestmark = pytest.mark.slow
COMMENT_LINE = re.compile(r"^--- Comment \d+ by .* at \S+ ---$")
SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


@dataclass
class SalesforceStack:
    server: RunningFakeSalesforce
    stack: PipelineStack

    @property
    def fake(self) -> FakeSalesforce:
        return self.server.fake

    def send(self, body: bytes, token: str = SECRET) -> Any:
        return self.stack.post("salesforce", body, SOAP, query={"token": token})


def stored_comments(content: str) -> list[str]:
    lines = content.splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if COMMENT_LINE.match(line)]


@pytest.fixture(scope="module")
def sf(tmp_path_factory: pytest.TempPathFactory, module_redis_url: str) -> Iterator[SalesforceStack]:  # noqa: F811
    server = start_fake_salesforce(cases=60)
    section = {
        "enabled": True,
        "instance_url": server.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "webhook_secret": SECRET,
        "organization_id": ORG_ID,
        "max_retries": 1,
        "resync_concurrency": 4,
    }
    stack = PipelineStack(
        tmp_path_factory.mktemp("salesforce"), module_redis_url, {"salesforce": section}, key_prefix="e2e-sf"
    )
    try:
        stack.web()
        stack.worker()
        yield SalesforceStack(server, stack)
    finally:
        stack.close()
        server.stop()


def test_outbound_message_is_acknowledged_and_the_case_stored_with_every_public_comment(sf: SalesforceStack) -> None:
    fake = sf.fake
    start = datetime.now(UTC) - timedelta(days=1)
    case_id = fake.add_case(
        "Checkout fails for EU customers", description="Card payments time out.", status="Escalated", created=start
    )
    for n in range(1, 251):
        fake.add_comment(case_id, f"Comment {n} of 250: step {n} checked ✓", published=n % 25 != 0,
                         author=("ann", "bob", "chen")[n % 3], created=start + timedelta(minutes=n))  # fmt: skip
    response = sf.send(fake.outbound_message([case_id]))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/xml") and response.content == ACK_ENVELOPE
    content = sf.stack.wait_stored("salesforce", case_id, "Title: Checkout fails for EU customers")
    assert stored_comments(content) == [f"Comment {n} of 250: step {n} checked ✓" for n in range(1, 251) if n % 25]
    assert "Status: Escalated (in_progress)" in content and "Assignee: Ann Agent" in content
    assert f"Case number: {fake.case(case_id).number}" in content
    meta_path = sf.stack.path("salesforce", case_id).with_name(f"salesforce_{case_id}.txt.meta.yaml")
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    assert meta["display_name"] == f"Case {fake.case(case_id).number}: Checkout fails for EU customers"


def test_a_case_comment_message_updates_its_parent_case(sf: SalesforceStack) -> None:
    fake = sf.fake
    case_id = fake.add_case("Printer on the 3rd floor is offline")
    assert sf.send(fake.outbound_message([case_id])).status_code == 200
    sf.stack.wait_stored("salesforce", case_id, "Comments (0):")
    comment_id = fake.add_comment(case_id, "Replaced the fuse; it prints again", author="chen")
    response = sf.send(fake.outbound_message([comment_id], object_type="CaseComment"))
    assert response.status_code == 200 and response.content == ACK_ENVELOPE
    sf.stack.wait_stored("salesforce", case_id, "Replaced the fuse; it prints again", "Comments (1):")
    # A comment deleted before delivery is sent without data: nothing to queue, and still acknowledged,
    # or Salesforce would retry it for 24 hours.
    gone = sf.send(fake.outbound_message(["00a5e0000000zzzAAA"], object_type="CaseComment"))
    assert gone.status_code == 200 and gone.content == ACK_ENVELOPE


def test_wrong_token_or_organization_is_refused_and_nothing_is_queued(sf: SalesforceStack) -> None:
    fake = sf.fake
    case_id = fake.add_case("Should never be fetched")
    before = fake.request_count
    assert sf.send(fake.outbound_message([case_id]), token="wrong").status_code == 401
    assert sf.send(fake.outbound_message([case_id], organization_id="00D5e000000ZZZZAAA")).status_code == 401
    bad_xml = sf.send(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    assert bad_xml.status_code == 400 and bad_xml.headers["Content-Type"].startswith("application/json")
    assert sf.stack.jobs_for("salesforce", case_id) == [] and fake.request_count == before


def test_full_then_incremental_resync_with_a_deleted_case_and_an_expiring_session(sf: SalesforceStack) -> None:
    fake = sf.fake
    result = sf.stack.cli("resync", "--system", "salesforce", "--full", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(fake.cases) <= sf.stack.stored_ids("salesforce")

    victim = next(iter(fake.cases))
    fake.delete_case(victim, when=datetime.now(UTC) - timedelta(minutes=3))
    changed = list(fake.cases)[5]
    fake.update_case(changed, subject="Renamed while nobody watched")
    issued = fake.tokens_issued
    queries = 0

    def expire_once(f: FakeSalesforce, request: Any) -> None:
        """The org's session timeout strikes once, right after the listing's first query."""
        nonlocal queries
        if request.path.endswith("/query"):
            queries += 1
            if queries == 1:
                f.expire_sessions()

    fake.after_request.append(expire_once)
    try:
        result = sf.stack.cli(
            "resync",
            "--system",
            "salesforce",
            "--since",
            (datetime.now(UTC) - timedelta(minutes=10)).isoformat(),
            timeout=120,
        )
    finally:
        fake.after_request.clear()
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.tokens_issued > issued  # the session expired mid-listing and was renewed
    sf.stack.wait_gone("salesforce", victim)
    assert "Renamed while nobody watched" in sf.stack.stored("salesforce", changed)

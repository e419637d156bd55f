"""Rate limits and errors through the fake: retries that honour the server, fast failures with its message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from data_manager.collectors.tickets.errors import PermanentError, TransientError
from tests.integrations.jira.conftest import JiraSetup
from tests.integrations.jira.fake_server import DEFAULT_TOKEN

JITTER = 0.5  # ApiClient adds up to min(1, backoff_base) seconds


def issue_requests(setup: JiraSetup, key: str) -> int:
    return sum(1 for _, path, _ in setup.fake.requests if path.endswith(f"/issue/{key}"))


def test_429_with_retry_after_then_success(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Popular")
    jira.fake.inject(
        429,
        path=rf"/issue/{key}$",
        headers={
            "Retry-After": "7",
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "RateLimit-Reason": "jira-burst-based",
        },
    )
    assert jira.client().fetch(key).data.title == "Popular"
    assert issue_requests(jira, key) == 2
    assert len(jira.sleeps) == 1 and 7 <= jira.sleeps[0] <= 7 + JITTER


def test_429_with_x_ratelimit_reset_then_success(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Popular")
    reset = (datetime.now(UTC) + timedelta(seconds=20)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    jira.fake.inject(429, path=rf"/issue/{key}$", headers={"X-RateLimit-Reset": reset})
    assert jira.client().fetch(key).ticket_id == key
    assert len(jira.sleeps) == 1 and 17 <= jira.sleeps[0] <= 20 + JITTER


def test_503_then_success_during_a_listing(make_jira) -> None:
    setup = make_jira(issues=30, search_page_cap=10)
    setup.fake.inject(503, path="/search", headers={"Retry-After": "2"}, times=2)
    refs = list(setup.client(page_size=10).iter_changed(None))
    assert len({r.ticket_id for r in refs}) == 30
    assert len(setup.sleeps) == 2 and all(2 <= s <= 2 + JITTER for s in setup.sleeps)


def test_429_that_never_ends_becomes_a_transient_error(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Throttled")
    jira.fake.inject(429, path=rf"/issue/{key}$", times=None, headers={"Retry-After": "3"})
    with pytest.raises(TransientError, match="answered 429") as caught:
        jira.client(max_retries=2).fetch(key)
    assert caught.value.retry_after == 3
    assert issue_requests(jira, key) == 3


def test_a_wait_longer_than_the_cap_is_handed_to_the_caller(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Throttled for long")
    jira.fake.inject(429, path=rf"/issue/{key}$", headers={"Retry-After": "3600"})
    with pytest.raises(TransientError) as caught:
        jira.client().fetch(key)
    assert caught.value.retry_after == 3600
    assert jira.sleeps == [] and issue_requests(jira, key) == 1


def test_400_fails_fast_with_the_servers_message_and_no_secret(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Bad request")
    jira.fake.inject(
        400,
        path=rf"/issue/{key}$",
        body={"errorMessages": [f"The value '{DEFAULT_TOKEN}' is not allowed here."], "errors": {"fields": "bad list"}},
    )
    with pytest.raises(PermanentError) as caught:
        jira.client().fetch(key)
    message = str(caught.value)
    assert caught.value.status == 400
    assert "is not allowed here" in message and "fields: bad list" in message
    assert DEFAULT_TOKEN not in message and "***" in message
    assert issue_requests(jira, key) == 1 and jira.sleeps == []


def test_wrong_token_is_a_permanent_401(jira: JiraSetup) -> None:
    jira.fake.add_issue("Private")
    with pytest.raises(PermanentError, match="401: You are not authenticated") as caught:
        jira.client(api_token="wrong-token-123").fetch("PROJ-1")
    assert "wrong-token-123" not in str(caught.value)
    assert len(jira.fake.requests) == 1


def test_html_error_pages_do_not_break_error_handling(jira: JiraSetup) -> None:
    jira.fake.inject(502, path="/issue/", headers={"Retry-After": "1"}, body="<html>Bad gateway</html>")
    jira.fake.add_issue("Behind a proxy")
    assert jira.client().fetch("PROJ-1").data.title == "Behind a proxy"


def test_a_non_json_success_is_transient(jira: JiraSetup) -> None:
    jira.fake.add_issue("Login page instead of JSON")
    jira.fake.inject(200, path="/issue/PROJ-1$", body="<html>Log in</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(TransientError, match="expected JSON"):
        jira.client().fetch("PROJ-1")

"""`iter_changed` over HTTP: full and incremental listings, JQL bounds, paging edge cases, both deployments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from data_manager.collectors.tickets.errors import PermanentError, TransientError
from tests.integrations.jira.conftest import JiraSetup
from tests.integrations.jira.fake_server import GENERATED_START, FakeJira


class Clock:
    """A settable clock for the fake, so `updated` times are known exactly."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def search_requests(setup: JiraSetup) -> list[tuple[str, str, str]]:
    return [r for r in setup.fake.requests if "/search" in r[1]]


def test_full_listing_returns_every_issue_once_oldest_change_first(make_jira) -> None:
    setup = make_jira(issues=230, search_page_cap=40)
    refs = list(setup.client(page_size=100).iter_changed(None))

    assert len(refs) == 230
    assert {r.ticket_id for r in refs} == set(setup.fake.issues)
    updated = [r.updated_at for r in refs]
    assert updated == sorted(updated)
    assert all(r.updated_at == setup.fake.issues[r.ticket_id].updated for r in refs)
    # Each page restarts from the last page's minute, re-reading at most the few issues of that minute.
    assert len(search_requests(setup)) <= 2 * (230 // 40 + 1)


def test_listing_uses_the_deployments_search_endpoint(jira: JiraSetup) -> None:
    jira.fake.add_issue("one")
    list(jira.client().iter_changed(None))
    method, path, query = search_requests(jira)[0]
    if jira.deployment == "cloud":
        assert (method, path) == ("POST", "/rest/api/3/search/jql")
    else:
        assert (method, path) == ("GET", "/rest/api/2/search")
        assert "fields=updated" in query and "startAt=0" in query


def test_incremental_listing_picks_up_what_changed(make_jira) -> None:
    clock = Clock(datetime(2025, 6, 1, 12, 0, tzinfo=UTC))
    setup = make_jira(issues=50, clock=clock)
    client = setup.client()
    assert len(list(client.iter_changed(None))) == 50

    since = clock.advance(hours=1)
    clock.advance(minutes=2)
    setup.fake.update_issue("PROJ-5", summary="changed summary")
    clock.advance(minutes=1)
    setup.fake.add_comment("PROJ-9", setup.native_text("a new comment"), author="customer")

    refs = list(client.iter_changed(since))
    assert [r.ticket_id for r in refs] == ["PROJ-5", "PROJ-9"]
    assert client.fetch("PROJ-5").data.title == "changed summary"
    assert client.fetch("PROJ-9").comments[-1].text == "a new comment"
    assert list(client.iter_changed(clock.advance(minutes=5))) == []


def test_since_is_floored_to_the_minute(make_jira) -> None:
    clock = Clock(datetime(2025, 6, 1, 12, 0, 10, tzinfo=UTC))
    setup = make_jira(clock=clock)
    setup.fake.add_issue("at 12:00:10")
    # 12:00:50 floors to 12:00, so an issue changed at 12:00:10 is still listed (JQL has no seconds).
    refs = list(setup.client().iter_changed(datetime(2025, 6, 1, 12, 0, 50, tzinfo=UTC)))
    assert [r.ticket_id for r in refs] == ["PROJ-1"]
    assert list(setup.client().iter_changed(datetime(2025, 6, 1, 12, 1, tzinfo=UTC))) == []


def test_jql_dates_are_written_in_the_configured_time_zone(make_jira) -> None:
    """Jira reads JQL dates in the API user's zone; with a matching jql_timezone nothing is missed."""
    clock = Clock(datetime(2025, 1, 15, 12, 0, tzinfo=UTC))
    setup = make_jira(clock=clock, timezone_name="America/New_York")
    since = clock.advance(minutes=1)
    setup.fake.add_issue("changed after since")
    client = setup.client(jql_timezone="America/New_York")
    assert [r.ticket_id for r in client.iter_changed(since)] == ["PROJ-1"]
    jql = client.changed_jql(since)
    assert 'updated >= "2025-01-15 07:01"' in jql  # 12:01 UTC is 07:01 in New York
    # Written in UTC instead, New York would read 12:01 local (= 17:01 UTC) and miss the change.
    assert list(setup.client(jql_timezone="UTC").iter_changed(since)) == []


def test_jql_query_bounds_the_search_and_its_order_by_is_replaced(jira: JiraSetup) -> None:
    jira.fake.add_issue("mine", labels=["x"])
    jira.fake.add_issue("other project", project="OTHER")
    jira.fake.add_issue("mine too")
    client = jira.client('project = PROJ AND summary ~ "mine" ORDER BY created DESC')
    assert sorted(r.ticket_id for r in client.iter_changed(None)) == ["PROJ-1", "PROJ-2"]
    assert "ORDER BY created" not in client.changed_jql(None)


def test_updates_during_the_listing_do_not_make_it_skip_issues(make_jira) -> None:
    """Issues updated while the listing runs jump to the end; position-only paging would skip others."""
    setup = make_jira(issues=300, search_page_cap=50)
    listed: list[str] = []

    def touch_listed_issues(fake: FakeJira, request) -> None:
        if "/search" in request.path and len(listed) < 200:
            for key in listed[-60:-50]:  # already listed on an earlier page
                fake.update_issue(key, summary=f"{key} touched")

    setup.fake.after_request.append(touch_listed_issues)
    for ref in setup.client(page_size=50).iter_changed(None):
        listed.append(ref.ticket_id)

    assert len(listed) == len(set(listed)) == 300
    assert set(listed) == set(setup.fake.issues)


@pytest.mark.parametrize("deployment", ["cloud"])
def test_cloud_stops_when_next_page_token_is_missing(make_jira) -> None:
    setup = make_jira(issues=120, search_page_cap=25, omit_is_last=True)
    refs = list(setup.client(page_size=25).iter_changed(None))
    assert len({r.ticket_id for r in refs}) == 120


@pytest.mark.parametrize("deployment", ["cloud"])
def test_cloud_refuses_to_loop_on_a_repeated_token(jira: JiraSetup) -> None:
    page = {
        "issues": [{"id": "1", "key": "PROJ-1", "fields": {"updated": "2024-01-01T00:00:00.000+0000"}}],
        "nextPageToken": "AAAA",
        "isLast": False,
    }
    jira.fake.inject(200, path="/search/jql$", times=None, body=page)
    with pytest.raises(TransientError, match="same nextPageToken twice"):
        list(jira.client().iter_changed(None))
    # First query (restarted at the first issue's minute), the restarted query, its repeated-token page.
    assert len(search_requests(jira)) == 3


@pytest.mark.parametrize("deployment", ["datacenter"])
def test_datacenter_stops_on_an_empty_page(jira: JiraSetup) -> None:
    jira.fake.inject(200, path="/search$", times=None, body={"startAt": 0, "maxResults": 50, "total": 10, "issues": []})
    assert list(jira.client().iter_changed(None)) == []
    assert len(search_requests(jira)) == 1


def test_bad_jql_fails_fast_with_jiras_message(jira: JiraSetup) -> None:
    with pytest.raises(PermanentError, match="Field 'colour' does not exist") as caught:
        list(jira.client("colour = red").iter_changed(None))
    assert caught.value.status == 400
    assert len(search_requests(jira)) == 1


def test_the_generated_data_spans_many_minutes_with_shared_minutes() -> None:
    """Guard for the paging tests: the seed must put several issues into one minute, out of key order."""
    fake = FakeJira()
    fake.seed(300)
    minutes = [i.updated.replace(second=0) for i in fake.issues.values()]
    assert len(set(minutes)) < len(minutes) < 3 * len(set(minutes)) + 1
    by_update = sorted(fake.issues.values(), key=lambda i: i.updated)
    assert [i.key for i in by_update] != sorted(fake.issues, key=lambda k: int(k.split("-")[1]))
    assert min(i.updated for i in fake.issues.values()) >= GENERATED_START

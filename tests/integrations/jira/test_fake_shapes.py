"""The fake answers in the documented shapes: every key of each fixture appears in the fake's answer.

If the fake drifts from Jira's shapes, the client tests would test a fiction; this keeps it honest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fakes.shapes import missing_keys
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME, start_fake_jira

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(params=["cloud", "datacenter"])
def deployment(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def served(deployment: str):
    with start_fake_jira(deployment=deployment) as server:
        fake = server.fake
        key = fake.add_issue(
            "Login fails",
            description=fake._native_text("It fails."),
            status="Resolved",
            reporter="ann",
            assignee="bob",
            labels=["sso"],
            components=["Auth"],
        )
        fake.add_comment(key, fake._native_text("Fixed in build 42"), author="bob")
        fake.add_comment(
            key,
            fake._native_text("devs"),
            visibility={"type": "role", "value": "Developers", "identifier": "Developers"},
        )
        fake.add_comment(key, fake._native_text("internal"), jsd_public=False)
        other = fake.add_issue("Open one", status="In Progress")
        session = requests.Session()
        if deployment == "cloud":
            session.auth = (DEFAULT_USERNAME, DEFAULT_TOKEN)
        else:
            session.headers["Authorization"] = f"Bearer {DEFAULT_TOKEN}"
        yield deployment, server.url, session, key, other
        session.close()


def test_issue_shape(served) -> None:
    deployment, url, session, key, _ = served
    version, fixture = ("3", "issue_v3.json") if deployment == "cloud" else ("2", "issue_v2.json")
    fields = ",".join(load(fixture)["fields"])
    answer = session.get(f"{url}/rest/api/{version}/issue/{key}", params={"fields": fields}).json()
    assert missing_keys(load(fixture), answer) == []
    assert isinstance(answer["fields"]["description"], dict if version == "3" else str)


def test_comment_page_shape(served) -> None:
    deployment, url, session, key, _ = served
    version, fixture = ("3", "comments_page_v3.json") if deployment == "cloud" else ("2", "comments_page_v2.json")
    answer = session.get(
        f"{url}/rest/api/{version}/issue/{key}/comment", params={"startAt": 0, "maxResults": 100}
    ).json()
    assert missing_keys(load(fixture), answer) == []
    if deployment == "cloud":
        by_id = {c["id"]: c for c in answer["comments"]}
        for documented in load(fixture)["comments"]:  # optional keys: visibility, jsdPublic
            twin = next(c for c in by_id.values() if set(documented) <= set(c))
            assert missing_keys(documented, twin) == []


def test_search_page_shape(served) -> None:
    deployment, url, session, _, _ = served
    if deployment == "cloud":
        jql = "project = PROJ ORDER BY key"
        answer = session.post(
            f"{url}/rest/api/3/search/jql", json={"jql": jql, "fields": ["updated"], "maxResults": 1}
        ).json()
        assert missing_keys(load("search_jql_page.json"), answer) == []
        last = session.post(
            f"{url}/rest/api/3/search/jql", json={"jql": jql, "maxResults": 1, "nextPageToken": answer["nextPageToken"]}
        ).json()
        assert last["isLast"] is True and "nextPageToken" not in last and set(last["issues"][0]) == {"id"}
        foreign = session.post(
            f"{url}/rest/api/3/search/jql", json={"jql": "project = OTHER", "nextPageToken": answer["nextPageToken"]}
        )
        assert foreign.status_code == 400
    else:
        answer = session.get(
            f"{url}/rest/api/2/search", params={"jql": "project = PROJ", "fields": "updated", "maxResults": 1}
        ).json()
        assert missing_keys(load("search_v2_page.json"), answer) == []
        assert answer["total"] == 2


def test_transitions_shape(served) -> None:
    deployment, url, session, _, other = served
    version = "3" if deployment == "cloud" else "2"
    answer = session.get(
        f"{url}/rest/api/{version}/issue/{other}/transitions", params={"expand": "transitions.fields"}
    ).json()
    documented = load("transitions_v3.json")
    assert missing_keys({k: v for k, v in documented.items() if k != "transitions"}, answer) == []
    resolve = next(t for t in answer["transitions"] if t["fields"])
    assert missing_keys(documented["transitions"][1], resolve) == []


def test_error_shapes(served) -> None:
    deployment, url, session, _, _ = served
    version = "3" if deployment == "cloud" else "2"
    not_found = session.get(f"{url}/rest/api/{version}/issue/PROJ-999")
    assert not_found.status_code == 404 and not_found.json() == load("error_404_issue.json")
    bad_create = session.post(
        f"{url}/rest/api/{version}/issue", json={"fields": {"project": {"key": "PROJ"}, "issuetype": {"name": "Task"}}}
    )
    assert bad_create.status_code == 400 and bad_create.json() == load("error_400_create.json")
    search = f"{url}/rest/api/3/search/jql" if deployment == "cloud" else f"{url}/rest/api/2/search"
    bad_jql = session.post(search, json={"jql": "foo = 1"})
    assert bad_jql.status_code == 400 and bad_jql.json() == load("error_400_jql.json")


def test_a_search_naming_a_key_jira_cannot_resolve_is_refused_whole(served) -> None:
    """Jira does not just match nothing: the whole search answers 400, one message per unresolvable key."""
    deployment, url, session, key, _ = served

    def search(jql: str) -> requests.Response:
        if deployment == "cloud":
            return session.post(f"{url}/rest/api/3/search/jql", json={"jql": jql, "fields": ["updated"]})
        return session.get(f"{url}/rest/api/2/search", params={"jql": jql, "fields": "updated"})

    unknown = load("error_400_jql_unknown_key.json")
    refused = search(f'project = PROJ AND key in ("{key}", "DELETED-1")')
    assert refused.status_code == 400 and missing_keys(unknown, refused.json()) == []
    assert refused.json()["errorMessages"] == unknown["errorMessages"]
    invalid = load("error_400_jql_invalid_key.json")
    not_keys = search("key in (0.0, 1.0)")
    assert not_keys.status_code == 400 and not_keys.json()["errorMessages"] == invalid["errorMessages"]
    assert search(f'key = "{key.lower()}"').status_code == 200  # keys resolve in any case
    found = search(f'project = PROJ AND key in ("{key}")')
    assert found.status_code == 200 and [issue["key"] for issue in found.json()["issues"]] == [key]


@pytest.mark.parametrize("deployment", ["cloud"])
def test_cloud_has_retired_the_offset_search(served) -> None:
    _, url, session, _, _ = served
    gone = session.get(f"{url}/rest/api/3/search", params={"jql": "project = PROJ"})
    assert gone.status_code == 410 and "CHANGE-2046" in gone.json()["errorMessages"][0]


def test_missing_keys_notices_drift() -> None:
    assert missing_keys({"a": {"b": 1, "c": [{"d": "x"}]}}, {"a": {"b": 2, "c": [{"d": "y"}]}}) == []
    assert missing_keys({"a": {"b": 1, "c": [{"d": "x"}]}}, {"a": {"c": [{}]}}) == ["$.a.b", "$.a.c[0].d"]
    assert missing_keys({"a": {"b": 1}}, {"a": "x"}) == ["$.a (not an object)"]
    assert missing_keys({"a": "text"}, {"a": 1}) == ["$.a (str expected, got int)"]
    assert missing_keys({"a": [{"b": 1}]}, {"a": {}}) == ["$.a (not a list)"]

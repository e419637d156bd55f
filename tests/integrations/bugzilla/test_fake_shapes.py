"""The fake Bugzilla answers like the recorded Bugzilla 5.0.4.1: same statuses, keys and JSON types.

Each case replays the request behind one recorded sample (samples/, from ../shared/reference/bugzilla)
against the fake, set up as the recording's server was: bug 1 with a description, a public and a private
comment, then RESOLVED FIXED with a comment; bug 2 with a private description and a private comment;
dev@example.com a plain user (no insider). If the fake drifts from Bugzilla, the client tests test a fiction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fakes.shapes import missing_keys
from tests.integrations.bugzilla.fake_server import ADMIN_KEY, DEV_KEY, RunningFakeBugzilla, start_fake_bugzilla

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> tuple[int, Any]:
    return int((SAMPLES / f"{name}.status").read_text()), json.loads((SAMPLES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def server() -> Iterator[RunningFakeBugzilla]:
    with start_fake_bugzilla() as running:
        fake = running.fake
        one = fake.add_bug("Probe bug one", description="First comment (the description)\r\nline 2  \n")
        two = fake.add_bug("Probe bug two", description="desc two", description_private=True)
        fake.add_comment(one, "Second comment, public")
        fake.add_comment(one, "Third comment, private", private=True)
        fake.add_comment(two, "private note via update", private=True)
        yield running


def call(server: RunningFakeBugzilla, method: str, path: str, *, key: str | None = ADMIN_KEY, **kwargs: Any):
    params = dict(kwargs.pop("params", {}))
    if key:
        params["api_key"] = key
    return requests.request(method, server.url + path, params=params, timeout=10, **kwargs)


CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("version", "GET", "/rest/version", {}),
    ("extensions", "GET", "/rest/extensions", {}),
    ("time", "GET", "/rest/time", {}),
    ("timezone", "GET", "/rest/timezone", {}),
    ("valid_login", "GET", "/rest/valid_login", {"params": {"login": "admin@example.com"}}),
    ("user_whoami", "GET", "/rest/whoami", {}),
    ("user_get", "GET", "/rest/user", {"params": {"names": "admin@example.com"}}),
    ("product_accessible", "GET", "/rest/product_accessible", {}),
    ("product_get", "GET", "/rest/product", {"params": {"names": "TestProduct"}}),
    ("field_status", "GET", "/rest/field/bug/bug_status", {}),
    ("bug_get", "GET", "/rest/bug/1", {}),
    ("bug_get_anon", "GET", "/rest/bug/1", {"key": None}),
    ("bug_multi", "GET", "/rest/bug", {"params": {"id": "1,2"}}),
    ("bug_not_found", "GET", "/rest/bug/999", {}),
    ("bad_api_key", "GET", "/rest/bug/1", {"key": "nope"}),
    ("auth_query_get", "GET", "/rest/bug/1", {"params": {"include_fields": "id,update_token"}}),
    (
        "auth_header_get",
        "GET",
        "/rest/bug/1",
        {"key": None, "params": {"include_fields": "id,update_token"}, "headers": {"X-BUGZILLA-API-KEY": ADMIN_KEY}},
    ),
    (
        "auth_basic",
        "GET",
        "/rest/bug/1",
        {"key": None, "params": {"include_fields": "id,update_token"}, "auth": ("admin@example.com", "pw")},
    ),
    ("comments_get", "GET", "/rest/bug/1/comment", {}),
    ("comments_get_anon", "GET", "/rest/bug/1/comment", {"key": None}),
    ("comments_as_noninsider", "GET", "/rest/bug/1/comment", {"key": DEV_KEY}),
    ("comments_bug2_admin", "GET", "/rest/bug/2/comment", {}),
    ("comments_bug2_as_noninsider", "GET", "/rest/bug/2/comment", {"key": DEV_KEY}),
    ("comments_get_new_since", "GET", "/rest/bug/1/comment", {"params": {"new_since": "2000-01-01T00:00:00Z"}}),
    ("comment_by_id", "GET", "/rest/bug/comment/3", {}),
    ("history_get", "GET", "/rest/bug/2/history", {}),
    (
        "search_last_change",
        "GET",
        "/rest/bug",
        {"params": {"last_change_time": "2000-01-01T00:00:00Z", "limit": 1, "offset": 0, "order": "bug_id"}},
    ),
    (
        "search_last_change_p2",
        "GET",
        "/rest/bug",
        {"params": {"last_change_time": "2000-01-01T00:00:00Z", "limit": 1, "offset": 1, "order": "bug_id"}},
    ),
    (
        "search_time_space_format",
        "GET",
        "/rest/bug",
        {"params": {"last_change_time": "2000-01-01 00:00:00", "include_fields": "id,last_change_time"}},
    ),
    (
        "search_time_date_only",
        "GET",
        "/rest/bug",
        {"params": {"last_change_time": "2000-01-01", "include_fields": "id,last_change_time"}},
    ),
    (
        "search_time_offset",
        "GET",
        "/rest/bug",
        {"params": {"last_change_time": "2000-01-01T02:00:00+02:00", "include_fields": "id,last_change_time"}},
    ),
    ("search_time_relative", "GET", "/rest/bug", {"params": {"last_change_time": "-1h"}}),
    ("search_bad_time", "GET", "/rest/bug", {"params": {"last_change_time": "yesterday"}}),
    ("search_future", "GET", "/rest/bug", {"params": {"last_change_time": "2099-01-01T00:00:00Z"}}),
    (
        "search_order_changeddate",
        "GET",
        "/rest/bug",
        {"params": {"order": "changeddate", "include_fields": "id,last_change_time"}},
    ),
    (
        "search_include_fields",
        "GET",
        "/rest/bug",
        {"params": {"include_fields": "id,summary,last_change_time,status,resolution", "limit": 10}},
    ),
    ("search_status_open", "GET", "/rest/bug", {"params": {"status": ["CONFIRMED", "UNCONFIRMED", "IN_PROGRESS"]}}),
    ("search_all_fields", "GET", "/rest/bug", {"params": {"product": "TestProduct"}}),
    ("search_count_only", "GET", "/rest/bug", {"params": {"count_only": 1}}),
    ("search_limit0", "GET", "/rest/bug", {"params": {"limit": 0, "include_fields": "id"}}),
    ("search_offset_no_limit", "GET", "/rest/bug", {"params": {"offset": 1}}),
    ("search_no_criteria", "GET", "/rest/bug", {}),
    ("search_anon", "GET", "/rest/bug", {"key": None, "params": {"include_fields": "id"}}),
    (
        "bug_create_missing_opsys",
        "POST",
        "/rest/bug",
        {"json": {"product": "TestProduct", "component": "TestComponent", "version": "unspecified", "summary": "x"}},
    ),
    (
        "bug_create_header_only",
        "POST",
        "/rest/bug",
        {"key": None, "headers": {"X-BUGZILLA-API-KEY": ADMIN_KEY}, "json": {"product": "TestProduct", "summary": "x"}},
    ),
    (
        "header_only_put",
        "PUT",
        "/rest/bug/1",
        {"key": None, "headers": {"X-BUGZILLA-API-KEY": ADMIN_KEY}, "json": {"summary": "x"}},
    ),
    ("bug_update_invalid_transition", "PUT", "/rest/bug/1", {"json": {"status": "NEW"}}),
    (
        "comment_private_as_noninsider",
        "POST",
        "/rest/bug/1/comment",
        {"key": DEV_KEY, "json": {"comment": "x", "is_private": True}},
    ),
]


@pytest.mark.parametrize(("name", "method", "path", "options"), CASES, ids=[case[0] for case in CASES])
def test_answers_like_the_recording(
    server: RunningFakeBugzilla, name: str, method: str, path: str, options: dict[str, Any]
) -> None:
    status, expected = sample(name)
    answer = call(server, method, path, **options)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert missing_keys(expected, body) == []
    if isinstance(expected, dict):
        assert set(body) == set(expected)  # nothing the recording lacks at the top ("faults" only on GET /bug/N)
        if expected.get("error"):
            assert body == expected  # code, message and documentation as recorded
        for listing in ("bugs",):
            if (
                isinstance(expected.get(listing), list)
                and expected[listing]
                and "update_token" not in expected[listing][0]
            ):
                assert all("update_token" not in item for item in body[listing])


def test_comment_visibility_and_counts(server: RunningFakeBugzilla) -> None:
    def counts(key: str | None, bug: int) -> list[tuple[int, bool]]:
        answer = call(server, "GET", f"/rest/bug/{bug}/comment", key=key).json()
        return [(c["count"], c["is_private"]) for c in answer["bugs"][str(bug)]["comments"]]

    assert counts(ADMIN_KEY, 1) == [(0, False), (1, False), (2, True)]
    assert counts(DEV_KEY, 1) == [(0, False), (1, False)]
    assert counts(DEV_KEY, 2) == []
    description = call(server, "GET", "/rest/bug/1/comment").json()["bugs"]["1"]["comments"][0]["text"]
    assert description == "First comment (the description)\nline 2"  # CRLF -> LF, trailing whitespace trimmed
    many = call(server, "GET", "/rest/bug/1/comment", params={"ids": [2]}).json()
    assert set(many["bugs"]) == {"1", "2"}


def test_writes_answer_like_the_recording(server: RunningFakeBugzilla) -> None:
    create = {
        "product": "TestProduct",
        "component": "TestComponent",
        "version": "unspecified",
        "summary": "Created in the shape test",
        "description": "d",
        "op_sys": "All",
        "rep_platform": "All",
    }
    made = call(server, "POST", "/rest/bug", json=create)
    status, expected = sample("bug_create")
    assert made.status_code == status and missing_keys(expected, made.json()) == []
    in_body = call(server, "POST", "/rest/bug", key=None, json={**create, "api_key": ADMIN_KEY})
    status, expected = sample("bug_create_key_in_body")
    assert in_body.status_code == status and set(in_body.json()) == set(expected)
    bug = made.json()["id"]
    for name, body in (
        ("comment_add", {"comment": "public"}),
        ("comment_add_private", {"comment": "p", "is_private": True}),
    ):
        status, expected = sample(name)
        answer = call(server, "POST", f"/rest/bug/{bug}/comment", json=body)
        assert answer.status_code == status and set(answer.json()) == set(expected)
    resolved = call(
        server,
        "PUT",
        f"/rest/bug/{bug}",
        json={"status": "RESOLVED", "resolution": "FIXED", "comment": {"body": "done"}},
    )
    status, expected = sample("bug_update")
    assert resolved.status_code == status and missing_keys(expected, resolved.json()) == []
    assert resolved.json()["bugs"][0]["changes"] == expected["bugs"][0]["changes"]
    status, expected = sample("history_after_update")
    history = call(server, "GET", f"/rest/bug/{bug}/history")
    assert history.status_code == status and missing_keys(expected, history.json()) == []
    assert history.json()["bugs"][0]["history"][0]["changes"] == expected["bugs"][0]["history"][0]["changes"]
    comments = call(server, "GET", f"/rest/bug/{bug}/comment").json()["bugs"][str(bug)]["comments"]
    private_id = next(c["id"] for c in comments if c["is_private"])
    status, expected = sample("comment_set_private")
    hidden = call(server, "PUT", f"/rest/bug/{bug}", json={"comment_is_private": {str(private_id): False}})
    assert hidden.status_code == status and hidden.json()["bugs"][0]["changes"] == {}
    no_resolution = call(server, "PUT", f"/rest/bug/{bug}", json={"status": "CONFIRMED"})
    assert (
        no_resolution.status_code == 200
        and call(server, "GET", f"/rest/bug/{bug}").json()["bugs"][0]["resolution"] == ""
    )
    missing = call(server, "PUT", f"/rest/bug/{bug}", json={"status": "RESOLVED"})
    assert missing.status_code == 400 and missing.json()["code"] == 121


def test_search_is_inclusive_and_has_no_default_order(server: RunningFakeBugzilla) -> None:
    bug = call(server, "GET", "/rest/bug/1").json()["bugs"][0]
    boundary = call(
        server, "GET", "/rest/bug", params={"last_change_time": bug["last_change_time"], "include_fields": "id"}
    )
    assert 1 in [b["id"] for b in boundary.json()["bugs"]]
    unordered = [b["id"] for b in call(server, "GET", "/rest/bug", params={"include_fields": "id"}).json()["bugs"]]
    assert unordered != sorted(unordered)
    after = call(
        server,
        "GET",
        "/rest/bug",
        params={"f1": "bug_id", "o1": "greaterthan", "v1": 1, "order": "bug_id", "include_fields": "id"},
    )
    assert next(b["id"] for b in after.json()["bugs"]) == 2


def test_bmo_flavour_honours_the_header_and_has_whoami() -> None:
    with start_fake_bugzilla(flavor="bmo") as running:
        whoami = requests.get(running.url + "/rest/whoami", headers={"X-BUGZILLA-API-KEY": ADMIN_KEY}, timeout=10)
        assert whoami.status_code == 200 and whoami.json()["login"] == "admin@example.com"
        assert "Webhooks" in requests.get(running.url + "/rest/extensions", timeout=10).json()["extensions"]


def test_injected_429_is_bmo_html_without_retry_after(server: RunningFakeBugzilla) -> None:
    server.fake.inject(429, path=r"^/rest/version$")
    limited = call(server, "GET", "/rest/version")
    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    assert call(server, "GET", "/rest/version").status_code == 200


def test_missing_keys_notices_drift() -> None:
    assert missing_keys({"a": {"b": 1}}, {"a": {}}) == ["$.a.b"]
    assert missing_keys({"a": "text"}, {"a": 1}) == ["$.a (str expected, got int)"]

"""The fake answers in the documented shapes (every key of each fixture is in its answer), and behaves as
documented where that is surprising. Sources per fixture: fixtures/README.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fakes.shapes import missing_keys
from tests.integrations.salesforce.fake_server import (
    API_VERSION,
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    STATIC_TOKEN,
    RunningFakeSalesforce,
    start_fake_salesforce,
)

FIXTURES = Path(__file__).parent / "fixtures"
DATA = f"/services/data/v{API_VERSION}"
QUERY = (
    "SELECT Id, CaseNumber, Subject, Description, Status, IsClosed, Priority, Origin, Type, OwnerId, Owner.Name, "
    "ContactId, Contact.Name, SuppliedName, CreatedDate, LastModifiedDate, SystemModstamp, ClosedDate, "
    "(SELECT Id, CommentBody, IsPublished, CreatedDate, LastModifiedDate, CreatedBy.Name FROM CaseComments "
    "ORDER BY CreatedDate ASC, Id ASC) FROM Case ORDER BY SystemModstamp ASC, Id ASC"
)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def served() -> Iterator[tuple[RunningFakeSalesforce, requests.Session]]:
    with start_fake_salesforce(child_inline_cap=2, default_batch_size=200) as server:
        fake = server.fake
        first = fake.add_case("Printer jam", description="Tray 2", status="Working", priority="High")
        for n in range(3):
            fake.add_comment(first, f"comment {n}", published=n != 1)
        fake.add_case("VPN drops", status="Closed", contact=None)
        for i in range(250):
            fake.add_case(f"filler {i}")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {STATIC_TOKEN}"
        yield server, session
        session.close()


def test_query_pages_and_child_relationships(served: tuple[RunningFakeSalesforce, requests.Session]) -> None:
    server, session = served
    page = session.get(f"{server.url}{DATA}/query", params={"q": QUERY}).json()
    assert missing_keys(load("query_cases_with_comments.json"), page) == []
    first, second = page["records"][:2]
    assert first["CaseComments"]["done"] is False and second["CaseComments"] is None  # empty relationship: null
    child = session.get(server.url + first["CaseComments"]["nextRecordsUrl"]).json()
    assert missing_keys(load("query_more_child_page.json"), child) == []
    assert [r["CommentBody"] for r in child["records"]] == ["comment 2"]


def test_children_count_toward_the_batch_size(served: tuple[RunningFakeSalesforce, requests.Session]) -> None:
    server, session = served
    page = session.get(f"{server.url}{DATA}/query", params={"q": QUERY}).json()
    inline_children = sum(len((r["CaseComments"] or {}).get("records", [])) for r in page["records"])
    assert len(page["records"]) + inline_children == 200 and page["totalSize"] == 252


def test_parent_query_more_invalidates_the_previous_child_cursors(
    served: tuple[RunningFakeSalesforce, requests.Session],
) -> None:
    server, session = served
    page = session.get(f"{server.url}{DATA}/query", params={"q": QUERY}).json()
    child_url = page["records"][0]["CaseComments"]["nextRecordsUrl"]
    assert session.get(server.url + page["nextRecordsUrl"]).status_code == 200
    stale = session.get(server.url + child_url)
    assert stale.status_code == 400 and stale.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_comment_parent_query_shape(served: tuple[RunningFakeSalesforce, requests.Session]) -> None:
    server, session = served
    soql = "SELECT ParentId FROM CaseComment WHERE SystemModstamp >= 2000-01-01T00:00:00Z ORDER BY SystemModstamp ASC, Id ASC"
    answer = session.get(f"{server.url}{DATA}/query", params={"q": soql}).json()
    assert missing_keys(load("query_comment_parents.json"), answer) == []


def test_get_deleted_shape_and_rules(served: tuple[RunningFakeSalesforce, requests.Session]) -> None:
    server, session = served
    victim = next(iter(server.fake.cases))
    now = datetime.now(UTC)
    server.fake.delete_case(victim, when=now - timedelta(minutes=10))
    url = f"{server.url}{DATA}/sobjects/Case/deleted/"

    def ask(start: datetime, end: datetime) -> requests.Response:
        return session.get(url, params={"start": start.isoformat(), "end": end.isoformat()})

    answer = ask(now - timedelta(hours=1), now)
    assert (
        missing_keys(load("get_deleted.json"), answer.json()) == []
        and answer.json()["deletedRecords"][0]["id"] == victim
    )
    for start, end in ((now - timedelta(seconds=50), now), (now - timedelta(days=16), now)):
        refused = ask(start, end)
        assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_error_shapes(served: tuple[RunningFakeSalesforce, requests.Session]) -> None:
    server, session = served
    expired = requests.get(
        f"{server.url}{DATA}/query", params={"q": "SELECT Id FROM Case"}, headers={"Authorization": "Bearer nope"}
    )
    assert expired.status_code == 401 and expired.json() == load("error_invalid_session_id.json")
    missing = session.get(f"{server.url}{DATA}/sobjects/Case/500000000000000AAA")
    assert missing.status_code == 404 and missing.json() == load("error_not_found.json")
    bad = session.get(
        f"{server.url}{DATA}/query", params={"q": "SELECT Id FROM Case WHERE A = 'x' AND B = 'y' OR C = 'z'"}
    )
    assert bad.status_code == 400 and bad.json() == load("error_malformed_query.json")
    case_id = next(iter(server.fake.cases))
    long = session.post(
        f"{server.url}{DATA}/sobjects/CaseComment", json={"ParentId": case_id, "CommentBody": "x" * 4001}
    )
    assert long.status_code == 400 and missing_keys(load("error_string_too_long.json"), long.json()) == []
    server.fake.api_limit = server.fake.api_used
    limited = session.get(f"{server.url}{DATA}/query", params={"q": "SELECT Id FROM Case"})
    assert limited.status_code == 403 and limited.json() == load("error_request_limit_exceeded.json")
    assert "Retry-After" not in limited.headers and limited.headers["Sforce-Limit-Info"].startswith("api-usage=")
    too_long = session.get(
        f"{server.url}{DATA}/query", params={"q": "SELECT Id FROM Case WHERE Subject = '" + "x" * 17000 + "'"}
    )
    assert too_long.status_code == 414


def test_writes_and_tokens(served: tuple[RunningFakeSalesforce, requests.Session]) -> None:
    server, session = served
    created = session.post(f"{server.url}{DATA}/sobjects/Case", json={"Subject": "New one", "Status": "New"})
    assert created.status_code == 201 and missing_keys(load("create_success.json"), created.json()) == []
    patched = session.patch(f"{server.url}{DATA}/sobjects/Case/{created.json()['id']}", json={"Status": "Working"})
    assert patched.status_code == 204 and patched.content == b""
    token = f"{server.url}/services/oauth2/token"
    cc = requests.post(
        token, data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )
    assert missing_keys(load("token_client_credentials.json"), cc.json()) == [] and "expires_in" not in cc.json()
    rt = requests.post(
        token,
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
        },
    )
    assert missing_keys(load("token_refresh.json"), rt.json()) == []
    bad = requests.post(token, data={"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": "nope"})
    assert bad.status_code == 400 and bad.json() == load("token_error_invalid_grant.json")
    info = session.get(f"{server.url}/services/oauth2/userinfo")
    assert missing_keys(load("userinfo.json"), info.json()) == []


def test_the_identity_service_refuses_a_bad_session_with_403_bad_oauth_token(
    served: tuple[RunningFakeSalesforce, requests.Session],
) -> None:
    """Not the REST API's 401 JSON: `userinfo` answers 403 and one plain-text word (Salesforce Mobile SDK for
    Android PR #2430: "It returns a 403 for an invalid access token"; jsforce PR #736 and nforce read the same
    `Bad_OAuth_Token` body from the identity URL). The data API keeps answering 401 INVALID_SESSION_ID."""
    server, _ = served
    bad = {"Authorization": "Bearer 00Dx!expired"}
    info = requests.get(f"{server.url}/services/oauth2/userinfo", headers=bad)
    assert (info.status_code, info.text) == (403, "Bad_OAuth_Token")
    data = requests.get(f"{server.url}{DATA}/query", params={"q": QUERY}, headers=bad)
    assert data.status_code == 401 and data.json() == load("error_invalid_session_id.json")


@pytest.mark.parametrize(("shape", "empty"), [("null", None), ("empty", {"totalSize": 0, "done": True, "records": []})])
def test_an_empty_child_relationship_comes_in_either_undocumented_shape(shape: str, empty: object) -> None:
    """Salesforce documents neither; both reach the client (test_listing_and_fetch reads both)."""
    with start_fake_salesforce(empty_children=shape) as server:
        server.fake.add_case("No comments yet")
        headers = {"Authorization": f"Bearer {STATIC_TOKEN}"}
        page = requests.get(f"{server.url}{DATA}/query", params={"q": QUERY}, headers=headers).json()
    assert page["records"][0]["CaseComments"] == empty

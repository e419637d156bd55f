"""Pure parts on documented shapes: ids, SOQL quoting and limits, Case → snapshot, status both ways.

Shapes: fixtures/README.md. SOQL rules: SOQL and SOSL Reference ("Quoted String Escape Sequences",
"Date Formats and Date Literals in WHERE"); limits: knowledge article 000386264 (URI + headers
16,384 bytes) and "SOQL and SOSL Limits" (100,000-character statements, 4,000-character strings).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_manager.collectors.tickets.errors import ConfigError, UnknownFieldError
from data_manager.collectors.tickets.integrations.salesforce import _mapping, _soql
from data_manager.collectors.tickets.integrations.salesforce._ids import to_18
from data_manager.collectors.tickets.integrations.salesforce.backend import SalesforceBackend
from data_manager.collectors.tickets.model import Status
from data_manager.collectors.tickets.normalise import normalise
from tests.integrations.salesforce import fake_soql
from tests.integrations.salesforce.fake_server import id18

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> object:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# -- ids -------------------------------------------------------------------------------------------
def test_15_and_18_character_ids_name_the_same_record() -> None:
    assert to_18("500xx000000bZ3Q") == "500xx000000bZ3QAAU"
    assert to_18("500xx000000bZ3QAAU") == "500xx000000bZ3QAAU"
    assert to_18("500xx000000bZ3Qaau") == "500xx000000bZ3QAAU"  # the suffix is case-insensitive
    assert to_18("500XX000000BZ3Q") != to_18("500xx000000bZ3Q")  # the 15-character part is not


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=15, max_size=15))
def test_checksum_agrees_with_the_fakes_independent_copy(id15: str) -> None:
    assert to_18(id15) == id18(id15)


@pytest.mark.parametrize("bad", ["", "500", "500xx000000bZ3QAAUX", "500xx000000bZ3'", "500xx00000 0bZ3Q", "x" * 16])
def test_anything_else_is_not_an_id(bad: str) -> None:
    with pytest.raises(ValueError):
        to_18(bad)


# -- SOQL ------------------------------------------------------------------------------------------
@given(st.text(max_size=200))
def test_every_quoted_value_reads_back_as_exactly_that_string(value: str) -> None:
    """Whatever the value (quotes, backslashes, newlines, `' OR Id != '`), it stays one string literal."""
    tokens = fake_soql.tokenize(f"Subject = {_soql.quote(value)}")
    assert [t.kind for t in tokens] == ["word", "op", "string"]
    assert tokens[2].value == value


def test_injection_through_a_value_stays_inside_the_literal() -> None:
    evil = "x' OR Subject != 'y"
    query = fake_soql.parse(f"SELECT Id FROM Case WHERE Subject = {_soql.quote(evil)}")
    assert query.where is not None
    assert query.where.test(lambda name: evil) and not query.where.test(lambda name: "other")


def test_datetime_literals_are_unquoted_utc_seconds() -> None:
    moment = datetime(2024, 5, 1, 11, 55, 7, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert _soql.datetime_literal(moment) == "2024-05-01T09:55:07Z"
    assert _soql.datetime_literal(datetime(2024, 5, 1, 9, 0)) == "2024-05-01T09:00:00Z"  # naive = UTC
    assert fake_soql.tokenize(_soql.datetime_literal(moment))[0].kind == "datetime"


def test_queries_over_the_uri_limit_are_refused_before_sending() -> None:
    with pytest.raises(_soql.QueryTooLong):
        _soql.check_length("SELECT Id FROM Case WHERE Subject = " + _soql.quote("é" * 3000))
    with pytest.raises(_soql.QueryTooLong):
        _soql.quote("x" * 4001)


def test_in_lists_are_split_to_fit_the_limits() -> None:
    ids = [id18(f"5005e{n:010d}") for n in range(1500)]

    def render(run: list[str]) -> str:
        return f"SELECT Id FROM Case WHERE Id IN {_soql.in_list(run)}"

    runs = list(_soql.chunk_for_in(ids, render))
    assert [i for run in runs for i in run] == ids
    assert all(len(run) <= 200 for run in runs)
    assert all(_soql.encoded_length(render(run)) <= _soql.MAX_ENCODED_QUERY_BYTES for run in runs)


@pytest.mark.parametrize(
    "clause",
    [
        "Origin = 'Web') OR (Id != null",
        "Origin = 'Web' ORDER BY Id",
        "Origin = 'Web'; DELETE",
        "Origin = 'Web",
        "Id IN (SELECT x FROM y)",
    ],
)
def test_soql_where_must_be_one_condition(clause: str) -> None:
    with pytest.raises(ConfigError, match=r"soql_where"):
        _soql.validate_where(clause, "data_manager.sources.tickets.salesforce.soql_where")


def test_soql_where_accepts_conditions_with_quoted_keywords() -> None:
    clause = "Origin = 'Web' AND (Subject LIKE '%ORDER BY%' OR Priority = 'High')"
    assert _soql.validate_where(clause, "k") == clause
    fake_soql.parse(f"SELECT Id FROM Case WHERE ({clause})")


def test_the_fake_rejects_what_salesforce_rejects() -> None:
    for soql in ("SELECT Id FROM Case WHERE Subject = 'a\\qb'", "SELECT Id FROM Case WHERE A = 1 AND B = 2 OR C = 3"):
        with pytest.raises(fake_soql.SoqlError) as caught:
            fake_soql.parse(soql)
        assert caught.value.code == "MALFORMED_QUERY"


# -- mapping ---------------------------------------------------------------------------------------
def test_case_with_comments_maps_to_a_snapshot() -> None:
    page = load("query_cases_with_comments.json")
    case = page["records"][0]  # type: ignore[index]
    comments = _mapping.comment_records(case) + load("query_more_child_page.json")["records"]  # type: ignore[index]
    snapshot = _mapping.case_snapshot(case, comments, instance_url="https://acme.my.salesforce.com/")
    assert snapshot.ticket_id == "500xx000000bZ3QAAU"
    assert snapshot.data.title == "Printer jam" and snapshot.data.description == "Tray 2 jams on every job."
    assert snapshot.data.status is Status.IN_PROGRESS and snapshot.status_name == "Working"
    assert (snapshot.data.assignee, snapshot.data.requester, snapshot.data.communication) == (
        "Ann Agent",
        "Zoë Customer",
        "Web",
    )
    assert [c.text for c in snapshot.comments] == ["Replaced toner", "Works again, closing."]  # private one left out
    assert [c.author for c in snapshot.comments] == ["Ann Agent", "Bob Müller"]
    assert snapshot.comments[0].at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert snapshot.updated_at == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)  # the newest comment counts
    assert snapshot.url == "https://acme.my.salesforce.com/lightning/r/Case/500xx000000bZ3QAAU/view"
    assert snapshot.extra["case_number"] == "00001026" and snapshot.extra["priority"] == "High"
    assert _mapping.display_name(snapshot) == "Case 00001026: Printer jam"
    private = _mapping.case_snapshot(case, comments, instance_url="https://x", include_private_comments=True)
    assert "Internal: the customer's contract has lapsed" in [c.text for c in private.comments]


def test_closed_case_without_comments_or_contact() -> None:
    case = load("query_cases_with_comments.json")["records"][1]  # type: ignore[index]
    snapshot = _mapping.case_snapshot(case, _mapping.comment_records(case), instance_url="https://x")
    assert snapshot.comments == () and snapshot.data.status is Status.CLOSED
    assert snapshot.data.requester == "Walk-in Customer" and snapshot.data.assignee == "Tier 1 Queue"
    assert snapshot.data.description == ""


@pytest.mark.parametrize(
    ("name", "closed", "expected"),
    [("New", False, Status.OPEN), ("Working", False, Status.IN_PROGRESS), ("Escalated", False, Status.IN_PROGRESS),
     ("Closed", True, Status.CLOSED), ("Solved by bot", True, Status.CLOSED), ("Triage", False, Status.OPEN),
     ("waiting on customer", False, Status.IN_PROGRESS), ("Resolved - Fixed", True, Status.RESOLVED)],
)  # fmt: skip
def test_status_read(name: str, closed: bool, expected: Status) -> None:
    status_map = {"Waiting on Customer": Status.IN_PROGRESS, "Resolved - Fixed": Status.RESOLVED}
    assert _mapping.map_status(name, closed, status_map) is expected


def test_status_written_back_uses_the_org_names() -> None:
    status_map = {"Waiting on Customer": Status.IN_PROGRESS, "Resolved - Fixed": Status.RESOLVED}
    assert _mapping.write_status(Status.RESOLVED, status_map) == "Resolved - Fixed"
    assert _mapping.write_status(Status.OPEN, status_map) == "New"
    assert _mapping.write_status(Status.CLOSED) == "Closed"


def test_fields_written_and_unknown_ones_refused() -> None:
    body = _mapping.case_fields_for(
        {"title": "T", "status": "in progress", "assignee": None, "custom_fields": {"Priority": "High"}}, origin="Web"
    )
    assert body == {"Subject": "T", "Status": "Working", "Priority": "High", "Origin": "Web"}
    with pytest.raises(UnknownFieldError, match="nonsense"):
        _mapping.case_fields_for({"nonsense": 1})


def test_display_name_carries_the_case_number() -> None:
    """The display-name hook: `Case <CaseNumber>: <Subject>`; no subject, just the number; no number, the standard."""
    case = load("query_cases_with_comments.json")["records"][0]  # type: ignore[index]
    named = _mapping.case_snapshot(case, [], instance_url="https://x")
    untitled = _mapping.case_snapshot({**case, "Subject": None}, [], instance_url="https://x")
    unnumbered = _mapping.case_snapshot({**case, "CaseNumber": None}, [], instance_url="https://x")
    assert (_mapping.display_name(named), _mapping.display_name(untitled)) == (
        "Case 00001026: Printer jam",
        "Case 00001026",
    )
    assert _mapping.display_name(unnumbered) is None
    resource = normalise("salesforce", named, display_name=SalesforceBackend("https://x", "t").display_name(named))
    assert resource.get_metadata().display_name == "Case 00001026: Printer jam"

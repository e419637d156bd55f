"""The pure mappings on the recorded Bugzilla 5.0.4.1 answers (samples/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from data_manager.collectors.tickets.errors import PermanentError, TransientError
from data_manager.collectors.tickets.http import NotFoundError
from data_manager.collectors.tickets.integrations.bugzilla import mapping
from data_manager.collectors.tickets.integrations.bugzilla.client import CredentialsRefused, error_from
from data_manager.collectors.tickets.model import Status

SAMPLES = Path(__file__).parent / "samples"


def load(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def test_a_resolved_bug_with_description_comments_and_a_private_one() -> None:
    bug = load("bug_multi")["bugs"][0]
    comments = load("comments_after_update")["bugs"]["1"]["comments"]
    snapshot = mapping.snapshot(bug, comments, base_url="https://bz.example/")
    assert snapshot.ticket_id == "1"
    assert snapshot.data.title == "Probe bug one"
    assert snapshot.data.description == "First comment (the description)\nline 2"  # count 0, not a comment
    assert [c.text for c in snapshot.comments] == ["Second comment, public", "Closing as fixed"]  # private left out
    assert snapshot.comments[0].author == "admin@example.com"
    assert snapshot.comments[0].at.isoformat() == "2026-11-24T06:25:55+00:00"
    assert snapshot.data.status is Status.RESOLVED and snapshot.status_name == "RESOLVED FIXED"
    assert snapshot.data.assignee == "Probe Admin" and snapshot.data.requester == "Probe Admin"
    assert snapshot.url == "https://bz.example/show_bug.cgi?id=1"
    assert snapshot.project == "TestProduct"
    assert snapshot.updated_at.isoformat() == "2026-11-24T06:26:08+00:00"
    assert snapshot.extra["component"] == "TestComponent" and snapshot.extra["resolution"] == "FIXED"
    assert "priority" not in snapshot.extra  # "---" is no priority


def test_private_comments_kept_only_when_asked() -> None:
    comments = load("comments_after_update")["bugs"]["1"]["comments"]
    _, kept = mapping.description_and_comments(comments, include_private=True)
    assert [c.text for c in kept] == ["Second comment, public", "Third comment, private", "Closing as fixed"]


def test_a_non_insider_sees_gaps_and_maybe_no_description() -> None:
    gaps = load("comments_as_noninsider")["bugs"]["1"]["comments"]
    description, comments = mapping.description_and_comments(gaps, include_private=True)
    assert description.startswith("First comment") and [c.text for c in comments][-1] == "Closing as fixed"
    hidden = load("comments_bug2_as_noninsider")["bugs"]["2"]["comments"]
    assert mapping.description_and_comments(hidden, include_private=False) == ("", [])
    private_description = load("comments_bug2_admin")["bugs"]["2"]["comments"]
    assert mapping.description_and_comments(private_description, include_private=False) == ("", [])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("UNCONFIRMED", Status.OPEN),
        ("CONFIRMED", Status.OPEN),
        ("NEW", Status.OPEN),
        ("IN_PROGRESS", Status.IN_PROGRESS),
        ("ASSIGNED", Status.IN_PROGRESS),
        ("RESOLVED", Status.RESOLVED),
        ("VERIFIED", Status.RESOLVED),
        ("CLOSED", Status.CLOSED),
    ],
)
def test_status_both_ways(name: str, expected: Status) -> None:
    assert mapping.map_status(name) is expected
    assert name in mapping.write_candidates(expected)


def test_status_map_overrides_and_unknown_statuses() -> None:
    table = mapping.status_table({"WAITING": "in progress", "verified": "closed"})
    assert mapping.map_status("WAITING", True, table) is Status.IN_PROGRESS
    assert mapping.map_status("VERIFIED", False, table) is Status.CLOSED
    assert mapping.write_candidates(Status.IN_PROGRESS, table)[0] == "WAITING"
    assert mapping.map_status("DEFERRED", False) is Status.CLOSED and mapping.map_status("TRIAGE", True) is Status.OPEN
    with pytest.raises(ValueError, match="unknown status"):
        mapping.status_table({"X": "sleeping"})


def test_search_times_are_utc_whole_seconds() -> None:
    assert mapping.bz_time("2024-05-01T12:00:00.900+02:00") == "2024-05-01T10:00:00Z"


@pytest.mark.parametrize(
    ("sample", "status", "kind", "code"),
    [
        ("bug_not_found", 404, NotFoundError, 101),
        ("bug_update_invalid_transition", 404, PermanentError, 51),
        ("bug_create_missing_opsys", 400, PermanentError, 50),
        ("search_bad_time", 400, PermanentError, 56),
        ("bad_api_key", 400, CredentialsRefused, 306),
        ("bug_create_header_only", 401, CredentialsRefused, 410),
        ("comment_private_as_noninsider", 401, PermanentError, 113),
    ],
)
def test_error_bodies_become_errors_naming_the_code(sample: str, status: int, kind: type, code: int) -> None:
    body = load(sample)
    error = error_from(status, body, "GET /rest/bug/1")
    assert isinstance(error, kind) and not isinstance(error, TransientError)
    assert isinstance(error, NotFoundError) == (code == 101)  # only "no such bug" reads as a missing bug
    assert f"{code}" in str(error) and body["message"] in str(error)
    assert error_from(429, {"message": "slow down"}, "GET /rest/bug").__class__.__mro__.count(TransientError) == 1

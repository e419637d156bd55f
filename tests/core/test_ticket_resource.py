from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_manager.collectors.tickets import TicketResource
from data_manager.collectors.tickets.ticket_resource import MAX_HASH_LENGTH, resource_hash


def test_hash_and_filename_follow_the_spec() -> None:
    resource = TicketResource(ticket_id="PROJ-7", content="text", source_type="jira")
    assert resource.get_hash() == "jira_PROJ-7"
    assert resource.get_filename() == "jira_PROJ-7.txt"
    assert resource.get_content() == "text"


@pytest.mark.parametrize(
    ("ticket_id", "expected"),
    [
        ("a/b", "redmine_a_b"),
        ("a//b", "redmine_a_b"),  # runs collapse to one "_"
        ("../../etc/passwd", "redmine_.._.._etc_passwd"),
        ("..", "redmine_.."),
        ("a\0b", "redmine_a_b"),
        ("ünï cödé", "redmine__n_c_d_"),
        ("C:\\x", "redmine_C_x"),
        ("ok.1_2-3", "redmine_ok.1_2-3"),
    ],
)
def test_unsafe_characters_are_replaced(ticket_id: str, expected: str) -> None:
    assert TicketResource(ticket_id=ticket_id, content="", source_type="redmine").get_hash() == expected


def test_very_long_ids_are_bounded_and_stay_distinct() -> None:
    first = resource_hash("jira", "x" * 5000 + "1")
    second = resource_hash("jira", "x" * 5000 + "2")
    assert len(first) <= MAX_HASH_LENGTH and len(second) <= MAX_HASH_LENGTH
    assert first != second


@given(st.text(min_size=1, max_size=400))
def test_no_ticket_id_escapes_the_target_directory(ticket_id: str) -> None:
    name = TicketResource(ticket_id=ticket_id, content="", source_type="jira").get_filename()
    assert "/" not in name and "\\" not in name and "\0" not in name
    assert len(name.encode()) <= 255 - len(".meta.yaml")
    target = Path("/data/tickets")
    assert (target / name).resolve().parent == target.resolve()
    assert name not in {".", ".."} and os.path.basename(name) == name


def test_metadata_prefers_display_name_then_source_and_id() -> None:
    base = {"ticket_id": "42", "content": "", "source_type": "redmine"}
    assert (
        TicketResource(**base, metadata={"display_name": "Disk full", "url": "u"}).get_metadata().display_name
        == "Disk full"
    )
    assert (
        TicketResource(**base, metadata={"url": "https://rm/issues/42"}).get_metadata().display_name
        == "redmine:42"  # seed 000 line 102: from the metadata dict's display_name, else {source_type}:{ticket_id}
    )
    assert TicketResource(**base).get_metadata().display_name == "redmine:42"


def test_metadata_extra_holds_strings_and_identity() -> None:
    created = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    resource = TicketResource(
        ticket_id="42",
        content="",
        source_type="redmine",
        created_at=created,
        metadata={"display_name": "x", "comment_count": 3, "project": "ops", "missing": None},
    )
    extra = resource.get_metadata().extra
    assert extra == {
        "comment_count": "3",
        "project": "ops",
        "ticket_id": "42",
        "source_type": "redmine",
        "created_at": "2024-05-01T09:00:00+00:00",
    }


def test_created_at_is_empty_when_unset() -> None:
    # seed 000 line 103 (created_at always in extra) and line 149 (missing fields default to None/empty)
    assert TicketResource(ticket_id="1", content="", source_type="s").get_metadata().extra["created_at"] == ""


def test_default_metadata_is_not_shared_between_instances() -> None:
    first = TicketResource(ticket_id="1", content="", source_type="s")
    first.metadata["x"] = "y"
    assert TicketResource(ticket_id="2", content="", source_type="s").metadata == {}

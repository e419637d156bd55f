"""`RedmineTickets.iter_changed` against a real Redmine: paging past 100, the incremental cursor, churn mid-listing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from data_manager.collectors.tickets.integrations.redmine import RedmineTickets
from data_manager.collectors.tickets.model import parse_datetime

if TYPE_CHECKING:
    from tests.integrations.redmine.redmine_server import RedmineAdmin, RedmineServer

pytestmark = [pytest.mark.redmine, pytest.mark.slow]  # creates ~160 issues
pytest_plugins = (
    "tests.integrations.redmine.redmine_server",
)  # its fixtures: redmine_server, redmine_admin, redmine_project

ISSUES = 130  # more than one page of Redmine's maximum 100


@pytest.fixture(scope="module")
def many_issues(redmine_admin: RedmineAdmin, redmine_project: dict[str, Any]) -> list[int]:
    return redmine_admin.create_issues(redmine_project["identifier"], ISSUES)


def test_full_listing_pages_through_every_issue_once(
    redmine_server: RedmineServer, redmine_project: dict[str, Any], many_issues: list[int]
) -> None:
    redmine = RedmineTickets(redmine_server.url, redmine_server.api_key, redmine_project["identifier"])

    refs = list(redmine.iter_changed(None))

    assert [int(ref.ticket_id) for ref in refs] == many_issues  # each once, ascending
    assert all(ref.updated_at is not None and ref.updated_at.tzinfo is not None for ref in refs)
    assert redmine.client.request_count == 1 + 2  # the key check, then two pages of at most 100


def test_incremental_listing_returns_only_what_changed(
    redmine_admin: RedmineAdmin,
    redmine_server: RedmineServer,
    redmine_project: dict[str, Any],
    many_issues: list[int],
    next_second: Callable[[], None],
) -> None:
    # Redmine's ">= T" is "> T - 1s" on a sub-second column: step two seconds past the bulk creation.
    next_second()
    next_second()
    noted, closed = many_issues[7], many_issues[120]
    redmine_admin.update_issue(noted, notes="a change")
    redmine_admin.update_issue(closed, status_id=redmine_admin.status_id("Closed"))
    since = parse_datetime(redmine_admin.get_issue(noted)["updated_on"])
    redmine = RedmineTickets(redmine_server.url, redmine_server.api_key, redmine_project["identifier"])

    refs = list(redmine.iter_changed(since))

    assert sorted(int(ref.ticket_id) for ref in refs) == sorted([noted, closed])  # closed ones included
    assert all(ref.updated_at is not None and ref.updated_at >= since for ref in refs)
    assert redmine.client.request_count == 2  # the key check and one page


def test_issues_changing_or_vanishing_mid_listing_hide_no_other_issue(
    redmine_admin: RedmineAdmin, redmine_server: RedmineServer
) -> None:
    """Offset paging would skip an issue for every one listed earlier that changes or is deleted meanwhile."""
    project = redmine_admin.create_project("rm-churn")
    try:
        created = redmine_admin.create_issues(project["identifier"], 30, prefix="churn")
        redmine = RedmineTickets(redmine_server.url, redmine_server.api_key, project["identifier"], page_size=10)
        listing = redmine.iter_changed(None)
        first_page = [int(next(listing).ticket_id) for _ in range(10)]
        assert first_page == created[:10]

        for number in first_page[:3]:  # listed already; now they move to the end of any updated_on order
            redmine_admin.update_issue(number, notes="touched while listing")
        for number in first_page[3:5]:  # listed already; now they are gone
            redmine_admin.delete_issue(number)
        redmine_admin.update_issue(created[15], status_id=redmine_admin.status_id("Rejected"))  # not yet listed
        added = redmine_admin.create_issue(project["identifier"], "born while listing")["id"]

        rest = [int(ref.ticket_id) for ref in listing]

        assert rest == [*created[10:], added]  # nothing skipped, nothing twice
        assert redmine.client.request_count == 1 + 4  # key check + pages of 10, 10, 10 and the last short one
    finally:
        redmine_admin.delete_project(project["identifier"])

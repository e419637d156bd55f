"""Reading through the fake over HTTP: one query page brings cases with all their comments.

Documented behaviour relied on (fixtures/README.md): `nextRecordsUrl` pages the outer query and any
child relationship that is not `done`; child records count toward the batch size; a parent
`queryMore` invalidates the previous page's child cursors (the fake answers INVALID_QUERY_LOCATOR if
the client asks in the wrong order); getDeleted reaches back ~15 days and ignores seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from data_manager.collectors.tickets.errors import PermanentError, TicketGone
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.model import Status
from tests.integrations.salesforce.conftest import SalesforceSetup


def snapshot_of(ref: object) -> TicketSnapshot | None:
    return getattr(ref, "snapshot", None)


def test_fetch_one_case_with_its_public_comments(salesforce: SalesforceSetup) -> None:
    fake = salesforce.fake
    case_id = fake.add_case("Printer jam", description="Tray 2", status="Working", owner="chen", contact="max")
    fake.add_comment(case_id, "Replaced toner", author="bob")
    fake.add_comment(case_id, "Internal: contract lapsed", published=False, author="ann")
    snapshot = salesforce.backend().fetch(case_id[:15])  # the UI's 15-character id works too
    assert snapshot.ticket_id == case_id
    assert (snapshot.data.title, snapshot.data.description, snapshot.data.status) == (
        "Printer jam",
        "Tray 2",
        Status.IN_PROGRESS,
    )
    assert (snapshot.data.assignee, snapshot.data.requester) == ("陈伟", "Max Mustermann")
    assert [(c.author, c.text) for c in snapshot.comments] == [("Bob Müller", "Replaced toner")]
    assert snapshot.extra["case_number"] == fake.case(case_id).number
    with_private = salesforce.backend(include_private_comments=True).fetch(case_id)
    assert [c.text for c in with_private.comments] == ["Replaced toner", "Internal: contract lapsed"]
    assert len(salesforce.requests_to("/query")) == 2  # one request per fetch


@pytest.mark.parametrize("empty_children", ["null", "empty"])
def test_a_case_without_comments_reads_the_same_in_either_empty_shape(
    make_salesforce: Callable[..., SalesforceSetup], empty_children: str
) -> None:
    """Undocumented (fixtures/README.md): an empty CaseComments relationship may be null or an empty result."""
    setup = make_salesforce(empty_children=empty_children)
    case_id = setup.fake.add_case("No comments yet")
    assert setup.backend().fetch(case_id).comments == ()
    assert [r.snapshot.comments for r in setup.backend().iter_changed(None) if r.snapshot] == [()]


@pytest.mark.parametrize(("cap", "queries"), [(199, 3), (200, 3), (499, 1)])
def test_a_case_with_hundreds_of_comments_is_paged_through_its_child_cursor(
    make_salesforce: Callable[..., SalesforceSetup], cap: int, queries: int
) -> None:
    """The inline child cap is undocumented (199/200 and 499/500 are both met): the client follows the child
    relationship's own nextRecordsUrl whenever it is not done, whatever the cap."""
    salesforce = make_salesforce(child_inline_cap=cap)
    fake = salesforce.fake
    case_id = fake.add_case("Long thread", created=datetime(2024, 1, 1, tzinfo=UTC))
    for n in range(1, 451):
        fake.add_comment(
            case_id, f"step {n}", published=n % 50 != 0, created=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
        )
    snapshot = salesforce.backend().fetch(case_id)
    assert [c.text for c in snapshot.comments] == [f"step {n}" for n in range(1, 451) if n % 50 != 0]
    assert len(salesforce.requests_to("/query")) == queries  # the query, then the child pages (e.g. 200 + 200 + 50)


def test_missing_deleted_and_out_of_scope_cases_are_gone(salesforce: SalesforceSetup) -> None:
    fake = salesforce.fake
    web = fake.add_case("From the web", origin="Web")
    phone = fake.add_case("By phone", origin="Phone")
    deleted = fake.add_case("Deleted")
    fake.delete_case(deleted)
    scoped = salesforce.backend(soql_where="Origin = 'Web'")
    assert scoped.fetch(web).ticket_id == web
    for gone in (phone, deleted, "500" + "0" * 15):
        with pytest.raises(TicketGone):
            scoped.fetch(gone)
    with pytest.raises(PermanentError, match="not a Salesforce record id"):
        scoped.fetch("500xx' OR Id != '")  # never reaches SOQL
    assert all("OR Id" not in query for _, _, query in fake.requests)


def test_full_listing_costs_about_one_request_per_page(make_salesforce: Callable[..., SalesforceSetup]) -> None:
    setup = make_salesforce(cases=450)  # 0-3 comments each
    backend = setup.backend(page_size=200)
    refs = list(backend.iter_changed(None))
    assert len(refs) == 450 and len({r.ticket_id for r in refs}) == 450
    comments = sum(len(c.comments) for c in setup.fake.cases.values())
    pages = len(setup.requests_to("/query"))
    assert pages <= (450 + comments) // 200 + 3  # children count toward the batch size
    if snapshot_of(refs[0]) is not None:  # the seam's TicketRef.snapshot
        for ref in refs:
            snap = snapshot_of(ref)
            assert snap is not None and snap.ticket_id == ref.ticket_id
            expected = [c.body for c in setup.fake.case(ref.ticket_id).comments if c.published]
            assert sorted(c.text for c in snap.comments) == sorted(expected)


def test_listing_drains_child_cursors_before_the_next_page(make_salesforce: Callable[..., SalesforceSetup]) -> None:
    setup = make_salesforce(child_inline_cap=5)
    for i in range(30):
        case_id = setup.fake.add_case(f"case {i}")
        for n in range(12):
            setup.fake.add_comment(case_id, f"c{n}")
    # Pages of a few cases, each with an open child cursor: asking for the next page first would be
    # answered 400 INVALID_QUERY_LOCATOR by the fake (test_fake_shapes shows it), failing the listing.
    refs = list(setup.backend(page_size=200).iter_changed(None))
    assert len(refs) == 30
    child_pages = [q for q in setup.requests_to("/query/") if q[0] == "GET"]
    assert len(child_pages) >= 30  # every case's remaining comments were fetched through its child cursor


def test_incremental_listing_finds_changes_comment_only_changes_and_deletions(salesforce: SalesforceSetup) -> None:
    fake = salesforce.fake
    old = datetime.now(UTC) - timedelta(hours=3)
    quiet = fake.add_case("Quiet", created=old)
    edited = fake.add_case("Edited", created=old)
    commented = fake.add_case("Commented", created=old)
    removed = fake.add_case("Removed", created=old)
    since = datetime.now(UTC) - timedelta(minutes=30)
    fake.update_case(edited, status="Escalated")
    fake.add_comment(commented, "a new comment does not touch the case's SystemModstamp")
    # getDeleted ignores seconds and covers whole minutes up to now: a deletion in the current minute is
    # reported by the next run (whose window starts resync_overlap_seconds earlier).
    fake.delete_case(removed, when=datetime.now(UTC) - timedelta(minutes=5))
    backend = salesforce.backend()
    refs = {r.ticket_id: r for r in backend.iter_changed(since)}
    assert set(refs) == {edited, commented, removed} and quiet not in refs
    assert snapshot_of(refs[removed]) is None and refs[removed].updated_at is not None
    with pytest.raises(TicketGone):
        backend.fetch(removed)  # what the resync does with it before removing the copy
    deleted_calls = salesforce.requests_to("/sobjects/Case/deleted")
    assert len(deleted_calls) == 1 and "start=" in deleted_calls[0][2]


def test_get_deleted_is_clamped_to_its_reach(salesforce: SalesforceSetup, caplog: pytest.LogCaptureFixture) -> None:
    backend = salesforce.backend()
    list(backend.iter_changed(datetime.now(UTC) - timedelta(days=40)))  # beyond 15 days: no INVALID_REPLICATION_DATE
    list(backend.iter_changed(datetime.now(UTC) - timedelta(seconds=10)))  # too short a window is widened
    assert "full resync" in caplog.text
    assert "getDeleted failed" not in caplog.text


def test_fetch_many_batches_ids_into_few_queries(make_salesforce: Callable[..., SalesforceSetup]) -> None:
    setup = make_salesforce(cases=250)
    ids = list(setup.fake.cases)
    missing = "500" + "1" * 15
    result = setup.backend().fetch_many([*ids, missing])
    assert all(isinstance(result[i], TicketSnapshot) for i in ids)
    assert isinstance(result[missing], TicketGone)
    assert len(setup.requests_to("/query")) <= 4


def test_a_session_expiring_in_the_middle_of_a_listing_is_renewed_once(
    make_salesforce: Callable[..., SalesforceSetup],
) -> None:
    setup = make_salesforce(cases=600)
    pages: list[str] = []

    def expire_after_first_page(fake: object, request: object) -> None:
        if "/query" in getattr(request, "path", ""):
            pages.append(getattr(request, "path", ""))
            if len(pages) == 1:
                setup.fake.expire_sessions()

    setup.fake.after_request.append(expire_after_first_page)
    backend = setup.backend("client_credentials", page_size=200)
    refs = list(backend.iter_changed(None))
    assert len({r.ticket_id for r in refs}) == 600
    assert backend.client.renewals == 1 and setup.fake.tokens_issued == 2
    assert len(pages) > 3  # the listing went on through later pages with the new session

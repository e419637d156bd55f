"""`BugzillaBackend` against the fake Bugzilla over HTTP: reading, listing, credentials, faults, secrecy."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from data_manager.collectors.tickets.errors import PermanentError, TicketGone, TransientError
from data_manager.collectors.tickets.integrations.bugzilla.client import CredentialsRefused
from data_manager.collectors.tickets.model import Status
from tests.integrations.bugzilla.conftest import BugzillaSetup
from tests.integrations.bugzilla.fake_server import ADMIN_KEY, DEV_KEY, GENERATED_START


def test_fetch_has_description_comments_and_no_private_ones(bugzilla: BugzillaSetup) -> None:
    fake = bugzilla.fake
    bug = fake.add_bug("Disk full", description="Clean /var")
    fake.add_comment(bug, "Cleaned", author="dev@example.com")
    fake.add_comment(bug, "internal note", private=True)
    fake.update_bug(bug, status="RESOLVED", resolution="FIXED")
    snapshot = bugzilla.backend().fetch(str(bug))
    assert snapshot.data.title == "Disk full" and snapshot.data.description == "Clean /var"
    assert [(c.author, c.text) for c in snapshot.comments] == [("dev@example.com", "Cleaned")]
    assert snapshot.data.status is Status.RESOLVED and snapshot.status_name == "RESOLVED FIXED"
    with_private = bugzilla.backend(include_private_comments=True).fetch(str(bug))
    assert [c.text for c in with_private.comments] == ["Cleaned", "internal note"]
    as_plain_user = bugzilla.backend(DEV_KEY, include_private_comments=True).fetch(str(bug))
    assert [c.text for c in as_plain_user.comments] == ["Cleaned"]  # not an insider: never sees them


def test_a_bug_with_hundreds_of_comments_costs_two_requests(bugzilla: BugzillaSetup) -> None:
    fake = bugzilla.fake
    bug = fake.add_bug("Chatty", description="d", at=GENERATED_START)
    for number in range(400):
        fake.add_comment(bug, f"c{number}", at=GENERATED_START + timedelta(seconds=number + 1))
    backend = bugzilla.backend()
    snapshot = backend.fetch(str(bug))
    assert [c.text for c in snapshot.comments] == [f"c{n}" for n in range(400)]
    assert backend.request_count == 2


def test_fetch_many_batches_bugs_and_comments(make_bugzilla) -> None:
    setup = make_bugzilla(bugs=250)
    backend = setup.backend()
    wanted = [str(i) for i in range(1, 251)] + ["9999"]
    result = backend.fetch_many(wanted)
    assert set(result) == set(wanted)
    assert isinstance(result["9999"], TicketGone)
    assert result["7"].comments[1].text == "Comment 2 on bug 7"
    assert backend.request_count == 6  # 3 batches of bugs + 3 of comments, not 2 x 251


def test_listing_pages_by_id_across_several_pages(make_bugzilla) -> None:
    setup = make_bugzilla(bugs=95)
    backend = setup.backend(page_size=20)
    refs = list(backend.iter_changed(None))
    assert [r.ticket_id for r in refs] == [str(i) for i in range(1, 96)]
    assert all(getattr(r, "snapshot", None) is None or r.snapshot.ticket_id == r.ticket_id for r in refs)
    assert backend.request_count == 10  # 5 pages x (bugs + their comments)
    searches = [s for s in setup.fake.requests if s.path == "/rest/bug"]
    assert all(s.query["order"] == ["bug_id"] and "offset" not in s.query for s in searches)


def test_an_unchanged_system_costs_one_request_and_the_boundary_is_inclusive(make_bugzilla) -> None:
    setup = make_bugzilla(bugs=5)
    newest = setup.fake.bugs[5].last_change_time
    backend = setup.backend()
    assert [r.ticket_id for r in backend.iter_changed(newest)] == ["5"]  # >= : the cursor's own bug comes back
    before = backend.request_count
    assert list(backend.iter_changed(newest + timedelta(seconds=1))) == []
    assert backend.request_count - before == 1


def test_listing_scoped_by_products(make_bugzilla) -> None:
    setup = make_bugzilla()
    setup.fake.seed(10, products=["TestProduct", "OtherProduct"])
    refs = list(setup.backend(products=["OtherProduct"]).iter_changed(None))
    assert [r.ticket_id for r in refs] == ["2", "4", "6", "8", "10"]
    assert all(s.query.get("product") == ["OtherProduct"] for s in setup.fake.requests if s.path == "/rest/bug")
    gone = setup.backend(products=["OtherProduct"]).fetch_many(["1", "2"])
    assert isinstance(gone["1"], TicketGone) and not isinstance(gone["2"], TicketGone)


def test_a_change_mid_listing_skips_nothing(make_bugzilla) -> None:
    setup = make_bugzilla(bugs=60)
    since = setup.fake.bugs[21].last_change_time  # bugs 21..60 match; 1..20 do not, yet
    expected = {str(i) for i in range(21, 61)}
    touched: list[int] = []

    def change_an_early_bug(fake, request) -> None:
        if request.path == "/rest/bug" and not touched:
            touched.append(3)
            fake.add_comment(3, "now it matches too")  # with offset paging this shifts every later bug by one

    setup.fake.after_request.append(change_an_early_bug)
    listed = [r.ticket_id for r in setup.backend(page_size=10).iter_changed(since)]
    assert expected <= set(listed) and len(listed) == len(set(listed))


def test_429_and_503_are_retried(bugzilla: BugzillaSetup) -> None:
    bug = bugzilla.fake.add_bug("Busy", description="d")
    bugzilla.fake.inject(429, path="^/rest/bug$", times=2)  # bmo: HTML, no Retry-After
    bugzilla.fake.inject(503, path="/comment$", times=1, headers={"Retry-After": "2"})
    backend = bugzilla.backend()
    assert backend.fetch(str(bug)).data.title == "Busy"
    assert len(bugzilla.sleeps) == 3 and bugzilla.sleeps[-1] >= 2
    bugzilla.fake.inject(429, path="^/rest/bug$", times=None)
    with pytest.raises(TransientError, match="429"):
        bugzilla.backend(max_retries=1).fetch(str(bug))


def test_a_refused_key_is_refused_not_gone(bugzilla: BugzillaSetup) -> None:
    bug = bugzilla.fake.add_bug("x")
    backend = bugzilla.backend("wrong-key-0000")
    with pytest.raises(CredentialsRefused, match="306"):
        backend.verify_credentials()
    with pytest.raises(CredentialsRefused):
        backend.fetch(str(bug))
    bugzilla.backend().verify_credentials()


def test_a_key_read_as_anonymous_fails_the_proof(make_bugzilla) -> None:
    setup = make_bugzilla()  # upstream: ignores X-BUGZILLA-API-KEY
    secret = setup.fake.add_bug("Security bug", description="d", groups=["security"])
    header_only = setup.backend(api_key_in="header")
    assert isinstance(header_only.fetch_many([str(secret)])[str(secret)], TicketGone)  # looks gone to anonymous
    with pytest.raises(CredentialsRefused, match="anonymous"):
        header_only.verify_credentials()  # ...so the pipeline never acts on it
    bmo = make_bugzilla(flavor="bmo")
    bmo.backend(api_key_in="header").verify_credentials()
    assert all("api_key" not in s.query for s in bmo.fake.requests)


def test_an_invisible_bug_is_gone_for_a_proven_key(bugzilla: BugzillaSetup) -> None:
    bug = bugzilla.fake.add_bug("Soon hidden", description="d")
    backend = bugzilla.backend()
    assert backend.fetch(str(bug)).data.title == "Soon hidden"
    bugzilla.fake.hide_bug(bug)
    backend.verify_credentials()
    with pytest.raises(TicketGone):
        backend.fetch(str(bug))


def test_the_key_never_leaks(make_bugzilla, caplog: pytest.LogCaptureFixture) -> None:
    setup = make_bugzilla()
    bug = setup.fake.add_bug("x", description="d")
    caplog.set_level(logging.DEBUG)
    backend = setup.backend(max_retries=1)
    backend.fetch(str(bug))
    texts = [repr(backend), repr(backend.client), str(vars(backend).get("client"))]
    setup.fake.inject(500, path="^/rest/bug$", times=None)
    with pytest.raises(TransientError) as server_error:
        backend.fetch(str(bug))
    setup.fake.faults.clear()
    with pytest.raises(PermanentError) as refused_key:
        setup.backend("wrong-key-0000").fetch("1")
    texts += [str(server_error.value), str(refused_key.value), repr(refused_key.value)]
    setup.server.stop()
    with pytest.raises(TransientError) as refused:
        setup.backend(max_retries=0).fetch("1")
    texts.append(str(refused.value))
    assert "api_key=***" in caplog.text  # urllib3 logged the URLs, redacted
    for text in [caplog.text, *texts]:
        assert ADMIN_KEY not in text and "wrong-key-0000" not in text


def test_a_bug_vanishing_between_listing_and_comments_costs_only_itself(make_bugzilla) -> None:
    setup = make_bugzilla(bugs=30)
    hidden: list[int] = []

    def hide_one_after_the_listing(fake, request) -> None:
        if request.path == "/rest/bug" and not hidden:
            hidden.append(7)
            fake.hide_bug(7)

    setup.fake.after_request.append(hide_one_after_the_listing)
    listed = list(setup.backend().changed_snapshots(None))
    assert len(listed) == 30  # the listing saw bug 7; its comments came too late
    assert [bug_id for bug_id, _, snapshot in listed if snapshot is None] == ["7"]
    result = setup.backend().fetch_many([str(i) for i in range(1, 31)])
    assert isinstance(result["7"], TicketGone) and not isinstance(result["8"], TicketGone)


def test_a_401_forgets_the_credential_proof(bugzilla: BugzillaSetup) -> None:
    from data_manager.collectors.tickets.credentials import prove_credentials

    bug = bugzilla.fake.add_bug("x")
    backend = bugzilla.backend()
    prove_credentials(backend)
    proofs = bugzilla.fake.request_count("^/rest/user$")
    prove_credentials(backend)
    assert bugzilla.fake.request_count("^/rest/user$") == proofs  # remembered
    bugzilla.fake.inject(401, path="^/rest/bug$", body={"error": True, "code": 410, "message": "log in"})
    with pytest.raises(CredentialsRefused):
        backend.fetch(str(bug))
    prove_credentials(backend)
    assert bugzilla.fake.request_count("^/rest/user$") == proofs + 1  # asked again after the 401
    bugzilla.fake.users["admin@example.com"].api_key = "rotated-by-an-admin"  # now 400, code 306
    with pytest.raises(CredentialsRefused):
        backend.fetch(str(bug))
    with pytest.raises(CredentialsRefused, match="306"):
        prove_credentials(backend)  # the refusal was not remembered as a proof

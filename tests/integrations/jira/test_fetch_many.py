"""`JiraTickets.fetch_many`: one search per chunk of keys; `fetch` for whatever the search did not bring complete.

Through the real client against the fake over HTTP, both deployments. Whatever comes back must be what
fetching each id on its own gives; only the number of requests differs.
"""

from __future__ import annotations

import pytest

from data_manager.collectors.tickets.errors import PermanentError, TicketGone, TransientError
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.integrations.jira import KEYS_PER_SEARCH, JiraTickets
from tests.integrations.jira.conftest import JiraSetup

SEARCH = r"/rest/api/\d/search(/jql)?$"


def requests_since(setup: JiraSetup, start: int) -> tuple[int, int]:
    """(searches, other API requests) the fake saw after its `start`-th request."""
    paths = [path for _, path, _ in setup.fake.requests[start:]]
    searches = sum(1 for path in paths if path.endswith(("/search", "/search/jql")))
    return searches, len(paths) - searches


def one_by_one(client: JiraTickets, ticket_id: str) -> TicketSnapshot | str:
    """What the single path gives: the snapshot, or the gone message."""
    try:
        return client.fetch(ticket_id)
    except TicketGone as gone:
        return f"gone: {gone}"


def as_single(result: TicketSnapshot | TicketGone) -> TicketSnapshot | str:
    return f"gone: {result}" if isinstance(result, TicketGone) else result


def test_thirty_keys_cost_one_search_and_give_what_fetching_each_gives(make_jira) -> None:
    setup: JiraSetup = make_jira(issues=30)
    client = setup.client()
    keys = sorted(setup.fake.issues)
    start = len(setup.fake.requests)
    batched = client.fetch_many(keys)
    assert requests_since(setup, start) == (1, 0)
    start = len(setup.fake.requests)
    single = {key: one_by_one(client, key) for key in keys}
    assert requests_since(setup, start) == (0, 60)  # the issue, then its comments, per key
    assert {key: as_single(result) for key, result in batched.items()} == single
    assert all(isinstance(result, TicketSnapshot) and result.comments is not None for result in batched.values())


def test_more_keys_than_a_search_takes_are_asked_in_chunks(make_jira) -> None:
    setup: JiraSetup = make_jira(issues=KEYS_PER_SEARCH + 10)
    client = setup.client()
    start = len(setup.fake.requests)
    result = client.fetch_many(sorted(setup.fake.issues))
    assert requests_since(setup, start) == (2, 0)
    assert len(result) == KEYS_PER_SEARCH + 10 and all(isinstance(r, TicketSnapshot) for r in result.values())


def test_an_issue_with_more_comments_than_the_search_embeds_is_fetched_alone_and_complete(make_jira) -> None:
    setup: JiraSetup = make_jira(issues=4)
    busy = setup.fake.add_issue("Busy issue")
    for n in range(25):
        setup.fake.add_comment(busy, f"comment {n}")
    client = setup.client()
    keys = [*sorted(setup.fake.issues)]
    start = len(setup.fake.requests)
    result = client.fetch_many(keys)
    assert requests_since(setup, start) == (1, 2)  # the search, then the busy issue and its comment page
    snapshot = result[busy]
    assert isinstance(snapshot, TicketSnapshot) and [c.text for c in snapshot.comments] == [
        f"comment {n}" for n in range(25)
    ]
    assert {key: as_single(r) for key, r in result.items()} == {key: one_by_one(client, key) for key in keys}


def test_deleted_moved_and_out_of_scope_keys_go_through_the_single_path(make_jira) -> None:
    setup: JiraSetup = make_jira(issues=6)
    fake = setup.fake
    fake.delete_issue("PROJ-2")
    moved_to = fake.move_issue("PROJ-3", "OPS")
    elsewhere = fake.add_issue("Not ours", project="OTHER")
    client = setup.client("project in (PROJ, OPS)")  # the moved issue stays in scope: the search returns it
    keys = ["PROJ-1", "PROJ-2", "PROJ-3", "PROJ-4", elsewhere]
    start = len(fake.requests)
    result = client.fetch_many(keys)
    searches, singles = requests_since(setup, start)
    # The search refuses the deleted key (400), is asked again without it; PROJ-3 comes back as OPS-1 (not
    # what was asked) and OTHER-1 not at all: each is then fetched as it always was (the issue, then its
    # comments when it is still there under that key).
    assert searches == 2 and singles == 1 + 1 + 2
    assert set(result) == set(keys)
    assert isinstance(result["PROJ-2"], TicketGone)
    assert isinstance(result["PROJ-3"], TicketGone) and moved_to in str(result["PROJ-3"])
    assert isinstance(result["PROJ-1"], TicketSnapshot) and isinstance(result["PROJ-4"], TicketSnapshot)
    # Out of scope is for `in_scope` and the resync to decide; `fetch` (and so the batch) still reads it.
    assert {key: as_single(r) for key, r in result.items()} == {key: one_by_one(client, key) for key in keys}


def test_keys_jira_cannot_resolve_do_not_cost_the_others_their_search(make_jira) -> None:
    setup: JiraSetup = make_jira(issues=10)
    client = setup.client()
    keys = [*sorted(setup.fake.issues), "PROJ-999", "NOPE-1"]
    start = len(setup.fake.requests)
    result = client.fetch_many(keys)
    assert requests_since(setup, start) == (2, 2)  # the refused search, the search again, one 404 per unknown key
    assert isinstance(result["PROJ-999"], TicketGone) and isinstance(result["NOPE-1"], TicketGone)
    assert all(isinstance(result[key], TicketSnapshot) for key in setup.fake.issues)


def test_a_refusal_that_names_none_of_the_keys_leaves_the_chunk_to_single_fetches(make_jira) -> None:
    setup: JiraSetup = make_jira(issues=5)
    setup.fake.inject(400, path=SEARCH, body={"errorMessages": ["Something Jira did not like."], "errors": {}})
    client = setup.client()
    keys = sorted(setup.fake.issues)
    start = len(setup.fake.requests)
    result = client.fetch_many(keys)
    assert requests_since(setup, start) == (1, 10)
    assert {key: as_single(r) for key, r in result.items()} == {key: one_by_one(client, key) for key in keys}


@pytest.mark.parametrize(("status", "error"), [(401, PermanentError), (403, PermanentError), (503, TransientError)])
def test_a_search_error_other_than_400_fails_the_batch(make_jira, status: int, error: type[Exception]) -> None:
    setup: JiraSetup = make_jira(issues=5)
    setup.fake.inject(status, path=SEARCH, times=None)
    client = setup.client(max_retries=1)
    start = len(setup.fake.requests)
    with pytest.raises(error) as raised:
        client.fetch_many(sorted(setup.fake.issues))
    assert getattr(raised.value, "status", None) == status
    assert requests_since(setup, start)[1] == 0  # nothing fetched one by one, nothing taken for gone


def test_refused_credentials_fail_the_batch_and_never_show_the_token(make_jira) -> None:
    setup: JiraSetup = make_jira(issues=3)
    client = setup.client(api_token="revoked-token-abcdef")
    with pytest.raises(PermanentError) as raised:
        client.fetch_many(sorted(setup.fake.issues))
    assert raised.value.status == 401 and "revoked-token-abcdef" not in str(raised.value)


def test_ids_that_are_not_issue_keys_are_fetched_alone_without_breaking_the_batch(make_jira) -> None:
    setup: JiraSetup = make_jira(issues=4)
    numeric = setup.fake.issue("PROJ-2").id
    client = setup.client()
    ids = ["PROJ-1", numeric, "proj-3", 'PROJ-4" OR project = OTHER', "PROJ-4"]
    start = len(setup.fake.requests)
    result = client.fetch_many(ids)
    searches, _ = requests_since(setup, start)
    assert searches == 1 and set(result) == set(ids)
    assert isinstance(result[numeric], TicketSnapshot) and result[numeric].ticket_id == "PROJ-2"
    assert {i: as_single(r) for i, r in result.items()} == {i: one_by_one(client, i) for i in ids}

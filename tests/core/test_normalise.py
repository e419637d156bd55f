from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from data_manager.collectors.tickets import Comment, Status, TicketData
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.normalise import normalise, render_content

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def snapshot(**overrides: object) -> TicketSnapshot:
    base: dict[str, object] = {
        "ticket_id": "42",
        "data": TicketData(
            title="Disk full", description="Clean /var", assignee="Ann", requester="Bob", status=Status.IN_PROGRESS
        ),
        "comments": (
            Comment("Jane Doe", "Cleaned /var", T0 + timedelta(hours=1)),
            Comment("Bob", "Thanks", T0 + timedelta(hours=2)),
        ),
        "url": "https://rm.example/issues/42",
        "created_at": T0,
        "updated_at": T0 + timedelta(hours=2),
        "project": "ops",
        "status_name": "In Progress",
        "extra": {"tracker": "Bug", "priority": "High"},
    }
    base.update(overrides)
    return TicketSnapshot(**base)  # type: ignore[arg-type]


EXPECTED = """Title: Disk full
Ticket: redmine:42
Status: In Progress (in_progress)
Project: ops
URL: https://rm.example/issues/42
Created: 2024-05-01T10:00:00+00:00
Updated: 2024-05-01T12:00:00+00:00
Requester: Bob
Assignee: Ann
Priority: High
Tracker: Bug

Description:
Clean /var

Comments (2):

--- Comment 1 by Jane Doe at 2024-05-01T11:00:00+00:00 ---
Cleaned /var

--- Comment 2 by Bob at 2024-05-01T12:00:00+00:00 ---
Thanks
"""


def test_content_format_is_exactly_the_documented_one() -> None:
    assert normalise("redmine", snapshot()).content == EXPECTED


def test_comments_are_chronological_whatever_order_they_arrive_in() -> None:
    reversed_comments = tuple(reversed(snapshot().comments))
    assert normalise("redmine", snapshot(comments=reversed_comments)).content == EXPECTED


def test_missing_fields_never_print_none() -> None:
    bare = TicketSnapshot(ticket_id="7", data=TicketData())
    content = normalise("jira", bare).content
    assert "None" not in content
    assert content.startswith("Title:\nTicket: jira:7\nStatus: open\nProject:\n")
    assert content.endswith("Comments (0):\n")


def test_text_is_kept_verbatim() -> None:
    tricky = 'line1\n<b>bold</b> "quoted" \\back\\slash ünïcödé 🚀\n\n  indented'
    content = normalise(
        "jira", snapshot(data=TicketData(title="t", description=tricky), comments=(Comment("a", tricky, T0),))
    ).content
    assert content.count(tricky) == 2


def test_custom_fields_are_sorted_and_deterministic() -> None:
    data = TicketData(title="t", custom_fields={"zeta": {"b": 1, "a": [2, 1]}, "alpha": None, "when": T0})
    content = normalise("jira", snapshot(data=data)).content
    assert 'Fields:\n  alpha:\n  when: 2024-05-01T10:00:00+00:00\n  zeta: {"a": [2, 1], "b": 1}\n' in content


def test_header_values_stay_on_one_line() -> None:
    content = normalise("jira", snapshot(data=TicketData(title="two\nlines"))).content
    assert content.splitlines()[0] == "Title: two lines"


def test_resource_metadata_carries_the_system_facts() -> None:
    resource = normalise("redmine", snapshot())
    assert resource.get_hash() == "redmine_42"
    assert resource.created_at == T0
    meta = resource.get_metadata()
    assert meta.display_name == "42: Disk full"
    assert meta.extra["url"] == "https://rm.example/issues/42"
    assert meta.extra["updated_at"] == "2024-05-01T12:00:00+00:00"
    assert meta.extra["status"] == "In Progress" and meta.extra["status_category"] == "in_progress"
    assert meta.extra["tracker"] == "Bug" and meta.extra["comment_count"] == "2"


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@given(
    title=texts,
    description=texts,
    comments=st.lists(
        st.tuples(texts, texts, st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))),
        max_size=6,
    ),
)
def test_normalisation_is_stable_and_keeps_every_comment(title: str, description: str, comments: list) -> None:
    snap = snapshot(
        data=TicketData(title=title, description=description),
        comments=tuple(Comment(a, t, at) for a, t, at in comments),
    )
    first = render_content("jira", snap)
    assert first == render_content("jira", snap)
    assert f"Comments ({len(comments)}):" in first
    for _, text, _ in comments:
        assert text in first
    times = [c.at for c in snap.comments]
    assert times == sorted(times)


def test_an_integration_names_the_ticket_else_the_standard_name_else_the_seed_default() -> None:
    """The display-name hook (`TicketIntegration.display_name`, issue #9): a name the integration gives wins
    (on one line); None gives `<id>: <title>`; an untitled ticket gets the seed's `{source_type}:{ticket_id}`."""
    assert normalise("redmine", snapshot(), display_name="Incident\n42").get_metadata().display_name == "Incident 42"
    assert normalise("redmine", snapshot(), display_name=None).get_metadata().display_name == "42: Disk full"
    untitled = snapshot(data=TicketData(title=""))
    assert normalise("redmine", untitled).get_metadata().display_name == "redmine:42"

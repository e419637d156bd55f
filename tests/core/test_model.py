from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_manager.collectors.tickets import (
    Comment,
    InMemoryBackend,
    Status,
    Ticket,
    TicketBackend,
    TicketData,
    TicketNotFound,
)
from data_manager.collectors.tickets.errors import NoBackendError, UnknownFieldError

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("OPEN", Status.OPEN),
        ("open", Status.OPEN),
        ("In_Progress", Status.IN_PROGRESS),
        ("in progress", Status.IN_PROGRESS),
        ("IN-PROGRESS", Status.IN_PROGRESS),
        ("resolved", Status.RESOLVED),
        ("Closed", Status.CLOSED),
        (Status.CLOSED, Status.CLOSED),
    ],
)
def test_status_accepts_names_and_values_in_any_case(given_value: str, expected: Status) -> None:
    assert Status(given_value) is expected
    assert Status.parse(given_value) is expected


def test_unknown_status_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="OPEN, IN_PROGRESS, RESOLVED, CLOSED"):
        Status.parse("waiting")


def test_ticket_round_trips_through_dict_with_status_and_times() -> None:
    ticket = Ticket(
        ticket_id="T1",
        data=TicketData(
            title="Login fails",
            description='<b>quotes " and \\ backslashes</b> ünïcode',
            assignee="ann",
            requester="bob",
            status=Status.IN_PROGRESS,
            custom_fields={"severity": "high", "tags": ["a", "b"]},
            communication="email",
        ),
        comments=[Comment("ann", "first", T0), Comment("bob", "second", T0 + timedelta(minutes=1))],
    )
    raw = ticket.to_dict()
    assert raw["data"]["status"] == "in_progress"
    assert raw["comments"][0]["at"] == "2024-05-01T10:00:00+00:00"
    assert Ticket.from_dict(raw) == ticket


aware_datetimes = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@given(
    title=st.text(),
    description=st.text(),
    status=st.sampled_from(list(Status)),
    comments=st.lists(st.tuples(st.text(), st.text(), aware_datetimes), max_size=5),
    custom=st.dictionaries(st.text(min_size=1), st.one_of(st.text(), st.integers(), st.booleans(), st.none())),
)
def test_round_trip_property(title: str, description: str, status: Status, comments: list, custom: dict) -> None:
    ticket = Ticket(
        "X",
        TicketData(title=title, description=description, status=status, custom_fields=custom),
        [Comment(a, t, at) for a, t, at in comments],
    )
    assert Ticket.from_dict(ticket.to_dict()) == ticket


def test_naive_comment_times_are_taken_as_utc() -> None:
    assert Comment("a", "b", datetime(2024, 5, 1, 10, 0)).at == T0
    assert Comment("a", "b", "2024-05-01T10:00:00.000+0000").at == T0  # Jira's form
    assert Comment("a", "b", "2024-05-01T10:00:00Z").at == T0


def test_without_a_backend_operations_fail_clearly() -> None:
    with pytest.raises(NoBackendError, match="register_backend"):
        Ticket.read("T000001")


def test_facade_create_read_update_comment() -> None:
    Ticket.register_backend("mem", InMemoryBackend())
    ticket_id = Ticket.create(
        title="Printer jam", description="tray 2", requester="bob", status="open", custom_fields={}
    )
    assert ticket_id == "T000001"
    Ticket.update(ticket_id, assignee="ann", status="in progress")
    Ticket.comment(ticket_id, "looking", author="ann")
    ticket = Ticket.read(ticket_id)
    assert ticket.data.assignee == "ann" and ticket.data.status is Status.IN_PROGRESS
    assert [c.text for c in ticket.comments] == ["looking"]
    ticket.change_status(Status.CLOSED)
    assert ticket.data.status is Status.CLOSED
    assert Ticket.read(ticket_id).data.status is Status.CLOSED


def test_unknown_field_changes_nothing() -> None:
    Ticket.register_backend("mem", InMemoryBackend())
    ticket_id = Ticket.create(title="a")
    with pytest.raises(UnknownFieldError, match="colour"):
        Ticket.update(ticket_id, title="b", colour="red")
    assert Ticket.read(ticket_id).data.title == "a"


def test_bad_status_in_update_changes_nothing() -> None:
    Ticket.register_backend("mem", InMemoryBackend())
    ticket_id = Ticket.create(title="a")
    with pytest.raises(ValueError):
        Ticket.update(ticket_id, title="b", status="someday")
    assert Ticket.read(ticket_id).data.title == "a"


def test_unknown_ticket_raises_ticket_not_found_a_key_error() -> None:
    Ticket.register_backend("mem", InMemoryBackend())
    with pytest.raises(TicketNotFound) as info:
        Ticket.read("T999999")
    assert isinstance(info.value, KeyError)
    assert "T999999" in str(info.value)
    with pytest.raises(TicketNotFound):
        Ticket.update("T999999", title="x")
    with pytest.raises(TicketNotFound):
        Ticket.comment("T999999", "x", "me")


def test_registry_first_is_default_and_use_backend_switches() -> None:
    first, second = InMemoryBackend(), InMemoryBackend()
    Ticket.register_backend("first", first)
    Ticket.register_backend("second", second)
    assert Ticket.backend() is first
    Ticket.use_backend("second")
    Ticket.create(title="x")
    assert len(second) == 1 and len(first) == 0
    Ticket.register_backend("third", InMemoryBackend(), make_default=True)
    assert Ticket.backend() is not second


def test_use_backend_with_unknown_name_names_the_known_ones() -> None:
    Ticket.register_backend("redmine", InMemoryBackend())
    with pytest.raises(KeyError, match="redmine"):
        Ticket.use_backend("jira")


def test_subclasses_do_not_share_the_registry() -> None:
    class Other(Ticket):
        pass

    Ticket.register_backend("mem", InMemoryBackend())
    with pytest.raises(NoBackendError):
        Other.backend()
    Other.set_backend(InMemoryBackend())
    assert Other.backend() is not Ticket.backend()
    assert isinstance(Other.read(Other.create(title="x")), Other)


def test_registry_does_not_leak_between_tests_part_one() -> None:
    Ticket.register_backend("leaky", InMemoryBackend())


def test_registry_does_not_leak_between_tests_part_two() -> None:
    with pytest.raises(NoBackendError):
        Ticket.backend()


def test_in_memory_backend_satisfies_the_protocol() -> None:
    assert isinstance(InMemoryBackend(), TicketBackend)


def test_in_memory_backend_stores_copies() -> None:
    backend = InMemoryBackend()
    data = TicketData(title="a", custom_fields={"tags": ["x"]})
    ticket_id = backend.create(data)
    data.custom_fields["tags"].append("changed-after-create")
    read, _ = backend.read(ticket_id)
    read.title = "edited"
    read.custom_fields["tags"].append("edited")
    again, _ = backend.read(ticket_id)
    assert again.title == "a" and again.custom_fields == {"tags": ["x"]}


def test_in_memory_comments_are_chronological_whatever_the_insert_order() -> None:
    backend = InMemoryBackend()
    ticket_id = backend.create(TicketData(title="a"))
    for minutes, text in [(5, "third"), (0, "first"), (2, "second"), (2, "second-b")]:
        backend.add_comment(ticket_id, Comment("x", text, T0 + timedelta(minutes=minutes)))
    assert [c.text for c in backend.read(ticket_id)[1]] == ["first", "second", "second-b", "third"]


def test_in_memory_backend_is_thread_safe() -> None:
    backend = InMemoryBackend()
    ids: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(200):
            ticket_id = backend.create(TicketData(title="t"))
            backend.add_comment(ticket_id, Comment("a", "c", T0))
            with lock:
                ids.append(ticket_id)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == len(set(ids)) == 1600 == len(backend)
    assert sorted(ids)[-1] == "T001600"

"""Seed 002: the `Ticket` dataclass and facade (lines 140-347) and `InMemoryBackend` (lines 90-138)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar, Dict, List, Optional  # noqa: UP035 - the seed's spelling

import pytest

from data_manager.collectors.tickets import Comment, InMemoryBackend, Status, Ticket, TicketBackend, TicketData
from tests.contracts.seed import accepts, signature_differences


class SeedTicket:
    """seed 002 lines 301-339, verbatim: the facade's classmethod signatures as the seed prints them."""

    _backend: ClassVar[Optional[TicketBackend]] = None  # noqa: UP045
    _backends: ClassVar[Dict[str, TicketBackend]] = {}  # noqa: UP006

    @classmethod
    def set_backend(cls, backend: TicketBackend) -> None:
        raise NotImplementedError

    @classmethod
    def register_backend(cls, name: str, backend: TicketBackend, *, make_default: bool = False) -> None:
        raise NotImplementedError

    @classmethod
    def use_backend(cls, name: str) -> None:
        raise NotImplementedError

    # NOTE: concrete types (no Type[T_Ticket]/T_Ticket)
    @classmethod
    def create(
        cls,
        *,
        title: str,
        description: str,
        assignee: Optional[str] = None,  # noqa: UP045
        requester: Optional[str] = None,  # noqa: UP045
        status: Status = Status.OPEN,
        custom_fields: Optional[Dict[str, Any]] = None,  # noqa: UP006, UP045
    ) -> str:
        raise NotImplementedError

    @classmethod
    def read(cls, ticket_id: str) -> Ticket:
        raise NotImplementedError

    @classmethod
    def update(cls, ticket_id: str, **fields: Any) -> None:
        raise NotImplementedError

    @classmethod
    def comment(cls, ticket_id: str, text: str, author: str) -> None:
        raise NotImplementedError


# Where the project deliberately accepts more than the seed; each is a superset (every seed call binds the same
# way and means the same) and is listed in the README's "Seed API notes".
ALLOWED = {
    "create": {
        "description": "defaults to '' so a title-only ticket can be created; a seed call always passes it",
        "communication": "keyword-only extra: how the requester is reached (TicketData.communication)",
    },
    "comment": {"at": "keyword-only extra: when the comment was written (default now), for imports and tests"},
}


@pytest.mark.parametrize(
    "name", ["set_backend", "register_backend", "use_backend", "create", "read", "update", "comment"]
)
def test_facade_classmethod_signatures_match_the_seed(name: str) -> None:
    """seed 002 lines 301-339: each `@classmethod` of `Ticket` with the seed's parameters (names, kinds, order,
    defaults, annotations) and return type."""
    impl = getattr(Ticket, name)
    assert isinstance(Ticket.__dict__[name], classmethod)
    problems = signature_differences(
        impl, getattr(SeedTicket, name), seed_namespace={"Ticket": Ticket}, allowed=ALLOWED.get(name)
    )
    assert problems == [], f"Ticket.{name}: {problems}"


def test_ticket_is_a_dataclass_with_ticket_id_data_comments() -> None:
    """seed 002 lines 263-296: `@dataclass class Ticket`: `ticket_id: str`, `data: TicketData`,
    `comments: List[Comment] = field(default_factory=list)`."""
    assert dataclasses.is_dataclass(Ticket)
    fields = {f.name: f for f in dataclasses.fields(Ticket)}
    assert list(fields) == ["ticket_id", "data", "comments"]
    assert fields["comments"].default_factory is list  # type: ignore[comparison-overlap]
    hints = typing.get_type_hints(Ticket)
    assert accepts(hints["ticket_id"], str)
    assert accepts(hints["data"], TicketData)
    assert accepts(hints["comments"], List[Comment])  # noqa: UP006
    ticket = Ticket("T000001", TicketData(title="t", description="d"))
    assert ticket.comments == [] and ticket.comments is not Ticket("T2", TicketData()).comments


def test_ticket_schema_names_the_nested_types() -> None:
    """seed 002 line 341: `__schema__ = {"data": TicketData, "comments": Comment}` (and line 342:
    `__enums__ = {}`)."""
    assert Ticket.__schema__ == {"data": TicketData, "comments": Comment}
    assert Ticket.__enums__ == {}


def test_to_dict_gives_the_status_as_its_value() -> None:
    """seed 002 lines 344-347: `to_dict()` is a dict whose `["data"]["status"]` is `self.data.status.value`; the
    ticket id, the data and the comments are all in it."""
    ticket = Ticket(
        "T000007",
        TicketData(title="Login bug", description="Fails on Safari", status=Status.IN_PROGRESS),
        [Comment("qa-bot", "Reproduced on 17.0.3", "2024-01-01T00:00:00Z")],  # type: ignore[arg-type]
    )
    d = ticket.to_dict()
    assert d["data"]["status"] == "in_progress" == Status.IN_PROGRESS.value
    assert d["ticket_id"] == "T000007"
    assert d["data"]["title"] == "Login bug" and d["data"]["description"] == "Fails on Safari"
    assert [c["text"] for c in d["comments"]] == ["Reproduced on 17.0.3"]


def test_in_memory_backend_starts_with_the_seed_attributes() -> None:
    """seed 002 lines 106-115: `_db: Dict[str, TicketData]`, `_comments: Dict[str, List[Comment]]`, `_seq: int`,
    all empty / 0 after `InMemoryBackend()`."""
    backend = InMemoryBackend()
    assert backend._db == {}
    assert backend._comments == {}
    assert backend._seq == 0


def test_in_memory_backend_ids_are_t_and_six_digits_from_the_sequence() -> None:
    """seed 002 lines 117-119: `_next_id` increments `_seq` and returns `f"T{self._seq:06d}"`: T000001, T000002."""
    backend = InMemoryBackend()
    first = backend.create(TicketData(title="a", description=""))
    second = backend.create(TicketData(title="b", description=""))
    assert (first, second) == ("T000001", "T000002")
    assert backend._seq == 2


def test_in_memory_backend_keeps_tickets_in_db_and_comments_in_comments() -> None:
    """seed 002 lines 121-138: `create` stores the data in `_db[tid]` and starts `_comments[tid]`; `read` returns
    `(_db[tid], list(_comments[tid]))`; `update` sets fields (a str status becomes a `Status`); `add_comment`
    appends to `_comments[tid]`."""
    backend = InMemoryBackend()
    tid = backend.create(TicketData(title="Login bug", description="Fails on Safari"))
    assert isinstance(backend._db[tid], TicketData) and backend._db[tid].title == "Login bug"
    assert backend._comments[tid] == []
    comment = Comment("qa-bot", "Reproduced on 17.0.3", "2024-01-01T00:00:00Z")  # type: ignore[arg-type]
    backend.add_comment(tid, comment)
    assert backend._comments[tid] == [comment]
    backend.update(tid, {"status": "in_progress", "assignee": "ann"})
    assert backend._db[tid].status is Status.IN_PROGRESS and backend._db[tid].assignee == "ann"
    data, comments = backend.read(tid)
    assert (data.title, data.status, data.assignee) == ("Login bug", Status.IN_PROGRESS, "ann")
    assert comments == [comment]
    comments.clear()  # `read` hands out a copy of the list, as the seed's `list(...)` does
    assert backend._comments[tid] == [comment]


def test_in_memory_backend_implements_the_ticket_backend_protocol() -> None:
    """seed 002 line 9: "Methods implement the TicketBackend protocol."."""
    assert isinstance(InMemoryBackend(), TicketBackend)
    for name in ("create", "read", "update", "add_comment"):
        assert callable(getattr(InMemoryBackend, name))


def test_in_memory_backend_unknown_ids_raise_key_error() -> None:
    """seed 002 lines 127-135: `read` and `update` index `self._db[ticket_id]`, so an unknown id is a `KeyError`.
    (The seed's `add_comment` would silently keep a comment for a ticket that does not exist; here it is a
    `KeyError` too, see the README's seed API notes.)"""
    backend = InMemoryBackend()
    comment = Comment("a", "b", "2024-01-01T00:00:00Z")  # type: ignore[arg-type]
    for call in (
        lambda: backend.read("T000404"),
        lambda: backend.update("T000404", {"title": "x"}),
        lambda: backend.add_comment("T000404", comment),
    ):
        with pytest.raises(KeyError):
            call()
    assert backend._comments == {}


def test_set_backend_makes_that_backend_the_active_one() -> None:
    """seed 002 line 302: `set_backend(cls, backend)`: the facade's calls go to that backend from then on."""
    first, second = InMemoryBackend(), InMemoryBackend()
    Ticket.set_backend(first)
    Ticket.set_backend(second)
    tid = Ticket.create(title="Login bug", description="Fails on Safari")
    assert len(first) == 0 and second.read(tid)[0].title == "Login bug"


def test_register_backend_make_default_and_use_backend() -> None:
    """seed 002 lines 97 and 306-313: `register_backend(name, backend, *, make_default=False)` with
    `make_default=True` makes it the one app code uses; registering more ("Configure once at startup") does not
    switch; `use_backend(name)` switches."""
    mem, other = InMemoryBackend(), InMemoryBackend()
    Ticket.register_backend("mem", mem, make_default=True)
    Ticket.register_backend("other", other)
    tid = Ticket.create(title="Login bug", description="Fails on Safari")
    assert len(mem) == 1 and len(other) == 0
    Ticket.use_backend("other")
    with pytest.raises(KeyError):
        Ticket.read(tid)
    Ticket.register_backend("third", InMemoryBackend(), make_default=True)
    assert Ticket.backend() is not other

"""The vendor-agnostic ticket model and the `Ticket` facade that reads and writes through a backend.

Application code says `Ticket.create(...)`, `Ticket.read(id)`, `Ticket.update(id, status=...)` and the
registered backend (in-memory, Redmine, Jira, ...) does the system-specific work.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, ClassVar, Protocol, runtime_checkable

from data_manager.collectors.tickets.errors import NoBackendError, TicketNotFound, UnknownFieldError


class Status(str, Enum):
    """The four states every ticket system can be mapped onto."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @classmethod
    def _missing_(cls, value: object) -> Status | None:
        """Accept names or values in any case, with spaces or hyphens for underscores."""
        if not isinstance(value, str):
            return None
        key = value.strip().lower().replace("-", "_").replace(" ", "_")
        for member in cls:
            if key in (member.value, member.name.lower()):
                return member
        return None

    @classmethod
    def parse(cls, value: Status | str) -> Status:
        """Like `Status(value)` but with an error that lists the accepted spellings."""
        try:
            return cls(value)
        except ValueError:
            accepted = ", ".join(m.name for m in cls)
            raise ValueError(f"unknown status {value!r}; expected one of {accepted}") from None


def _utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC so ordering and round-trips are well defined."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def parse_datetime(value: datetime | str | None) -> datetime | None:
    """Parse the ISO forms ticket systems send (`Z`, `+0000`, `+00:00`, naive = UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _utc(value)
    return _utc(datetime.fromisoformat(str(value).strip()))


@dataclass(frozen=True)
class Comment:
    """One comment: who wrote it, what, and when (timezone-aware)."""

    author: str
    text: str
    at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", parse_datetime(self.at))

    def to_dict(self) -> dict[str, str]:
        return {"author": self.author, "text": self.text, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Comment:
        return cls(author=raw.get("author") or "", text=raw.get("text") or "", at=raw["at"])


@dataclass
class TicketData:
    """A ticket's fields, independent of any ticket system."""

    title: str = ""
    description: str = ""
    assignee: str | None = None
    requester: str | None = None
    status: Status = Status.OPEN
    custom_fields: dict[str, Any] = field(default_factory=dict)
    communication: str | None = None  # how the requester is reached (e.g. "email", "portal")

    def __post_init__(self) -> None:
        self.status = Status.parse(self.status)
        self.title = self.title or ""
        self.description = self.description or ""
        self.custom_fields = dict(self.custom_fields or {})

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "assignee": self.assignee,
            "requester": self.requester,
            "status": self.status.value,
            "custom_fields": copy.deepcopy(self.custom_fields),
            "communication": self.communication,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TicketData:
        unknown = set(raw) - cls.field_names()
        if unknown:
            raise UnknownFieldError(f"unknown ticket field(s): {', '.join(sorted(unknown))}")
        return cls(**{key: copy.deepcopy(value) for key, value in raw.items()})

    def with_changes(self, changes: Mapping[str, Any]) -> TicketData:
        """A copy with `changes` applied, validated first so an error changes nothing."""
        unknown = set(changes) - self.field_names()
        if unknown:
            known = ", ".join(sorted(self.field_names()))
            raise UnknownFieldError(f"unknown ticket field(s): {', '.join(sorted(unknown))} (known: {known})")
        return replace(self, **copy.deepcopy(dict(changes)))


@runtime_checkable
class TicketBackend(Protocol):
    """What a ticket system must offer for the `Ticket` facade to read and write through it."""

    def create(self, data: TicketData) -> str: ...

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]: ...

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None: ...

    def add_comment(self, ticket_id: str, comment: Comment) -> None: ...


class BackendSource(Protocol):
    """Something that knows the configured ticket systems: a loaded `AppConfig`, or a `TicketManager`."""

    def ticket_backends(self) -> Iterable[tuple[str, TicketBackend]]: ...


class _BackendRegistry:
    """Named backends plus the active one; each `Ticket` subclass owns its own."""

    def __init__(self) -> None:
        self.backends: dict[str, TicketBackend] = {}
        self.active: str | None = None
        self.lock = threading.RLock()


@dataclass
class Ticket:
    """A ticket with its comments, and the facade for reading and writing tickets through a backend."""

    ticket_id: str
    data: TicketData = field(default_factory=TicketData)
    comments: list[Comment] = field(default_factory=list)

    _registry: ClassVar[_BackendRegistry] = _BackendRegistry()

    # The seed's (de)serialisation hints: the nested types of `data` and `comments`, and no enum fields of its own.
    __schema__: ClassVar[dict[str, type]] = {"data": TicketData, "comments": Comment}
    __enums__: ClassVar[dict[str, type[Enum]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._registry = _BackendRegistry()  # a subclass never shares its parent's backends by accident

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "data": self.data.to_dict(),
            "comments": [comment.to_dict() for comment in self.comments],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Ticket:
        return cls(
            ticket_id=str(raw["ticket_id"]),
            data=TicketData.from_dict(raw.get("data") or {}),
            comments=[Comment.from_dict(item) for item in raw.get("comments") or []],
        )

    # -- backend registry ------------------------------------------------------------------------
    @classmethod
    def register_backend(cls, name: str, backend: TicketBackend, *, make_default: bool = False) -> None:
        """Register `backend` under `name`; the first one registered becomes the active one."""
        with cls._registry.lock:
            cls._registry.backends[name] = backend
            if make_default or cls._registry.active is None:
                cls._registry.active = name

    @classmethod
    def configure(cls, source: BackendSource) -> list[str]:
        """Register every enabled ticket system instance of a config under its name; the names registered.

        `Ticket.configure(load_config("config.yaml"))` (or a `TicketManager`, to share its integrations),
        then `Ticket.use_backend("jira")`. The first instance in the config becomes the active backend
        unless one was active already; an instance registered before under the same name is replaced.
        """
        names = []
        with cls._registry.lock:
            for name, backend in source.ticket_backends():
                cls.register_backend(name, backend)
                names.append(name)
        return names

    @classmethod
    def set_backend(cls, backend: TicketBackend) -> None:
        """Register `backend` as "default" and make it the active one."""
        cls.register_backend("default", backend, make_default=True)

    @classmethod
    def use_backend(cls, name: str) -> None:
        with cls._registry.lock:
            if name not in cls._registry.backends:
                known = ", ".join(sorted(cls._registry.backends)) or "none registered"
                raise KeyError(f"unknown ticket backend {name!r} (known: {known})")
            cls._registry.active = name

    @classmethod
    def reset_backends(cls) -> None:
        """Forget every registered backend (for tests and re-configuration)."""
        with cls._registry.lock:
            cls._registry.backends.clear()
            cls._registry.active = None

    @classmethod
    def backend(cls) -> TicketBackend:
        with cls._registry.lock:
            if cls._registry.active is None:
                raise NoBackendError(
                    "no ticket backend registered: call Ticket.register_backend(name, backend) or Ticket.set_backend(backend)"
                )
            return cls._registry.backends[cls._registry.active]

    # -- operations ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        title: str,
        description: str = "",
        assignee: str | None = None,
        requester: str | None = None,
        status: Status | str = Status.OPEN,
        custom_fields: Mapping[str, Any] | None = None,
        communication: str | None = None,
    ) -> str:
        data = TicketData(
            title=title,
            description=description,
            assignee=assignee,
            requester=requester,
            status=Status.parse(status),
            custom_fields=dict(custom_fields or {}),
            communication=communication,
        )
        return cls.backend().create(data)

    @classmethod
    def read(cls, ticket_id: str) -> Ticket:
        data, comments = cls.backend().read(ticket_id)
        return cls(ticket_id=ticket_id, data=data, comments=sorted(comments, key=lambda c: c.at))

    @classmethod
    def update(cls, ticket_id: str, **fields: Any) -> None:
        """Change the named fields; an unknown field or bad status raises before anything is sent."""
        changes = fields
        unknown = set(changes) - TicketData.field_names()
        if unknown:
            known = ", ".join(sorted(TicketData.field_names()))
            raise UnknownFieldError(f"unknown ticket field(s): {', '.join(sorted(unknown))} (known: {known})")
        if "status" in changes:
            changes["status"] = Status.parse(changes["status"])
        if not changes:
            return
        cls.backend().update(ticket_id, changes)

    @classmethod
    def comment(cls, ticket_id: str, text: str, author: str, *, at: datetime | None = None) -> None:
        cls.backend().add_comment(ticket_id, Comment(author=author, text=text, at=at or datetime.now(UTC)))

    def change_status(self, status: Status | str) -> None:
        """Move this ticket to `status` upstream and locally."""
        new_status = Status.parse(status)
        type(self).update(self.ticket_id, status=new_status)
        self.data.status = new_status


__all__ = [
    "BackendSource",
    "Comment",
    "Status",
    "Ticket",
    "TicketBackend",
    "TicketData",
    "TicketNotFound",
    "parse_datetime",
]

"""`InMemoryBackend`: a complete, thread-safe ticket backend in process memory, for tests and prototypes."""

from __future__ import annotations

import bisect
import copy
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from data_manager.collectors.tickets.errors import TicketNotFound, UnknownFieldError
from data_manager.collectors.tickets.model import Comment, Status, TicketData


@dataclass
class _Record:
    data: TicketData
    comments: list[Comment] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    updated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class InMemoryBackend:
    """Stores copies, so editing what `read` returns never changes the stored ticket.

    Ids are `T000001`, `T000002`, ...; comments are kept in chronological order whatever order they
    were added in. `clock` is injectable so tests can control created/updated times.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._records: dict[str, _Record] = {}
        self._next = 1
        self._lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    def create(self, data: TicketData) -> str:
        with self._lock:
            ticket_id = f"T{self._next:06d}"
            self._next += 1
            now = self._clock()
            self._records[ticket_id] = _Record(data=copy.deepcopy(data), created_at=now, updated_at=now)
            return ticket_id

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        with self._lock:
            record = self._get(ticket_id)
            return copy.deepcopy(record.data), list(record.comments)

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            record = self._get(ticket_id)
            unknown = set(fields) - TicketData.field_names()
            if unknown:
                raise UnknownFieldError(f"unknown ticket field(s): {', '.join(sorted(unknown))}")
            changes = dict(fields)
            if "status" in changes:
                changes["status"] = Status.parse(changes["status"])
            record.data = record.data.with_changes(changes)
            record.updated_at = self._clock()

    def add_comment(self, ticket_id: str, comment: Comment) -> None:
        with self._lock:
            record = self._get(ticket_id)
            keys = [c.at for c in record.comments]
            # bisect_right keeps comments with equal timestamps in insertion order.
            record.comments.insert(bisect.bisect_right(keys, comment.at), comment)
            record.updated_at = self._clock()

    def delete(self, ticket_id: str) -> None:
        with self._lock:
            self._get(ticket_id)
            del self._records[ticket_id]

    def times(self, ticket_id: str) -> tuple[datetime, datetime]:
        """(created_at, updated_at) of a ticket."""
        with self._lock:
            record = self._get(ticket_id)
            return record.created_at, record.updated_at

    def ids_changed_since(self, since: datetime | None) -> Iterator[tuple[str, datetime]]:
        """(id, updated_at) of tickets updated at or after `since` (all when None), oldest first."""
        with self._lock:
            rows = [(rec.updated_at, tid) for tid, rec in self._records.items() if since is None or rec.updated_at >= since]
        for updated_at, ticket_id in sorted(rows):
            yield ticket_id, updated_at

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def _get(self, ticket_id: str) -> _Record:
        try:
            return self._records[ticket_id]
        except KeyError:
            raise TicketNotFound(ticket_id, "the in-memory backend") from None

"""Group commit for the resync: tickets from many fetch threads stored in batches, one transaction each.

A full resync stores thousands of tickets; one transaction and two fsyncs each cost more than the
fetch itself against a fast upstream. `GroupCommitter` collects what the fetch threads hand it and
stores it with `PersistenceService.upsert_many` once `max_batch` tickets are waiting or the oldest has
waited `max_delay` seconds, in its own thread, so fetching goes on while a batch commits. Each ticket's
outcome (or error) goes to the callback given with it once its batch is durable; `close()` flushes
the rest, so whoever advances a cursor after `close()` never moves it past an uncommitted ticket.

A batch the store refuses as a whole is retried one ticket at a time (`upsert_each`), so only the
refused ticket fails. `submit` blocks while `max_pending` tickets wait, which
keeps memory flat however fast the fetches are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from data_manager.collectors.persistence import UpsertOutcome
from data_manager.collectors.store import TicketStore, upsert_each
from data_manager.collectors.tickets.ticket_resource import TicketResource

log = logging.getLogger(__name__)

MAX_BATCH = 100
MAX_DELAY_SECONDS = 0.5

Done = Callable[[UpsertOutcome | None, Exception | None], None]  # (outcome, None) or (None, error)


@dataclass
class _Item:
    resource: TicketResource
    updated_at: datetime | str | None
    done: Done
    queued_at: float


class GroupCommitter:
    """Stores submitted tickets in batches of up to `max_batch`, at most `max_delay` seconds after submission."""

    def __init__(
        self,
        persistence: TicketStore,
        *,
        max_batch: int = MAX_BATCH,
        max_delay: float = MAX_DELAY_SECONDS,
        max_pending: int | None = None,
        name: str = "group-commit",
    ) -> None:
        self.persistence = persistence
        self.max_batch = max(1, max_batch)
        self.max_delay = max_delay
        self.max_pending = max(self.max_batch, max_pending or 2 * self.max_batch)
        self.batches = 0  # committed batches (for tests and benchmarks)
        self._pending: list[_Item] = []
        self._condition = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, resource: TicketResource, updated_at: datetime | str | None, done: Done) -> None:
        """Queue a ticket; `done` is called from the committer's thread once its batch is settled."""
        with self._condition:
            if self._closing:
                raise RuntimeError("the group committer is closed")
            while len(self._pending) >= self.max_pending:
                self._condition.wait()
            self._pending.append(_Item(resource, updated_at, done, time.monotonic()))
            if len(self._pending) in (1, self.max_batch):  # the committer's deadline starts, or a batch is full
                self._condition.notify_all()

    def close(self) -> None:
        """Store everything submitted so far and stop; returns once every callback has run."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._thread.join()

    def __enter__(self) -> GroupCommitter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _next_batch(self) -> list[_Item] | None:
        """Wait for a full batch, an old enough ticket or the close; None when closed and drained."""
        with self._condition:
            while True:
                if len(self._pending) >= self.max_batch or (self._closing and self._pending):
                    break
                if self._closing:
                    return None
                if self._pending:
                    wait = self._pending[0].queued_at + self.max_delay - time.monotonic()
                    if wait <= 0:
                        break
                    self._condition.wait(wait)
                else:
                    self._condition.wait()
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._condition.notify_all()  # submitters waiting for room
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        results = upsert_each(self.persistence, [(item.resource, item.updated_at) for item in batch])
        self.batches += 1
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                self._report(item, None, result)
            else:
                self._report(item, result, None)

    @staticmethod
    def _report(item: _Item, outcome: UpsertOutcome | None, error: Exception | None) -> None:
        try:
            item.done(outcome, error)
        except Exception:  # a failing callback must not stop the batches after it
            log.exception("a group-commit callback failed")

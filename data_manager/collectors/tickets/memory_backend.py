"""Ticket backends for tests and prototypes.

- `InMemoryBackend`: complete and thread-safe, in process memory.
- `FileBackedBackend`: the same, kept in a JSON file so several processes (a web server, workers, a
  test) see the same tickets and the tickets survive restarts.

Both can simulate a misbehaving upstream (`inject_fault`): fail the next N fetches of a ticket with
a transient or permanent error, or stall a fetch, and they count fetches, which is how the
pipeline's retry and coalescing behaviour is demonstrated against real processes.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data_manager.collectors.tickets.errors import TicketNotFound, UnknownFieldError
from data_manager.collectors.tickets.model import Comment, Status, TicketData

FAULT_KINDS = ("transient", "permanent")


@dataclass(frozen=True)
class FetchFault:
    """What a simulated upstream does to one fetch: fail with an error, and/or stall after reading."""

    error: str | None = None  # "transient" | "permanent"
    status: int | None = None
    retry_after: float | None = None
    message: str = ""
    delay_seconds: float = 0.0


@dataclass
class _Fault:
    fail_next: int = 0
    error: str = "transient"
    status: int | None = None
    retry_after: float | None = None
    message: str = ""
    delay_next: int = 0
    delay_seconds: float = 0.0


class InMemoryBackend:
    """Stores copies, so editing what `read` returns never changes the stored ticket.

    Keeps the seed's layout: `_db` (id -> TicketData), `_comments` (id -> comments, chronological whatever
    order they were added in) and `_seq` (the last id issued; ids are `T000001`, `T000002`, ...), plus
    `_times` (id -> created, updated). `clock` is injectable so tests can control those times.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._db: dict[str, TicketData] = {}
        self._comments: dict[str, list[Comment]] = {}
        self._seq = 0
        self._times: dict[str, tuple[datetime, datetime]] = {}
        self._lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._faults: dict[str, _Fault] = {}
        self._fetches: dict[str, int] = {}

    def _next_id(self) -> str:
        self._seq += 1
        return f"T{self._seq:06d}"

    def create(self, data: TicketData) -> str:
        with self._lock:
            ticket_id = self._next_id()
            now = self._clock()
            self._db[ticket_id] = copy.deepcopy(data)
            self._comments[ticket_id] = []
            self._times[ticket_id] = (now, now)
            return ticket_id

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        with self._lock:
            self._require(ticket_id)
            return copy.deepcopy(self._db[ticket_id]), list(self._comments.get(ticket_id, []))

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            self._require(ticket_id)
            unknown = set(fields) - TicketData.field_names()
            if unknown:
                raise UnknownFieldError(f"unknown ticket field(s): {', '.join(sorted(unknown))}")
            changes = dict(fields)
            if "status" in changes:
                changes["status"] = Status.parse(changes["status"])
            self._db[ticket_id] = self._db[ticket_id].with_changes(changes)
            self._touch(ticket_id)

    def add_comment(self, ticket_id: str, comment: Comment) -> None:
        with self._lock:
            self._require(ticket_id)
            comments = self._comments.setdefault(ticket_id, [])
            # bisect_right keeps comments with equal timestamps in insertion order.
            comments.insert(bisect.bisect_right([c.at for c in comments], comment.at), comment)
            self._touch(ticket_id)

    def delete(self, ticket_id: str) -> None:
        with self._lock:
            self._require(ticket_id)
            del self._db[ticket_id]
            self._comments.pop(ticket_id, None)
            self._times.pop(ticket_id, None)

    def times(self, ticket_id: str) -> tuple[datetime, datetime]:
        """(created_at, updated_at) of a ticket."""
        with self._lock:
            self._require(ticket_id)
            return self._times[ticket_id]

    def ids_changed_since(self, since: datetime | None) -> Iterator[tuple[str, datetime]]:
        """(id, updated_at) of tickets updated at or after `since` (all when None), oldest first."""
        with self._lock:
            rows = [
                (updated_at, tid)
                for tid, (_, updated_at) in self._times.items()
                if since is None or updated_at >= since
            ]
        for updated_at, ticket_id in sorted(rows):
            yield ticket_id, updated_at

    def __len__(self) -> int:
        with self._lock:
            return len(self._db)

    # -- a simulated upstream's bad days ----------------------------------------------------------
    def inject_fault(
        self,
        ticket_id: str,
        *,
        fail_next: int = 0,
        error: str = "transient",
        status: int | None = None,
        retry_after: float | None = None,
        message: str = "",
        delay_next: int = 0,
        delay_seconds: float = 0.0,
    ) -> None:
        """Make the next `fail_next` fetches of `ticket_id` fail and the next `delay_next` stall."""
        if error not in FAULT_KINDS:
            raise ValueError(f"error must be one of {', '.join(FAULT_KINDS)}, not {error!r}")
        if fail_next < 0 or delay_next < 0 or delay_seconds < 0:
            raise ValueError("fail_next, delay_next and delay_seconds must not be negative")
        with self._lock:
            self._faults[ticket_id] = _Fault(fail_next, error, status, retry_after, message, delay_next, delay_seconds)

    def record_fetch(self, ticket_id: str) -> FetchFault:
        """Count one fetch of `ticket_id` and use up the fault planned for it, if any."""
        with self._lock:
            self._fetches[ticket_id] = self._fetches.get(ticket_id, 0) + 1
            fault = self._faults.get(ticket_id)
            if fault is None:
                return FetchFault()
            result = FetchFault()
            if fault.fail_next > 0:
                fault.fail_next -= 1
                result = FetchFault(fault.error, fault.status, fault.retry_after, fault.message)
            elif fault.delay_next > 0:
                fault.delay_next -= 1
                result = FetchFault(delay_seconds=fault.delay_seconds)
            if fault.fail_next == 0 and fault.delay_next == 0:
                del self._faults[ticket_id]
            return result

    def fetch_count(self, ticket_id: str) -> int:
        """How many times `ticket_id` was fetched (failed fetches included)."""
        with self._lock:
            return self._fetches.get(ticket_id, 0)

    def _require(self, ticket_id: str) -> None:
        if ticket_id not in self._db:
            raise TicketNotFound(ticket_id, "the in-memory backend")

    def _touch(self, ticket_id: str) -> None:
        created_at, _ = self._times[ticket_id]
        self._times[ticket_id] = (created_at, self._clock())

    # -- the file format of `FileBackedBackend` ---------------------------------------------------------------
    def _ticket_to_json(self, ticket_id: str) -> dict[str, Any]:
        created_at, updated_at = self._times[ticket_id]
        return {
            "data": self._db[ticket_id].to_dict(),
            "comments": [comment.to_dict() for comment in self._comments.get(ticket_id, [])],
            "created_at": created_at.isoformat(),
            "updated_at": updated_at.isoformat(),
        }

    def _load_ticket_json(self, ticket_id: str, raw: Mapping[str, Any]) -> None:
        self._db[ticket_id] = TicketData.from_dict(raw["data"])
        self._comments[ticket_id] = [Comment.from_dict(c) for c in raw.get("comments", [])]
        self._times[ticket_id] = (datetime.fromisoformat(raw["created_at"]), datetime.fromisoformat(raw["updated_at"]))


class FileBackedBackend(InMemoryBackend):
    """An `InMemoryBackend` whose state lives in a JSON file shared by every process that opens it.

    Every operation runs under an exclusive `flock` on `<path>.lock`, reloads the file when another
    process replaced it, and (for changes) writes it back atomically (temp file + rename), so
    concurrent processes never lose each other's changes and readers never see a torn file.
    """

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._loaded_stamp: tuple[int, int, int] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._synced(write=not self.path.exists()):
            pass

    @contextlib.contextmanager
    def _synced(self, *, write: bool) -> Iterator[None]:
        with self._lock, open(self._lock_path, "a+b") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                self._reload_if_changed()
                yield
                if write:
                    self._save()
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload_if_changed(self) -> None:
        stamp = self._stamp()
        if stamp is None or stamp == self._loaded_stamp:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"memory ticket store {self.path} is not valid JSON: {exc}") from None
        self._db, self._comments, self._times = {}, {}, {}
        for tid, rec in raw.get("tickets", {}).items():
            self._load_ticket_json(tid, rec)
        self._seq = int(raw.get("next", len(self._db) + 1)) - 1  # the file keeps the next id to issue
        self._faults = {tid: _Fault(**f) for tid, f in raw.get("faults", {}).items()}
        self._fetches = {tid: int(n) for tid, n in raw.get("fetches", {}).items()}
        self._loaded_stamp = stamp

    def _save(self) -> None:
        document = {
            "next": self._seq + 1,
            "tickets": {tid: self._ticket_to_json(tid) for tid in self._db},
            "faults": {tid: vars(f) for tid, f in self._faults.items()},
            "fetches": self._fetches,
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, sort_keys=True, default=str)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._loaded_stamp = self._stamp()

    # Every public operation goes through the file; reads only reload, changes also save.
    def create(self, data: TicketData) -> str:
        with self._synced(write=True):
            return super().create(data)

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        with self._synced(write=False):
            return super().read(ticket_id)

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        with self._synced(write=True):
            super().update(ticket_id, fields)

    def add_comment(self, ticket_id: str, comment: Comment) -> None:
        with self._synced(write=True):
            super().add_comment(ticket_id, comment)

    def delete(self, ticket_id: str) -> None:
        with self._synced(write=True):
            super().delete(ticket_id)

    def times(self, ticket_id: str) -> tuple[datetime, datetime]:
        with self._synced(write=False):
            return super().times(ticket_id)

    def ids_changed_since(self, since: datetime | None) -> Iterator[tuple[str, datetime]]:
        with self._synced(write=False):
            rows = list(super().ids_changed_since(since))
        yield from rows

    def __len__(self) -> int:
        with self._synced(write=False):
            return super().__len__()

    def inject_fault(self, ticket_id: str, **fault: Any) -> None:
        with self._synced(write=True):
            super().inject_fault(ticket_id, **fault)

    def record_fetch(self, ticket_id: str) -> FetchFault:
        with self._synced(write=True):
            return super().record_fetch(ticket_id)

    def fetch_count(self, ticket_id: str) -> int:
        with self._synced(write=False):
            return super().fetch_count(ticket_id)

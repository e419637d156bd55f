"""`TicketStore`: the public API of a ticket store, which both stores implement.

The pipeline (sync, resync), the `tickets` command and the worker's housekeeping use only this, so
the embedded store (`PersistenceService`: files + SQLite in the data directory) and the PostgreSQL
store (`PostgresPersistence`, for workers on many machines) are interchangeable; which one runs is
chosen once, by `data_manager.store.url`, in the composition root. mypy checks that both satisfy it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from data_manager.collectors.catalog import CatalogEntry
from data_manager.collectors.changes import Change
from data_manager.collectors.persistence import Removal, StoredTicket, StoreUnavailable, UpsertOutcome
from data_manager.collectors.resource_base import BaseResource
from data_manager.collectors.tickets.ticket_resource import TicketResource


class TicketStore(Protocol):
    """Idempotent, atomic, ordered storage of tickets, with a removal log, a trash and sync state."""

    # -- the seed's API: always files, whichever store keeps the tickets --------------------------
    def persist_resource(self, resource: BaseResource, target_dir: str | os.PathLike[str]) -> Path: ...

    # -- tickets -------------------------------------------------------------------------------------
    def upsert(self, resource: TicketResource, *, updated_at: datetime | str | None = None) -> UpsertOutcome: ...

    def upsert_many(self, items: Iterable[tuple[TicketResource, datetime | str | None]]) -> list[UpsertOutcome]:
        """Several upserts with one commit (group commit); the outcomes in the order given."""
        ...

    def delete(self, source_type: str, ticket_id: str, *, reason: str = ...) -> bool: ...

    def has_copy(self, source_type: str, ticket_id: str) -> bool: ...

    def get(self, source_type: str, ticket_id: str) -> StoredTicket | None: ...

    def get_by_hash(self, hash_: str) -> StoredTicket | None: ...

    def list_entries(self, source_type: str | None = None) -> list[CatalogEntry]: ...

    def iter_entries(self, source_type: str | None = None) -> Iterator[CatalogEntry]: ...

    def ticket_ids(self, source_type: str) -> set[str]: ...

    def count(self, source_type: str | None = None) -> int: ...

    # -- removals and the trash ---------------------------------------------------------------------
    def removals(self, *, since: datetime | None = None, source_type: str | None = None) -> list[Removal]: ...

    def restore(self, source_type: str, ticket_id: str) -> Removal: ...

    def purge_trash(self, older_than: timedelta, *, now: datetime | None = None) -> int: ...

    # -- the change feed: every committed write and removal, numbered in commit order -------------------
    def changes(self, after: int = 0, limit: int = 1000) -> list[Change]: ...

    def last_change_seq(self) -> int: ...

    def wait_for_changes(self, after: int, timeout: float) -> bool: ...

    # -- sync state ----------------------------------------------------------------------------------
    def get_cursor(self, system: str) -> datetime | None: ...

    def set_cursor(self, system: str, when: datetime) -> None: ...

    def record_resync(self, system: str, summary: dict[str, Any]) -> None: ...

    def last_resync(self, system: str) -> dict[str, Any] | None: ...

    # -- the store itself ----------------------------------------------------------------------------
    def location(self, hash_: str) -> str:
        """Where a ticket is kept, for people (a file path, or the database with its password hidden)."""
        ...

    def require_current_schema(self) -> None:
        """Raise `PersistenceError` naming `tickets db upgrade` when the schema is older than this code."""
        ...

    def upgrade_schema(self) -> list[str]:
        """Bring the schema up to date in place; returns what was applied (nothing: already current)."""
        ...

    def close(self) -> None: ...


Written = UpsertOutcome | Exception  # a ticket's outcome in `upsert_each`, or why it was not stored


def upsert_each(store: TicketStore, items: Sequence[tuple[TicketResource, datetime | str | None]]) -> list[Written]:
    """Store `items` with one group commit, and say per ticket what became of it.

    A batch the store refuses as a whole (one ticket's id maps to another's file name) is written again one
    ticket at a time, so only the refused tickets fail. A store that cannot be reached fails them all at once:
    one write per ticket would wait out the connection timeout once per ticket.
    """
    try:
        return list(store.upsert_many(items))
    except StoreUnavailable as exc:
        return [exc] * len(items)
    except Exception:
        pass
    results: list[Written] = []
    for resource, updated_at in items:
        try:
            results.append(store.upsert(resource, updated_at=updated_at))
        except StoreUnavailable as exc:
            return results + [exc] * (len(items) - len(results))
        except Exception as exc:
            results.append(exc)
    return results

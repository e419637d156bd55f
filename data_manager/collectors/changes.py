"""The change feed's entry type, shared by every store: what an indexer downstream reads to stay current.

Every write and every removal a store commits gets the next sequence number in the same transaction, so a
reader that remembers the last `seq` it handled and asks `changes(after=seq)` sees each change once, in
commit order, with no gaps left behind by a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ChangeKind(str, Enum):
    WRITTEN = "written"  # the ticket's files were (re)written: read its content again
    REMOVED = "removed"  # the copy was removed (to the trash): drop it from the index

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Change:
    """One committed change: `(seq, system, ticket id, hash, kind)`; `system` is the instance name."""

    seq: int
    system: str
    ticket_id: str
    hash: str
    kind: ChangeKind

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "system": self.system,
            "ticket_id": self.ticket_id,
            "hash": self.hash,
            "kind": str(self.kind),
        }

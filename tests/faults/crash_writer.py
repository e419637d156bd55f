"""Run by the crash-during-write test: write 1 MB tickets through persistence until killed.

Each version is `Title: ...`, `Ticket: memory:<id>`, `Updated: <time>` headers, a 1 MB body and a
final `END <version>` line, so a torn file (a prefix of a version) is easy to recognise.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.ticket_resource import TicketResource

BODY = 1 << 20
IDS = [f"T{n}" for n in range(1, 6)]


def version_text(ticket_id: str, version: int, when: datetime) -> str:
    filler = (f"{ticket_id} version {version} " * (BODY // 20))[:BODY]
    return f"Title: crash {ticket_id}\nTicket: memory:{ticket_id}\nUpdated: {when.isoformat()}\n\n{filler}\nEND {version}\n"


def main(data_path: str, start_version: int) -> None:
    persistence = PersistenceService(data_path)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    version = start_version
    while True:
        for ticket_id in IDS:
            when = base + timedelta(seconds=version)
            resource = TicketResource(
                ticket_id=ticket_id,
                content=version_text(ticket_id, version, when),
                source_type="memory",
                metadata={"updated_at": when.isoformat(), "version": version},
            )
            persistence.upsert(resource, updated_at=when)
            print(version, flush=True)
            version += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

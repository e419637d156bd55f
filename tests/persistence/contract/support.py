"""Resources for the contract tests."""

from __future__ import annotations

from datetime import UTC, datetime

from data_manager.collectors.tickets import TicketResource

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def resource(
    content: str = "hello", updated: datetime | None = T0, ticket_id: str = "PROJ-7", **meta: str
) -> TicketResource:
    metadata: dict[str, str] = {"url": f"https://jira/browse/{ticket_id}", **meta}
    if updated is not None:
        metadata["updated_at"] = updated.isoformat()
    return TicketResource(ticket_id=ticket_id, content=content, source_type="jira", created_at=T0, metadata=metadata)

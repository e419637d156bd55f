"""Resources for the contract tests."""

from __future__ import annotations

import random
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


def race_rounds(seed: int, rounds: int, *, batched: bool = False) -> list[list[tuple[str, int]]]:
    """The (ticket, upstream minute) writes one racing writer makes, round by round (one per round unless batched).

    Writers and the test that checks them both call this: replaying the same seed tells which version of each
    ticket is the newest, so the store must end there whatever order the processes ran in.
    """
    rng = random.Random(seed)
    plan: list[list[tuple[str, int]]] = []
    for _ in range(rounds):
        writes = []
        for _ in range(rng.randrange(1, 6) if batched else 1):
            minute = rng.randrange(0, 1000)
            writes.append((f"PROJ-{rng.randrange(3)}", minute))
        plan.append(writes)
    return plan


def newest_minutes(seeds: range, rounds: int, *, batched: bool = False) -> dict[str, int]:
    """Each ticket's newest upstream minute over every writer's `race_rounds`."""
    newest: dict[str, int] = {}
    for seed in seeds:
        for writes in race_rounds(seed, rounds, batched=batched):
            for ticket, minute in writes:
                newest[ticket] = max(newest.get(ticket, -1), minute)
    return newest

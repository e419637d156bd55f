"""Shared fixtures: every test starts with no registered ticket backends.

The `Ticket` facade's class-level registry is the one process-wide state the seed's API requires
(`Ticket.register_backend` / `use_backend` are classmethods); it is reset around every test. Nothing
else is process-wide: in-memory stores belong to the `TicketManager` (or config build) that made them.

Tests that need Redis (every one using the `redis_database` fixture, directly or through another
fixture) are marked `redis`, so `-m "not redis"` runs the rest on a machine without one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from data_manager.collectors.tickets.model import Ticket
from tests.pipeline_support.fixtures import (  # noqa: F401
    app_config,
    config_path,
    module_redis_url,
    redis_conn,
    redis_database,
    redis_url,
)
from tests.pipeline_support.postgres_db import postgres_url  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_ticket_registry() -> Iterator[None]:
    Ticket.reset_backends()
    yield
    Ticket.reset_backends()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "redis_database" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)

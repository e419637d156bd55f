"""Shared fixtures: every test starts with no registered ticket backends and no in-memory stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from data_manager.collectors.tickets.integrations import memory
from data_manager.collectors.tickets.model import Ticket


@pytest.fixture(autouse=True)
def _isolated_ticket_registry() -> Iterator[None]:
    Ticket.reset_backends()
    memory.reset_stores()
    yield
    Ticket.reset_backends()
    memory.reset_stores()

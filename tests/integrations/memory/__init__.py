"""The in-memory system's tests, and `store_of` for tests that put tickets into a manager's in-memory instance."""

from __future__ import annotations

from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.collectors.tickets.memory_backend import InMemoryBackend
from data_manager.collectors.tickets.ticket_manager import TicketManager


def store_of(manager: TicketManager, name: str = "memory") -> InMemoryBackend:
    """The tickets of the manager's in-memory instance `name` (the manager owns its stores: nothing process-wide)."""
    integration = manager.integration(name)
    assert isinstance(integration, InMemoryTickets), f"{name} is not an in-memory instance"
    return integration.backend

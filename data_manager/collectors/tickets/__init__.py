"""Tickets: the model, the `Ticket` facade, normalisation, integrations and the manager.

Integration classes (`RedmineTickets`, `JiraTickets`, ...) are imported on first access so that
importing the package stays cheap and one system's import problem never breaks the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from data_manager.collectors.tickets.errors import TicketGone, TicketNotFound
from data_manager.collectors.tickets.memory_backend import InMemoryBackend
from data_manager.collectors.tickets.model import Comment, Status, Ticket, TicketBackend, TicketData
from data_manager.collectors.tickets.ticket_resource import TicketResource

_LAZY = {
    "TicketManager": "data_manager.collectors.tickets.ticket_manager",
    "RedmineTickets": "data_manager.collectors.tickets.integrations.redmine",
    "JiraTickets": "data_manager.collectors.tickets.integrations.jira",
    "BugzillaBackend": "data_manager.collectors.tickets.integrations.bugzilla",
    "SalesforceBackend": "data_manager.collectors.tickets.integrations.salesforce",
    "InMemoryTickets": "data_manager.collectors.tickets.integrations.memory",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Comment",
    "InMemoryBackend",
    "Status",
    "Ticket",
    "TicketBackend",
    "TicketData",
    "TicketGone",
    "TicketNotFound",
    "TicketResource",
]

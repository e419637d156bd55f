"""Bugzilla: `BugzillaBackend` (backend.py) on the REST client (client.py) and pure mappings (mapping.py)."""

from data_manager.collectors.tickets.integrations.bugzilla.backend import BugzillaBackend, BugzillaConfigSchema

__all__ = ["BugzillaBackend", "BugzillaConfigSchema"]

"""`TicketManager`: builds the enabled integrations from config and resyncs them into persistence."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from data_manager.collectors.store import TicketStore
from data_manager.collectors.tickets.integration import SharedResources, TicketIntegration
from data_manager.collectors.tickets.resync import (
    DeleteGuard,
    Dispatcher,
    ProgressFactory,
    ResyncSummary,
    resync_system,
)
from data_manager.config import AppConfig, parse_config

log = logging.getLogger(__name__)


@dataclass
class CollectResult:
    """Per-system summaries; `ok` is false when any system or ticket failed."""

    summaries: dict[str, ResyncSummary] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(summary.ok for summary in self.summaries.values())

    @property
    def failed_systems(self) -> dict[str, str]:
        return {name: s.error or f"{s.failed} ticket(s) failed" for name, s in self.summaries.items() if not s.ok}


class TicketManager:
    """Holds one integration per enabled ticket system instance; disabled ones are skipped.

    `dm_config` is the `data_manager` mapping of config.yaml (validated here), or an already-loaded
    `AppConfig`. `integrations` is the list the seed declares, ordered by instance name; look one up
    with `integration(name)`. The manager owns what its integrations share (`shared`, e.g. the in-memory
    system's stores): two managers never share state by accident; pass `shared` to build on another's.
    """

    def __init__(self, dm_config: Mapping[str, Any] | AppConfig, *, shared: SharedResources | None = None) -> None:
        self.dm_config = dm_config  # the seed's attribute: the mapping (or AppConfig) given
        config = dm_config if isinstance(dm_config, AppConfig) else parse_config({"data_manager": dict(dm_config)})
        for name, cfg in config.sources.items():
            if not cfg.get("enabled"):
                log.debug("ticket system %s is disabled; skipped", name)
        self.shared = shared if shared is not None else SharedResources()
        # The seed's `integrations: List[TicketIntegration]`.
        self.integrations: list[TicketIntegration] = sorted(
            config.build_integrations(self.shared), key=lambda integration: integration.name
        )

    @property
    def systems(self) -> list[str]:
        """The enabled instances' names, in the order `resync` visits them."""
        return [integration.name for integration in self.integrations]

    def integration(self, name: str) -> TicketIntegration:
        """The enabled instance called `name`; a KeyError naming the enabled ones otherwise."""
        for integration in self.integrations:
            if integration.name == name:
                return integration
        enabled = ", ".join(self.systems) or "none"
        raise KeyError(f"ticket system {name!r} is not enabled (enabled: {enabled})")

    def ticket_backends(self) -> list[tuple[str, TicketIntegration]]:
        """(name, integration) of every enabled instance: what `Ticket.configure(manager)` registers."""
        return [(integration.name, integration) for integration in self.integrations]

    def resync(
        self,
        persistence: TicketStore,
        *,
        systems: Iterable[str] | None = None,
        since: datetime | None = None,
        full: bool = False,
        use_cursor: bool = True,
        concurrency: int | None = None,
        progress_factory: ProgressFactory | None = None,
        dispatcher: Dispatcher | None = None,
        guard: DeleteGuard | None = None,
    ) -> CollectResult:
        """Resync each selected system in turn; one failing system never stops the others.

        Inline unless another `dispatcher` is given; a full resync is held by the mass-deletion `guard`
        (default `DeleteGuard()`: at most 10% or 20 tickets).
        """
        result = CollectResult()
        for system in systems or self.systems:
            result.summaries[system] = resync_system(
                self.integration(system),
                persistence,
                since=since,
                full=full,
                use_cursor=use_cursor,
                concurrency=concurrency,
                progress_factory=progress_factory,
                dispatcher=dispatcher,
                guard=guard,
            )
        return result

    def collect(self, persistence: TicketStore) -> CollectResult:
        """Fetch every ticket of every enabled system and persist it (no deletions, cursor ignored)."""
        result = self.resync(persistence, use_cursor=False)
        for system, reason in result.failed_systems.items():
            log.error("collect: %s failed: %s", system, reason)
        return result

    def close(self) -> None:
        for integration in self.integrations:
            integration.close()

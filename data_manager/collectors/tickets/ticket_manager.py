"""`TicketManager`: builds the enabled integrations from config and resyncs them into persistence."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.errors import ConfigError
from data_manager.collectors.tickets.integration import TicketIntegration, integration_class
from data_manager.collectors.tickets.resync import (
    DeleteGuard,
    Dispatcher,
    ProgressFactory,
    ResyncSummary,
    resync_system,
)

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
    """Holds one integration per enabled ticket system; disabled systems are skipped.

    `dm_config` is the `data_manager` mapping of config.yaml (or an already-loaded `AppConfig`).
    """

    def __init__(self, dm_config: Mapping[str, Any] | Any) -> None:
        from data_manager.config import AppConfig, parse_config

        self.dm_config = dm_config  # the seed's attribute: the mapping (or AppConfig) given
        if isinstance(dm_config, AppConfig):
            sources = dm_config.sources
        else:
            sources = parse_config({"data_manager": dict(dm_config)}).sources
        # The seed's `integrations: List[TicketIntegration]`; `integration(name)` looks one up by name.
        self.integrations: list[TicketIntegration] = []
        self._by_name: dict[str, TicketIntegration] = {}
        for system, cfg in sorted(sources.items()):
            if not cfg.get("enabled"):
                log.debug("ticket system %s is disabled; skipped", system)
                continue
            key_path = f"data_manager.sources.tickets.{system}"
            try:
                integration = integration_class(system, key_path).from_config(cfg)
            except ConfigError:
                raise
            except (TypeError, ValueError, KeyError) as exc:
                raise ConfigError(str(exc), key_path) from exc
            self.integrations.append(integration)
            self._by_name[system] = integration

    @property
    def systems(self) -> list[str]:
        return list(self._by_name)

    def integration(self, system: str) -> TicketIntegration:
        try:
            return self._by_name[system]
        except KeyError:
            enabled = ", ".join(self._by_name) or "none"
            raise KeyError(f"ticket system {system!r} is not enabled (enabled: {enabled})") from None

    def resync(
        self,
        persistence: PersistenceService,
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

    def collect(self, persistence: PersistenceService) -> CollectResult:
        """Fetch every ticket of every enabled system and persist it (no deletions, cursor ignored)."""
        result = self.resync(persistence, use_cursor=False)
        for system, reason in result.failed_systems.items():
            log.error("collect: %s failed: %s", system, reason)
        return result

    def close(self) -> None:
        for integration in self.integrations:
            integration.close()

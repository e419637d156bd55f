"""What a process needs to run jobs: config, integrations, persistence, Redis, built once per process.

RQ forks a work horse per job. Everything here is built once, in the worker before its first fork, and
inherited by every horse: config, integrations, the Redis client and the persistence service. No
connection is shared across a fork: redis-py's pool notices the new process id and opens its own
connections, and the catalog opens a per-process SQLite connection (while the worker keeps its own
open, so a horse never has to recover the WAL and the schema is never re-run).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from redis import Redis

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integration import TicketIntegration
from data_manager.collectors.tickets.ticket_manager import TicketManager
from data_manager.config import AppConfig, load_config
from service.coalesce import Coalescer
from service.connection import redis_client
from service.metrics import Metrics
from service.retry import RetryPolicy
from service.settings import Names, PipelineSettings


class Runtime:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.settings = PipelineSettings.from_config(config)
        self.names: Names = self.settings.names
        self.policy = RetryPolicy(
            self.settings.max_attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds
        )
        self._manager: TicketManager | None = None
        self._lock = threading.Lock()
        self._redis: Redis | None = None
        self._persistence: PersistenceService | None = None
        self._coalescer: Coalescer | None = None

    @classmethod
    def load(cls, config_path: str | os.PathLike[str] | None = None) -> Runtime:
        return cls(load_config(config_path))

    @property
    def manager(self) -> TicketManager:
        with self._lock:
            if self._manager is None:
                self._manager = TicketManager(self.config)
            return self._manager

    def integration(self, system: str) -> TicketIntegration:
        from data_manager.collectors.tickets.errors import ConfigError

        try:
            return self.manager.integration(system)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0]), f"data_manager.sources.tickets.{system}") from None

    @property
    def redis(self) -> Redis:
        with self._lock:
            if self._redis is None:
                self._redis = redis_client(
                    self.settings.redis_url, socket_timeout=max(self.settings.socket_timeout, 5.0)
                )
            return self._redis

    @property
    def persistence(self) -> PersistenceService:
        with self._lock:
            if self._persistence is None:
                self._persistence = PersistenceService(Path(self.config.data_path))
            return self._persistence

    @property
    def coalescer(self) -> Coalescer:
        redis = self.redis
        with self._lock:
            if self._coalescer is None:
                self._coalescer = Coalescer(redis, self.names, job_timeout=self.settings.job_timeout_seconds)
            return self._coalescer

    @property
    def metrics(self) -> Metrics:
        return self.coalescer.metrics

    def prepare_for_jobs(self) -> None:
        """Build what every job needs once, in the process that forks the jobs (see the module docstring)."""
        self.manager  # noqa: B018 - integrations, before the first fork
        self.coalescer  # noqa: B018 - the Redis client and scripts; connections open lazily per process
        self.persistence  # noqa: B018 - opens the catalog and keeps it open for the worker's lifetime


_current: dict[str, Runtime] = {}
_current_lock = threading.Lock()


def current_runtime() -> Runtime:
    """The runtime for this process's config (`TICKETS_CONFIG`, else ./config.yaml), loaded once."""
    path = os.environ.get("TICKETS_CONFIG") or "config.yaml"
    with _current_lock:
        runtime = _current.get(path)
        if runtime is None:
            runtime = _current[path] = Runtime.load(path)
        return runtime


def install_runtime(runtime: Runtime, config_path: str) -> None:
    """Make `runtime` the one jobs in this process (and its forks) use for `config_path`."""
    os.environ["TICKETS_CONFIG"] = config_path
    with _current_lock:
        _current[config_path] = runtime

"""What a process needs to run jobs: config, integrations, persistence, Redis, built once per process.

RQ forks a work horse per job. Config and integrations (no open connections yet) are built once in
the worker and inherited; SQLite and Redis connections must never cross a fork, so those are
rebuilt whenever the process id changes.
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
        self._pid = -1
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

    def _per_process(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._redis = redis_client(self.settings.redis_url, socket_timeout=max(self.settings.socket_timeout, 5.0))
            self._persistence = None
            self._coalescer = None

    @property
    def redis(self) -> Redis:
        with self._lock:
            self._per_process()
            assert self._redis is not None
            return self._redis

    @property
    def persistence(self) -> PersistenceService:
        with self._lock:
            self._per_process()
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

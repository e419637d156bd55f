"""The composition root: everything a process of the pipeline needs, built from config in one place.

The web app, the worker and the `tickets` command each build one `Runtime` with their `Role`; it
makes the Redis clients (one timeout policy, see `service.connection.Role`), the metrics, the
coalescer, persistence, the retry policy and the integrations. Nothing else builds them.

The worker forks a work horse (one long-lived horse by default, or one per job with `--fork`). Everything
here is built once, in the worker before its first fork, and inherited by every horse: config, integrations,
the Redis client and the persistence service. A horse running jobs in several threads gives each thread its
own integrations (`integrations_per_thread`) and the catalog a connection per thread. No
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
from data_manager.collectors.postgres import PoolSettings, PostgresPersistence
from data_manager.collectors.store import TicketStore
from data_manager.collectors.tickets.errors import ConfigError
from data_manager.collectors.tickets.integration import TicketIntegration
from data_manager.collectors.tickets.ticket_manager import TicketManager
from data_manager.config import AppConfig, config_path, load_config
from service.coalesce import Coalescer
from service.connection import Role, redis_client
from service.metrics import Metrics
from service.retry import RetryPolicy
from service.settings import Names, PipelineSettings

WEB_METRICS_FLUSH_SECONDS = 1.0  # web processes buffer counters: a webhook costs no extra Redis round trip


class Runtime:
    def __init__(self, config: AppConfig, *, role: Role = Role.WORKER, redis: Redis | None = None) -> None:
        """`redis`: a client to use instead of building one (tests point the web app at a dead Redis)."""
        self.config = config
        self.role = role
        self.settings = PipelineSettings.from_config(config)
        self.names: Names = self.settings.names
        self.policy = RetryPolicy(
            self.settings.max_attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds
        )
        self._given_redis = redis
        self._manager: TicketManager | None = None
        self._per_thread: threading.local | None = None  # set by `integrations_per_thread`
        self._lock = threading.Lock()
        self._redis: Redis | None = None
        self._persistence: TicketStore | None = None
        self._coalescer: Coalescer | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, role: Role = Role.WORKER) -> Runtime:
        """From the config file at `path` (default: `TICKETS_CONFIG`, else ./config.yaml)."""
        return cls(load_config(config_path(path)), role=role)

    # -- integrations --------------------------------------------------------------------------------
    @property
    def manager(self) -> TicketManager:
        per_thread = self._per_thread
        if per_thread is not None:
            manager: TicketManager | None = getattr(per_thread, "manager", None)
            if manager is None:  # its own integrations over what the process's integrations share
                manager = per_thread.manager = TicketManager(self.config, shared=self._process_manager().shared)
            return manager
        return self._process_manager()

    def _process_manager(self) -> TicketManager:
        with self._lock:
            if self._manager is None:
                self._manager = TicketManager(self.config)
            return self._manager

    def integrations_per_thread(self) -> None:
        """From now on each thread gets its own integrations, so its own HTTP sessions (the threaded worker's
        jobs: a `requests.Session` is not promised to be thread-safe, and its keep-alive connections stay warm).
        They share what the process's integrations share (`SharedResources`: the in-memory system's stores)."""
        with self._lock:
            if self._per_thread is None:
                self._per_thread = threading.local()

    def integration(self, system: str) -> TicketIntegration:
        try:
            return self.manager.integration(system)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0]), f"data_manager.sources.tickets.{system}") from None

    # -- Redis and what runs on it -------------------------------------------------------------------
    def connect(self) -> Redis:
        """A new Redis client with this role's timeouts (RQ workers and maintenance threads need their own)."""
        return redis_client(
            self.settings.redis_url, socket_timeout=self.role.socket_timeout(self.settings.socket_timeout)
        )

    @property
    def redis(self) -> Redis:
        """Built once; forked processes share the client object, and redis-py gives each its own connections."""
        with self._lock:
            if self._redis is None:
                self._redis = self._given_redis if self._given_redis is not None else self.connect()
            return self._redis

    @property
    def persistence(self) -> TicketStore:
        """The store `data_manager.store.url` selects (built once; a PostgreSQL pool opens per process)."""
        with self._lock:
            if self._persistence is None:
                self._persistence = build_store(self.config)
            return self._persistence

    def require_current_schema(self) -> None:
        """Refuse to run on a store older than this code (the message names `tickets db upgrade`).

        The embedded store is not even opened here: its catalog upgrades itself when it opens."""
        if not is_embedded(self.config):
            self.persistence.require_current_schema()

    @property
    def coalescer(self) -> Coalescer:
        redis = self.redis
        with self._lock:
            if self._coalescer is None:
                self._coalescer = self.coalescer_on(redis)
            return self._coalescer

    def coalescer_on(self, connection: Redis) -> Coalescer:
        """A coalescer on its own connection (the worker's maintenance thread)."""
        flush = WEB_METRICS_FLUSH_SECONDS if self.role is Role.WEB else None
        metrics = Metrics(connection, self.names, flush_interval=flush)
        return Coalescer(connection, self.names, job_timeout=self.settings.job_timeout_seconds, metrics=metrics)

    @property
    def metrics(self) -> Metrics:
        return self.coalescer.metrics

    def prepare_for_jobs(self) -> None:
        """Build what every job needs once, in the process that forks the jobs (see the module docstring)."""
        self.manager  # noqa: B018 - integrations, before the first fork
        self.coalescer  # noqa: B018 - the Redis client and scripts; connections open lazily per process
        self.persistence  # noqa: B018 - opens the catalog and keeps it open for the worker's lifetime


def is_embedded(config: AppConfig) -> bool:
    """Whether `data_manager.store.url` selects the embedded store (files + SQLite in `data_path`)."""
    return not str(config.store["url"]).startswith(("postgresql://", "postgres://"))


def build_store(config: AppConfig) -> TicketStore:
    """`file:` → the embedded store in `data_path`; `postgresql://...` → PostgreSQL (nothing is connected yet)."""
    store = config.store
    url = str(store["url"])
    if not is_embedded(config):
        return PostgresPersistence(
            url,
            PoolSettings(
                min_size=int(store["pool_min_size"]),
                max_size=int(store["pool_max_size"]),
                statement_timeout_seconds=float(store["statement_timeout_seconds"]),
                connect_timeout_seconds=int(store["connect_timeout_seconds"]),
            ),
        )
    return PersistenceService(Path(config.data_path))

"""One bounded connection pool per process, opened on first use: safe across RQ's fork per job.

Connections are not checked before each use (that would double the round trips of every read): one
broken by a server restart fails its statement, which the job retries, and the pool replaces it.

A work horse forked from the worker inherits the worker's pool object, whose connections are the
parent's sockets and whose threads did not survive the fork. The child never touches them (not even
to close them: libpq's goodbye would end the parent's session) and opens its own pool instead.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from data_manager.collectors.postgres.url import redact_url

# Pools inherited across a fork: kept referenced so the garbage collector never finishes their
# connections in the child (that would close the parent's sessions).
_inherited: list[ConnectionPool] = []


@dataclass(frozen=True)
class PoolSettings:
    min_size: int = 1
    max_size: int = 4
    statement_timeout_seconds: float = 30.0
    connect_timeout_seconds: int = 10
    wait_seconds: float = 30.0  # how long a caller waits for a free connection before an error


class ProcessPool:
    """`connection()` hands out a pooled connection of this process (a new pool after a fork)."""

    def __init__(self, url: str, settings: PoolSettings) -> None:
        self._url = url
        self.settings = settings
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"ProcessPool({redact_url(self._url)!r})"

    def connect_kwargs(self) -> dict[str, object]:
        """For every connection: the statement timeout and a connect timeout."""
        timeout_ms = int(self.settings.statement_timeout_seconds * 1000)
        return {
            "options": f"-c statement_timeout={timeout_ms}",
            "connect_timeout": self.settings.connect_timeout_seconds,
            "application_name": "ticket-collector",
        }

    def pool(self) -> ConnectionPool:
        pid = os.getpid()
        with self._lock:
            if self._pool is not None and self._pid != pid:
                _inherited.append(self._pool)
                self._pool = None
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._url,
                    min_size=self.settings.min_size,
                    max_size=self.settings.max_size,
                    # Autocommit: a read is one round trip; writes open `conn.transaction()` themselves.
                    kwargs={**self.connect_kwargs(), "autocommit": True},
                    timeout=self.settings.wait_seconds,
                    name=f"tickets-{pid}",
                    open=True,
                )
                self._pid = pid
            return self._pool

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
        """A connection of its own, outside the pool (LISTEN, migrations)."""
        return psycopg.connect(self._url, autocommit=autocommit, **self.connect_kwargs())  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            elif self._pool is not None:
                _inherited.append(self._pool)
            self._pool = None

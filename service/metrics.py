"""Counters shared by every process (gunicorn workers, RQ workers, the CLI) in one Redis hash.

Prometheus scrapes one web process, but webhooks arrive at several and jobs finish in others, so
per-process counters would each tell a fraction. A field is `name|label|label...`; label values
are only ever system names from config, queue names and fixed reasons, never request data.

Web processes buffer increments and write them at most once a `flush_interval`, from the request
that finds the buffer due (and on every scrape of `/metrics`), so a webhook almost never costs an
extra Redis round trip for bookkeeping. No background thread: it would write outside any request's
Redis deadline, and outlive the app that owned it. Other processes write at once. Either way an
increment is best effort: a Redis outage drops (or keeps buffering) counts, never blocks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from service.settings import Names

log = logging.getLogger(__name__)
SEPARATOR = "|"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def metric_field(name: str, *labels: str) -> str:
    return SEPARATOR.join((name, *labels))


FLUSH_WAIT_SECONDS = 1.0  # how long a flush waits for one already under way


class Metrics:
    def __init__(
        self, connection: Redis, names: Names, *, flush_interval: float | None = None, pause_seconds: float = 2.0
    ) -> None:
        self.connection = connection
        self.key = names.metrics
        self.flush_interval = flush_interval
        self.pause_seconds = pause_seconds
        self._paused_until = 0.0
        self._pending: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        # Held for a whole flush, so a reader that flushes first (GET /metrics) waits for a flush another
        # request thread has under way instead of reading Redis before those increments arrive.
        self._flush_lock = threading.Lock()
        self._next_flush = 0.0

    def add(self, pipe: Any, name: str, *labels: str, amount: float = 1) -> None:
        """Queue an increment on a pipeline the caller executes."""
        self._write(pipe, metric_field(name, *labels), amount)

    def incr(self, name: str, *labels: str, amount: float = 1) -> None:
        field = metric_field(name, *labels)
        if self.flush_interval is not None:
            with self._lock:
                self._pending[field] += amount
                due = time.monotonic() >= self._next_flush
                if due:
                    self._next_flush = time.monotonic() + self.flush_interval
            if due:
                self.flush()
            return
        if time.monotonic() < self._paused_until:
            return
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                self._write(pipe, field, amount)
                pipe.execute()
        except RedisError as exc:
            self._paused_until = time.monotonic() + self.pause_seconds
            log.debug("metrics increment dropped: %s", exc)

    def flush(self) -> None:
        """Write buffered increments; on failure they stay buffered for the next try.

        Waits (boundedly) for a flush already under way, so a reader that flushes first sees its increments.
        """
        if not self._flush_lock.acquire(timeout=FLUSH_WAIT_SECONDS):
            return  # Redis is slow for the flush under way; ours stays buffered for the next try
        try:
            with self._lock:
                pending, self._pending = self._pending, defaultdict(float)
            if not pending:
                return
            try:
                with self.connection.pipeline(transaction=False) as pipe:
                    for field, amount in pending.items():
                        self._write(pipe, field, amount)
                    pipe.execute()
            except RedisError as exc:
                with self._lock:
                    for field, amount in pending.items():
                        self._pending[field] += amount
                log.debug("metrics flush postponed: %s", exc)
        finally:
            self._flush_lock.release()

    def read(self) -> dict[tuple[str, ...], float]:
        raw = self.connection.hgetall(self.key)
        return {tuple(_text(field).split(SEPARATOR)): float(value) for field, value in raw.items()}

    def _write(self, pipe: Any, field: str, amount: float) -> None:
        if float(amount).is_integer():
            pipe.hincrby(self.key, field, int(amount))
        else:
            pipe.hincrbyfloat(self.key, field, amount)

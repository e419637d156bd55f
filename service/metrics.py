"""Counters shared by every process (gunicorn workers, RQ workers, the CLI) in one Redis hash.

Prometheus scrapes one web process, but webhooks arrive at several and jobs finish in others, so
per-process counters would each tell a fraction. A field is `name|label|label...`; label values
are only ever system names from config, queue names and fixed reasons, never request data.

Web processes buffer increments and flush them once a second from a background thread, so a
webhook costs no extra Redis round trip for bookkeeping; other processes write at once. Either
way an increment is best effort: a Redis outage drops (or keeps buffering) counts, never blocks.
"""

from __future__ import annotations

import logging
import os
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
        self._flusher_pid = -1
        self._flush_lock = threading.Lock()

    def add(self, pipe: Any, name: str, *labels: str, amount: float = 1) -> None:
        """Queue an increment on a pipeline the caller executes."""
        self._write(pipe, metric_field(name, *labels), amount)

    def incr(self, name: str, *labels: str, amount: float = 1) -> None:
        field = metric_field(name, *labels)
        if self.flush_interval is not None:
            with self._lock:
                self._pending[field] += amount
            self._ensure_flusher()
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

        One flush at a time: a flush that returns has written everything buffered before it began,
        even what the background thread had just taken (else `/metrics` could miss those counts).
        """
        with self._flush_lock:
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

    def read(self) -> dict[tuple[str, ...], float]:
        raw = self.connection.hgetall(self.key)
        return {tuple(_text(field).split(SEPARATOR)): float(value) for field, value in raw.items()}

    def _write(self, pipe: Any, field: str, amount: float) -> None:
        if float(amount).is_integer():
            pipe.hincrby(self.key, field, int(amount))
        else:
            pipe.hincrbyfloat(self.key, field, amount)

    def _ensure_flusher(self) -> None:
        """One daemon thread per process (started after gunicorn forked its workers)."""
        if self._flusher_pid == os.getpid():
            return
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
        thread = threading.Thread(target=self._flush_forever, name="metrics-flush", daemon=True)
        thread.start()

    def _flush_forever(self) -> None:
        assert self.flush_interval is not None
        while True:
            time.sleep(self.flush_interval)
            try:
                self.flush()
            except Exception:  # never let bookkeeping kill the thread
                log.exception("metrics flush failed")

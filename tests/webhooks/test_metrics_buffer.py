"""Buffered metrics: a reader that flushes first must see every increment made before it read."""

from __future__ import annotations

import threading
from typing import Any

import redis

from service.metrics import Metrics
from service.settings import Names

NAMES = Names("tickets")


class _SlowPipelines:
    """A real Redis connection whose first pipeline once armed waits before executing, as under load."""

    def __init__(self, connection: redis.Redis, started: threading.Event, release: threading.Event) -> None:
        self._connection = connection
        self._started = started
        self._release = release
        self._slowed = False
        self.armed = False

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = self._connection.pipeline(*args, **kwargs)
        if self._slowed or not self.armed:
            return pipe
        self._slowed = True
        execute = pipe.execute

        def slow_execute(*a: Any, **kw: Any) -> Any:
            self._started.set()
            assert self._release.wait(5)
            return execute(*a, **kw)

        pipe.execute = slow_execute  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def test_flush_waits_for_a_flush_already_under_way(redis_conn: redis.Redis) -> None:
    """Another request thread took the buffer and is writing it; GET /metrics flushes then reads: it must wait."""
    started, release = threading.Event(), threading.Event()
    connection = _SlowPipelines(redis_conn, started, release)
    metrics = Metrics(connection, NAMES, flush_interval=3600)  # type: ignore[arg-type]
    metrics.incr("received", "memory")  # the first increment is written at once
    connection.armed = True
    for _ in range(2):
        metrics.incr("received", "memory")
    other_request = threading.Thread(target=metrics.flush)
    other_request.start()
    assert started.wait(5)  # the other flush holds two increments, not yet written

    reader_done = threading.Event()
    seen: dict[tuple[str, ...], float] = {}

    def reader() -> None:
        metrics.flush()
        seen.update(metrics.read())
        reader_done.set()

    threading.Thread(target=reader).start()
    assert not reader_done.wait(0.3)  # blocked behind the flush under way, not reading a partial state
    release.set()
    other_request.join(5)
    assert reader_done.wait(5)
    assert seen[("received", "memory")] == 3.0


def test_buffered_increments_reach_redis_without_a_scrape(redis_conn: redis.Redis) -> None:
    """The first increment, and the first after each interval, writes the buffer: no thread is needed."""
    metrics = Metrics(redis_conn, NAMES, flush_interval=3600)
    metrics.incr("received", "memory")
    metrics.incr("received", "memory")
    assert metrics.read()[("received", "memory")] == 1.0  # the second waits for the interval or a scrape
    metrics.flush()
    assert metrics.read()[("received", "memory")] == 2.0

"""Adaptive concurrency for resyncs: fewer threads when the server says it is overloaded.

Sleeping on a 429/503 (the `ApiClient` honours `Retry-After`) spaces one thread's retries, but the
other threads keep the server just as busy. `AdaptiveLimit` is additive-increase /
multiplicative-decrease, as TCP does it: a throttle answer halves how many tickets are worked on at
once, and each run of `current` successes in a row lets one more run, up to the configured
`resync_concurrency`. Requests already under way when the limit was cut do not cut it again, so
one burst of 429s halves once, not once per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from data_manager.collectors.tickets.http import clients_of


class AdaptiveLimit:
    """How many tickets may be worked on at once: halved on a throttle answer, +1 after a run of successes."""

    def __init__(self, ceiling: int, *, floor: int = 1) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = max(1, min(floor, self.ceiling))
        self.current = self.ceiling
        self.cuts = 0  # how many times the limit was halved (for reports and tests)
        self._epoch = 0  # bumped by each cut; work started before a cut cannot cut again
        self._successes = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def started(self) -> None:
        """The calling thread begins one ticket's work under the current limit."""
        self._local.epoch = self._epoch

    def throttled(self) -> None:
        """The server answered 429/503 to this thread's request: halve, unless a cut already answered it."""
        with self._lock:
            if getattr(self._local, "epoch", self._epoch) != self._epoch:
                return
            self.current = max(self.floor, self.current // 2)
            self.cuts += 1
            self._epoch += 1
            self._successes = 0
            self._local.epoch = self._epoch  # its retry, if throttled again, may cut again

    def succeeded(self) -> None:
        """One ticket's work finished without a throttle answer since the last cut."""
        with self._lock:
            if getattr(self._local, "epoch", self._epoch) != self._epoch:
                return  # began under the old, larger limit: says nothing about the new one
            self._successes += 1
            if self._successes >= self.current and self.current < self.ceiling:
                self.current += 1
                self._successes = 0


@contextmanager
def adapting_to(holder: object, limit: AdaptiveLimit) -> Iterator[AdaptiveLimit]:
    """While inside, every 429/503 that `holder`'s HTTP clients (an integration's) receive cuts `limit`."""
    clients = clients_of(holder)
    for client in clients:
        client.on_throttled(limit.throttled)
    try:
        yield limit
    finally:
        for client in clients:
            client.off_throttled(limit.throttled)

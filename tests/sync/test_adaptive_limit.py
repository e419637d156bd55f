"""`AdaptiveLimit` (AIMD) and `read_ahead`, the two parts of the pipelined, throttle-aware resync."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from data_manager.collectors.tickets.read_ahead import read_ahead
from data_manager.collectors.tickets.throttle import AdaptiveLimit


def test_a_burst_of_throttles_halves_once_and_successes_grow_it_back_to_the_ceiling() -> None:
    limit = AdaptiveLimit(8)
    threads_started: list[threading.Thread] = []
    began = threading.Barrier(4)
    cut = threading.Event()

    def worker(first: bool) -> None:
        limit.started()  # every one began under the limit of 8
        began.wait()
        if first:
            limit.throttled()
            cut.set()
        else:
            cut.wait()
            limit.throttled()  # answered by the same cut: began before it

    for n in range(4):
        threads_started.append(threading.Thread(target=worker, args=(n == 0,)))
        threads_started[-1].start()
    for thread in threads_started:
        thread.join()
    assert (limit.current, limit.cuts) == (4, 1)

    limit.started()
    limit.throttled()  # work begun after the cut that is throttled again cuts again
    assert limit.current == 2
    for _ in range(2):
        limit.started()
        limit.succeeded()
    assert limit.current == 3  # one more after a run of `current` successes
    for _ in range(100):
        limit.started()
        limit.succeeded()
    assert limit.current == 8  # never above the configured concurrency


def test_the_limit_never_drops_below_one() -> None:
    limit = AdaptiveLimit(3)
    for _ in range(5):
        limit.started()
        limit.throttled()
    assert limit.current == 1 and limit.cuts == 5


def test_read_ahead_yields_in_order_and_raises_the_producers_error_where_reached() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise ValueError("page 2 failed")

    seen: list[int] = []
    with pytest.raises(ValueError, match="page 2 failed"):
        for item in read_ahead(items(), 2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            for n in range(10_000):
                produced.append(n)
                yield n
        finally:
            closed.set()

    reader = read_ahead(items(), 3)
    assert next(reader) == 0
    reader.close()
    assert closed.is_set() and len(produced) <= 6  # at most `depth` ahead (plus the ones in hand)

"""Consume an iterator that a background thread reads ahead, so a slow producer overlaps the work on its items.

A resync's listing pages while the tickets it already named are being fetched: without this, the
thread that hands out work would stop handing it out for every page request.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_END = object()


def read_ahead(items: Iterable[T], depth: int, *, name: str = "read-ahead") -> Generator[T, None, None]:
    """Yield `items` in order; a thread produces them, at most `depth` ahead of the consumer.

    An exception from `items` is raised here, where the consumer reaches it. A consumer that stops
    early (closes this generator) stops the producer after the item it is producing, and waits for it.
    """
    buffer: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((_END, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name=name, daemon=True)
    producer.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]  # every item but _END came from `items`
    finally:
        stop.set()
        producer.join()

"""One deadline for every Redis call a request makes, instead of per-call timeouts that add up.

A webhook makes several Redis round trips (WATCH, HGETALL, MULTI/EXEC, ...). With a per-call
socket timeout of 1 s, a frozen Redis (SIGSTOP: connections accepted, never answered) could cost
several seconds. Inside `redis_deadline(seconds)` each command waits at most for what is left of
the budget, and a command that would start after the deadline is not sent at all: the whole
request fails with `TimeoutError` (a `RedisError`) by the deadline, whatever it does.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any

from redis.connection import Connection
from redis.exceptions import TimeoutError as RedisTimeoutError

_deadline: ContextVar[float | None] = ContextVar("redis_deadline", default=None)
MIN_WAIT = 0.001


@contextlib.contextmanager
def redis_deadline(seconds: float) -> Iterator[float]:
    """Bound every Redis call in this context (thread or task) by one monotonic deadline."""
    deadline = time.monotonic() + seconds
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def start_deadline(seconds: float) -> Token[float | None]:
    """Like `redis_deadline`, for frameworks that start and end a request in separate hooks."""
    return _deadline.set(time.monotonic() + seconds)


def end_deadline(token: Token[float | None]) -> None:
    _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline, or None outside `redis_deadline`."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


class DeadlineConnection(Connection):
    """A Redis connection whose waits never outlast the current `redis_deadline`."""

    def connect(self) -> None:
        left = remaining()
        if left is None or self._sock:
            super().connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            return
        if left <= 0:
            raise RedisTimeoutError("Redis deadline passed before connecting")
        configured = self.socket_connect_timeout
        self.socket_connect_timeout = min(configured or left, max(left, MIN_WAIT))
        try:
            super().connect()  # type: ignore[no-untyped-call]
        finally:
            self.socket_connect_timeout = configured

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        left = remaining()
        if left is not None and left <= 0:
            raise RedisTimeoutError("Redis deadline passed; command not sent")
        super().send_packed_command(command, check_health=check_health)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        left = remaining()
        sock: socket.socket | None = self._sock  # redis-py declares `_sock` as always None
        if left is None or sock is None:
            return super().read_response(*args, **kwargs)
        # The socket's own timeout, so this works whatever the parser (and redis-py version) is.
        sock.settimeout(max(min(left, self.socket_timeout or left), MIN_WAIT))
        try:
            return super().read_response(*args, **kwargs)
        finally:
            current: socket.socket | None = self._sock
            if current is sock:  # not disconnected meanwhile
                sock.settimeout(self.socket_timeout)

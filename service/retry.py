"""Which failures are worth retrying, and when: decided by the error's class, never by a system's name.

- `TransientError` (connection errors, timeouts, 429, 5xx), lost Redis/HTTP connections and job
  timeouts: retry with exponential backoff and jitter, waiting at least what the server asked for
  (`Retry-After`).
- `PermanentError` (400, 401, 403, an unexpected 404) and `ConfigError`: fail at once; retrying
  cannot help and would only hammer the server.
- Anything else is a surprise (a bug, a full disk): retried like a transient error, but at most
  `UNKNOWN_ERROR_ATTEMPTS` times so a bug does not keep a ticket cycling for hours.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from enum import Enum

import requests
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.timeouts import JobTimeoutException

from data_manager.collectors.tickets.errors import ConfigError, PermanentError, TransientError

UNKNOWN_ERROR_ATTEMPTS = 3
MAX_SERVER_WAIT_SECONDS = 24 * 3600


class ErrorKind(str, Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    requests.ConnectionError,
    requests.Timeout,
    RedisConnectionError,
    RedisTimeoutError,
    JobTimeoutException,
    ConnectionError,
    TimeoutError,
)
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (PermanentError, ConfigError)


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, _PERMANENT_TYPES):
        return ErrorKind.PERMANENT
    if isinstance(exc, _TRANSIENT_TYPES):
        return ErrorKind.TRANSIENT
    return ErrorKind.UNKNOWN


def describe(exc: BaseException, limit: int = 500) -> str:
    """`Type: message` on one line, bounded (integration errors are already redacted)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Verdict:
    retry: bool
    kind: ErrorKind
    delay: float = 0.0  # seconds until the retry
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12
    base_seconds: float = 10.0
    max_seconds: float = 1800.0

    def backoff(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Delay before attempt `attempt + 1`: exponential with "equal jitter", or the server's wish plus a little."""
        uniform = rng.uniform if rng is not None else random.uniform
        if retry_after is not None and retry_after >= 0:
            wait = min(float(retry_after), MAX_SERVER_WAIT_SECONDS)
            return wait + uniform(0, min(1.0, 0.1 * wait + 0.1))
        ceiling = min(self.max_seconds, self.base_seconds * (2.0 ** (attempt - 1)))
        return ceiling / 2 + uniform(0, ceiling / 2)

    def decide(self, exc: BaseException, attempt: int, rng: random.Random | None = None) -> Verdict:
        """Retry or fail after attempt number `attempt` (1-based) raised `exc`."""
        kind = classify(exc)
        reason = describe(exc)
        if kind is ErrorKind.PERMANENT:
            return Verdict(False, kind, reason=reason)
        limit = self.max_attempts if kind is ErrorKind.TRANSIENT else min(self.max_attempts, UNKNOWN_ERROR_ATTEMPTS)
        if attempt >= limit:
            return Verdict(
                False, kind, reason=f"{reason} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})"
            )
        retry_after = getattr(exc, "retry_after", None)
        return Verdict(True, kind, delay=self.backoff(attempt, retry_after, rng), reason=reason)


def rq_retry_interval(delay: float, now: float | None = None) -> float:
    """The interval to hand RQ so the retry never runs before `delay` has passed.

    RQ's scheduled-job registry stores whole seconds, truncating: a retry due at 101.95 would be
    released at 101.0. Aiming at the next whole second (plus a hair for RQ's own clock read) keeps
    a server's Retry-After honoured.
    """
    now = time.time() if now is None else now
    return math.ceil(now + delay) - now + 0.002

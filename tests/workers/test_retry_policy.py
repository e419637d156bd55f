"""Retry decisions come from the error's class; delays back off with jitter and honour Retry-After."""

from __future__ import annotations

import random

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.timeouts import JobTimeoutException

from data_manager.collectors.tickets.errors import ConfigError, PermanentError, TransientError
from data_manager.collectors.tickets.http import NotFoundError
from service.retry import UNKNOWN_ERROR_ATTEMPTS, ErrorKind, RetryPolicy, classify, rq_retry_interval

POLICY = RetryPolicy(max_attempts=5, base_seconds=2.0, max_seconds=60.0)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TransientError("503", status=503), ErrorKind.TRANSIENT),
        (TransientError("429", status=429, retry_after=30), ErrorKind.TRANSIENT),
        (requests.ConnectionError("refused"), ErrorKind.TRANSIENT),
        (requests.Timeout("slow"), ErrorKind.TRANSIENT),
        (RedisConnectionError("gone"), ErrorKind.TRANSIENT),
        (JobTimeoutException("took too long"), ErrorKind.TRANSIENT),
        (PermanentError("401", status=401), ErrorKind.PERMANENT),
        (PermanentError("403", status=403), ErrorKind.PERMANENT),
        (PermanentError("400", status=400), ErrorKind.PERMANENT),
        (NotFoundError("404 on the wrong endpoint", status=404), ErrorKind.PERMANENT),
        (ConfigError("bad base_url", "data_manager.sources.tickets.jira.base_url"), ErrorKind.PERMANENT),
        (KeyError("surprise"), ErrorKind.UNKNOWN),
        (OSError(28, "No space left on device"), ErrorKind.UNKNOWN),
    ],
)
def test_classification(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc) is kind


def test_permanent_errors_fail_at_once() -> None:
    verdict = POLICY.decide(PermanentError("GET /issue/1 answered 403: forbidden", status=403), attempt=1)
    assert not verdict.retry and verdict.kind is ErrorKind.PERMANENT
    assert "403" in verdict.reason


def test_transient_errors_retry_until_the_last_attempt() -> None:
    exc = TransientError("answered 503", status=503)
    assert all(POLICY.decide(exc, attempt).retry for attempt in range(1, 5))
    last = POLICY.decide(exc, 5)
    assert not last.retry and "gave up after 5 attempts" in last.reason


def test_unknown_errors_are_retried_but_fewer_times() -> None:
    assert POLICY.decide(KeyError("x"), 1).retry
    assert not POLICY.decide(KeyError("x"), UNKNOWN_ERROR_ATTEMPTS).retry


def test_retry_after_is_honoured_even_beyond_the_backoff() -> None:
    verdict = POLICY.decide(TransientError("429", status=429, retry_after=120), attempt=1)
    assert verdict.retry and 120 <= verdict.delay <= 121


@given(attempt=st.integers(min_value=1, max_value=30), seed=st.integers())
def test_backoff_grows_within_bounds_with_jitter(attempt: int, seed: int) -> None:
    delay = POLICY.backoff(attempt, rng=random.Random(seed))
    ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_jitter_spreads_clients_apart() -> None:
    rng = random.Random(7)
    delays = {round(POLICY.backoff(3, rng=rng), 3) for _ in range(20)}
    assert len(delays) > 10


@given(now=st.floats(min_value=1e9, max_value=2e9), delay=st.floats(min_value=0.01, max_value=3600))
def test_rq_interval_never_releases_a_retry_early(now: float, delay: float) -> None:
    interval = rq_retry_interval(delay, now)
    released_at = int(now + interval)  # RQ truncates the scheduled time to whole seconds
    assert released_at >= now + delay - 1e-6
    assert interval <= delay + 1.01

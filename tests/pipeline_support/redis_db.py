"""A Redis database of our own on the shared server: DBs 8-15, claimed with a file lock per session.

The machine's Redis is shared with other sessions, and RQ's keys (`rq:*`) are not prefixed, so a
test session takes a whole database, flushes only that one, and never touches the others.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import redis

BASE_URL = os.environ.get("TICKETS_TEST_REDIS", "redis://127.0.0.1:6379")
CANDIDATE_DBS = range(15, 7, -1)


@contextmanager
def claim_database() -> Iterator[int]:
    """Hold an exclusive lock on one of DBs 8-15 for as long as the context lasts."""
    forced = os.environ.get("TICKETS_TEST_REDIS_DB")
    candidates = [int(forced)] if forced else list(CANDIDATE_DBS)
    for db in candidates:
        handle: IO[str] = open(Path(tempfile.gettempdir()) / f"tickets-test-redis-db-{db}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            yield db
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError("every Redis test database (8-15) is in use by another test session")


def url_for(db: int) -> str:
    return f"{BASE_URL}/{db}"


def available() -> bool:
    try:
        return bool(redis.Redis.from_url(BASE_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False

"""A throwaway PostgreSQL database per test session on the machine's server (127.0.0.1:5432, trust auth).

`scripts/test` starts the server when it is not running (`scripts/ensure-postgres`). Each session
creates `tickets_test_<pid>_<random>` and drops it at the end, so parallel runs never meet.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from data_manager.collectors.postgres.migrations import upgrade

SERVER_URL = os.environ.get("TICKETS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    base, _, _ = SERVER_URL.rpartition("/")
    return f"{base}/{name}"


def server_problem() -> str | None:
    """None when the server answers; else what is wrong, saying how to fix it."""
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL at {SERVER_URL} is not reachable ({first}); scripts/test starts it "
            f"(scripts/ensure-postgres), or install it: apt-get install postgresql"
        )


@contextmanager
def throwaway_database(prefix: str = "tickets_test") -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (and whoever is still connected) afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(name)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


TABLES = ("tickets", "cursors", "resyncs", "removals", "trash", "changes")


def empty_tables(url: str) -> None:
    """Back to an empty, current schema between tests (much cheaper than a database per test)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE tickets, cursors, resyncs, removals, trash, changes RESTART IDENTITY")
        conn.execute("UPDATE change_counter SET seq = 0")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own, at the current schema, dropped at the end."""
    problem = server_problem()
    if problem is not None:
        pytest.fail(problem)
    with throwaway_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            upgrade(conn)
        yield url

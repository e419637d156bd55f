"""What only the PostgreSQL store has to prove: credentials hidden, fork-safe pool, bounds, timeouts, one transaction."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceError, PersistenceService, StoreUnavailable, UpsertOutcome
from data_manager.collectors.postgres import PoolSettings, PostgresPersistence, redact_url
from data_manager.collectors.store import upsert_each
from data_manager.collectors.tickets import TicketResource
from data_manager.collectors.transfer import import_tickets
from service.retry import ErrorKind, RetryPolicy, classify
from tests.persistence.contract.support import resource
from tests.pipeline_support.postgres_db import empty_tables


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresPersistence]:
    empty_tables(postgres_url)
    store = PostgresPersistence(postgres_url, PoolSettings(min_size=1, max_size=3, statement_timeout_seconds=7))
    yield store
    store.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://tick:s3cret@db.example:5432/tickets", "postgresql://tick:***@db.example:5432/tickets"),
        ("postgresql://tick@db/tickets", "postgresql://tick@db/tickets"),
        (
            "postgresql://db/tickets?user=u&password=s3cret&sslmode=require",
            "postgresql://db/tickets?user=u&password=***&sslmode=require",
        ),
        ("postgres://:s3cret@db/t", "postgres://:***@db/t"),
    ],
)
def test_the_password_is_never_shown(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    store = PostgresPersistence(url)
    assert "s3cret" not in repr(store) and "s3cret" not in repr(store.pool) and "s3cret" not in store.location("h")
    assert redact_url(url) in repr(store)


def test_a_connection_failure_names_the_database_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    store = PostgresPersistence(
        "postgresql://tick:s3cret@127.0.0.1:1/tickets", PoolSettings(wait_seconds=1, connect_timeout_seconds=1)
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PersistenceError) as info:
        store.upsert(resource())
    with pytest.raises(PersistenceError) as schema_info:
        store.require_current_schema()
    store.close()
    for text in (str(info.value), str(schema_info.value), caplog.text):
        assert "s3cret" not in text
    assert "postgresql://tick:***@127.0.0.1:1/tickets" in str(info.value)


def test_connections_carry_the_statement_timeout_and_the_pool_is_bounded(pg: PostgresPersistence) -> None:
    pool = pg.pool.pool()
    assert (pool.min_size, pool.max_size) == (1, 3)
    with pool.connection() as conn:
        row = conn.execute("SHOW statement_timeout").fetchone()
    assert row is not None and row[0] == "7s"


def test_a_statement_over_the_timeout_is_cancelled(postgres_url: str) -> None:
    store = PostgresPersistence(postgres_url, PoolSettings(statement_timeout_seconds=0.2))
    with pytest.raises(PersistenceError, match="statement timeout"):
        store._fetch("SELECT pg_sleep(2)", ())
    store.close()


def test_a_forked_child_uses_its_own_connections_and_leaves_the_parents_alone(pg: PostgresPersistence) -> None:
    pg.upsert(resource("parent", ticket_id="PROJ-1"))  # the parent's pool is open now
    parent_pool = pg.pool.pool()
    pid = os.fork()
    if pid == 0:  # the child: like an RQ work horse
        code = 1
        try:
            code = 0 if pg.upsert(resource("child", ticket_id="PROJ-2")).value == "written" else 2
            code = code or (0 if pg.pool.pool() is not parent_pool else 3)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pg.pool.pool() is parent_pool
    child = pg.get("jira", "PROJ-2")
    assert child is not None and child.content == "child"
    pg.upsert(resource("parent again", ticket_id="PROJ-3"))  # the parent's connections still work
    assert pg.count() == 3


def test_a_batch_is_one_transaction(pg: PostgresPersistence) -> None:
    pg.upsert(TicketResource(ticket_id="a/b", content="first", source_type="x"))
    with pytest.raises(PersistenceError, match="refusing to overwrite"):
        pg.upsert_many(
            [resource(ticket_id="PROJ-1"), TicketResource(ticket_id="a_b", content="second", source_type="x")]
        )
    assert pg.get("jira", "PROJ-1") is None  # nothing of the failed batch was kept
    assert pg.last_change_seq() == 1


def test_a_batch_reports_each_outcome_in_order(pg: PostgresPersistence) -> None:
    pg.upsert(resource("same", ticket_id="PROJ-1"))
    outcomes = pg.upsert_many([resource("new", ticket_id="PROJ-2"), resource("same", ticket_id="PROJ-1")])
    assert [o.value for o in outcomes] == ["written", "unchanged"]
    assert [c.ticket_id for c in pg.changes(after=0)] == ["PROJ-1", "PROJ-2"]


def test_an_unreachable_database_is_a_transient_failure_so_the_job_is_retried_not_failed() -> None:
    """A database that is down (here: nothing listens) must delay jobs through the retry policy, never send an
    accepted event to the failed registry after the three attempts a surprise gets."""
    store = PostgresPersistence(
        "postgresql://tick:s3cret@127.0.0.1:1/tickets", PoolSettings(wait_seconds=1, connect_timeout_seconds=1)
    )
    with pytest.raises(StoreUnavailable) as info:
        store.upsert(resource())
    store.close()
    assert classify(info.value) is ErrorKind.TRANSIENT
    verdict = RetryPolicy(max_attempts=12, base_seconds=1, max_seconds=60).decide(info.value, attempt=5)
    assert verdict.retry


def test_a_statement_timeout_is_transient_but_a_refused_write_is_not(postgres_url: str) -> None:
    empty_tables(postgres_url)
    store = PostgresPersistence(postgres_url, PoolSettings(min_size=1, max_size=2, statement_timeout_seconds=0.2))
    try:
        with pytest.raises(StoreUnavailable) as timed_out:
            store._fetch("SELECT pg_sleep(2)", ())
        assert classify(timed_out.value) is ErrorKind.TRANSIENT
        store.upsert(TicketResource("a/b", "one", "memory"))
        with pytest.raises(PersistenceError) as refused:
            store.upsert(TicketResource("a_b", "two", "memory"))  # same hash, another ticket: refused for good
        assert not isinstance(refused.value, StoreUnavailable)
        assert classify(refused.value) is not ErrorKind.TRANSIENT
    finally:
        store.close()


def test_an_import_into_an_unreachable_database_stops_instead_of_calling_every_ticket_malformed(
    tmp_path: Path,
) -> None:
    source = PersistenceService(tmp_path / "data", fsync=False)
    source.upsert(resource("one", ticket_id="PROJ-1"))
    store = PostgresPersistence(
        "postgresql://tick@127.0.0.1:1/tickets", PoolSettings(wait_seconds=1, connect_timeout_seconds=1)
    )
    with pytest.raises(StoreUnavailable):
        import_tickets(store, source.data_path)
    store.close()


class _CountingStore(PostgresPersistence):
    """The real store, counting the single writes a caller falls back to."""

    singles = 0

    def upsert(self, resource: TicketResource, *, updated_at: object = None) -> UpsertOutcome:  # type: ignore[override]
        type(self).singles += 1
        return super().upsert(resource, updated_at=updated_at)  # type: ignore[arg-type]


def test_a_batch_for_an_unreachable_database_fails_whole_without_one_wait_per_ticket() -> None:
    store = _CountingStore(
        "postgresql://tick@127.0.0.1:1/tickets", PoolSettings(wait_seconds=1, connect_timeout_seconds=1)
    )
    items = [(resource(f"v{n}", ticket_id=f"PROJ-{n}"), None) for n in range(5)]
    results = upsert_each(store, items)
    store.close()
    assert len(results) == 5 and all(isinstance(result, StoreUnavailable) for result in results)
    assert _CountingStore.singles == 0


def test_a_batch_refused_for_one_ticket_stores_the_others(pg: PostgresPersistence) -> None:
    pg.upsert(TicketResource("a/b", "one", "memory"))
    results = upsert_each(
        pg, [(TicketResource("a_b", "two", "memory"), None), (resource("ok", ticket_id="PROJ-9"), None)]
    )
    assert isinstance(results[0], PersistenceError) and not isinstance(results[0], StoreUnavailable)
    assert results[1] is UpsertOutcome.WRITTEN and pg.get("jira", "PROJ-9") is not None

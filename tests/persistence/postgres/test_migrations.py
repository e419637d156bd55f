"""Schema migrations: an existing database with data is upgraded in place; old schemas are refused at start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from data_manager.collectors.persistence import PersistenceError, UpsertOutcome
from data_manager.collectors.postgres import PostgresPersistence
from data_manager.collectors.postgres.migrations import current_version, latest_version, migrations, upgrade
from data_manager.config import load_config
from tests.persistence.contract.support import T0, resource
from tests.pipeline_support.postgres_db import throwaway_database
from webhooks.app import create_app
from workers.cli import main as cli


@pytest.fixture
def version_1(postgres_url: str) -> Iterator[str]:
    """A database at schema version 1 holding two tickets (written by the code of that version)."""
    with throwaway_database("tickets_migrate") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            upgrade(conn, target=1)
            for ticket in ("PROJ-1", "PROJ-2"):
                conn.execute(
                    """INSERT INTO tickets (hash, source, ticket_id, updated_at, updated_ts, content, metadata,
                                            content_digest, metadata_digest, written_at)
                       VALUES (%s, 'jira', %s, %s, %s, %s, NULL, 'c', 'm', %s)""",
                    (f"jira_{ticket}", ticket, T0.isoformat(), T0.timestamp(), f"{ticket} v1", T0.isoformat()),
                )
        yield url


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"data_manager:\n  data_path: {tmp_path / 'data'}\n  store:\n    url: {url}\n")
    return path


def test_migrations_are_numbered_without_gaps() -> None:
    assert [m.version for m in migrations()] == list(range(1, latest_version() + 1))
    assert latest_version() >= 2


def test_an_old_schema_is_refused_naming_the_command(version_1: str, tmp_path: Path) -> None:
    store = PostgresPersistence(version_1)
    with pytest.raises(PersistenceError, match=r"schema version 1, this code needs \d+: run `tickets db upgrade`"):
        store.require_current_schema()
    store.close()
    with pytest.raises(PersistenceError, match="tickets db upgrade"):
        create_app(load_config(_config(tmp_path, version_1), env={}))
    result = CliRunner().invoke(cli, ["--config", str(_config(tmp_path, version_1)), "worker", "--burst"])
    assert result.exit_code != 0 and "tickets db upgrade" in result.output


def test_tickets_db_upgrade_upgrades_in_place_keeping_the_data(version_1: str, tmp_path: Path) -> None:
    config = _config(tmp_path, version_1)
    result = CliRunner().invoke(cli, ["--config", str(config), "db", "upgrade"], env={"DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    assert "0002_change_feed" in result.output and "up to date" in result.output
    again = CliRunner().invoke(cli, ["--config", str(config), "db", "upgrade"])
    assert again.exit_code == 0 and "applied" not in again.output
    store = PostgresPersistence(version_1)
    store.require_current_schema()
    stored = store.get("jira", "PROJ-1")
    assert stored is not None and stored.content == "PROJ-1 v1"
    # What was stored before the feed existed enters it once; the next write follows on.
    assert [(c.seq, c.ticket_id) for c in store.changes(after=0)] == [(1, "PROJ-1"), (2, "PROJ-2")]
    assert store.upsert(resource("PROJ-1 v2", ticket_id="PROJ-1")) is UpsertOutcome.WRITTEN
    assert store.last_change_seq() == 3
    store.close()
    with psycopg.connect(version_1) as conn:
        assert current_version(conn) == latest_version()


def test_an_empty_database_is_refused_until_upgraded(postgres_url: str) -> None:
    with throwaway_database("tickets_empty") as url:
        store = PostgresPersistence(url)
        with pytest.raises(PersistenceError, match="schema version 0"):
            store.require_current_schema()
        assert store.upgrade_schema() == [f"{m.version:04d}_{m.name}" for m in migrations()]
        store.require_current_schema()
        store.close()

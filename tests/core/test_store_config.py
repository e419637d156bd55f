"""`data_manager.store.url` picks the store: absent or `file:` → embedded; `postgresql://` → PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.postgres import PostgresPersistence
from data_manager.collectors.tickets.errors import ConfigError
from data_manager.config import parse_config
from service.runtime import Runtime, build_store
from workers.cli import main as cli


def test_the_default_is_the_embedded_store_with_nothing_to_configure(tmp_path: Path) -> None:
    config = parse_config({"data_manager": {"data_path": str(tmp_path / "data")}}, env={})
    assert config.store["url"] == "file:"
    store = Runtime(config).persistence
    assert isinstance(store, PersistenceService) and store.data_path == tmp_path / "data"


def test_database_url_switches_to_postgresql_and_wins_over_the_file() -> None:
    raw = {"data_manager": {"store": {"url": "file:", "pool_max_size": 8}}}
    config = parse_config(raw, env={"DATABASE_URL": "postgresql://tick:s3cret@db/tickets"})
    store = build_store(config)
    assert isinstance(store, PostgresPersistence)
    assert store.pool.settings.max_size == 8 and "s3cret" not in repr(store)


def test_the_config_key_alone_selects_postgresql_through_substitution() -> None:
    raw = {"data_manager": {"store": {"url": "${DATABASE_URL:-file:}"}}}
    assert parse_config(raw, env={}).store["url"] == "file:"
    picked = parse_config({"data_manager": {"store": {"url": "postgresql://db/t"}}}, env={})
    assert isinstance(build_store(picked), PostgresPersistence)


@pytest.mark.parametrize(
    ("store", "key", "words"),
    [
        ({"url": "mysql://tick:s3cret@db/t"}, "data_manager.store.url", "file: (the embedded store) or postgresql://"),
        ({"url": 5}, "data_manager.store.url", "Not a valid string"),
        ({"pool_max_size": 0}, "data_manager.store.pool_max_size", ""),
        ({"pool_min_size": 5, "pool_max_size": 2}, "data_manager.store.pool_min_size", "pool_max_size"),
        ({"statement_timeout_seconds": "soon"}, "data_manager.store.statement_timeout_seconds", ""),
    ],
)
def test_bad_store_settings_name_the_key_path_and_never_the_password(store: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"data_manager": {"store": store}}, env={})
    assert info.value.key_path == key and words in str(info.value)
    assert "s3cret" not in str(info.value)


def test_check_config_shows_the_store_without_its_password(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("data_manager:\n  store:\n    url: postgresql://tick:s3cret@db.example/tickets\n")
    result = CliRunner().invoke(cli, ["--config", str(path), "check-config"], env={"DATABASE_URL": ""})
    assert "store: postgresql://tick:***@db.example/tickets" in result.output
    assert "s3cret" not in result.output

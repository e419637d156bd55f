from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from data_manager.collectors.tickets.errors import ConfigError
from data_manager.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def memory_config(**memory: object) -> dict:
    return {"data_manager": {"data_path": "/tmp/x", "sources": {"tickets": {"memory": {"enabled": True, **memory}}}}}


def test_the_shipped_example_config_loads_as_is_with_nothing_enabled() -> None:
    config = load_config(REPO / "config.yaml", env={})
    assert config.enabled_systems == []
    assert config.redis["url"] == "redis://localhost:6379/0"
    assert str(config.data_path) == "data"


def test_env_substitution_with_defaults() -> None:
    raw = memory_config(webhook_secret="${SECRET}", store="${STORE:-shared}")
    config = parse_config(raw, env={"SECRET": "s3cret"})
    assert config.sources["memory"]["webhook_secret"] == "s3cret"
    assert config.sources["memory"]["store"] == "shared"


def test_missing_variable_names_the_key_path_and_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(memory_config(webhook_secret="${MEMORY_SECRET}"), env={})
    assert "data_manager.sources.tickets.memory.webhook_secret" in str(info.value)
    assert "MEMORY_SECRET" in str(info.value)


def test_disabled_system_with_missing_secret_is_no_error() -> None:
    raw = {"data_manager": {"sources": {"tickets": {"memory": {"enabled": False, "webhook_secret": "${NOPE}"}}}}}
    assert parse_config(raw, env={}).enabled_systems == []


def test_enabled_can_come_from_the_environment() -> None:
    raw = {
        "data_manager": {"sources": {"tickets": {"memory": {"enabled": "${MEMORY_ON:-false}", "webhook_secret": "s"}}}}
    }
    assert parse_config(raw, env={"MEMORY_ON": "true"}).enabled_systems == ["memory"]
    assert parse_config(raw, env={}).enabled_systems == []
    with pytest.raises(ConfigError, match=r"memory\.enabled: must be true or false"):
        parse_config(raw, env={"MEMORY_ON": "maybe"})


def test_invalid_value_names_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"data_manager\.sources\.tickets\.memory\.resync_concurrency"):
        parse_config(memory_config(resync_concurrency=0), env={})
    with pytest.raises(ConfigError, match=r"^redis\.socket_timeout"):
        parse_config({"redis": {"socket_timeout": "soon"}}, env={})


def test_unknown_system_names_the_key_path_and_the_known_ones() -> None:
    raw = {"data_manager": {"sources": {"tickets": {"jirra": {"enabled": True}}}}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    assert "data_manager.sources.tickets.jirra" in str(info.value) and "memory" in str(info.value)


def test_wrong_shapes_name_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"^data_manager\.sources\.tickets: must be a mapping"):
        parse_config({"data_manager": {"sources": {"tickets": ["memory"]}}}, env={})
    with pytest.raises(ConfigError, match=r"^data_manager: must be a mapping"):
        parse_config({"data_manager": "x"}, env={})


def test_environment_overrides_data_path_redis_and_system_keys() -> None:
    raw = memory_config(webhook_secret="from-file")
    env = {
        "DATA_PATH": "/srv/tickets",
        "REDIS_URL": "redis://redis:6379/3",
        "TICKETS_MEMORY_WEBHOOK_SECRET": "from-env",
    }
    config = parse_config(raw, env=env)
    assert str(config.data_path) == "/srv/tickets"
    assert config.redis["url"] == "redis://redis:6379/3"
    assert config.sources["memory"]["webhook_secret"] == "from-env"


def test_missing_webhook_secret_is_a_warning_unless_waived() -> None:
    assert any("webhook_secret is not set" in w for w in parse_config(memory_config(), env={}).warnings)
    waived = parse_config(memory_config(webhook_unauthenticated=True), env={})
    assert any("WITHOUT authentication" in w for w in waived.warnings)


def test_secrets_are_redacted_for_display() -> None:
    config = parse_config(memory_config(webhook_secret="s3cret"), env={})
    assert config.redacted_sources()["memory"]["webhook_secret"] == "***"
    assert "s3cret" not in repr(config.redacted_sources())


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data_manager: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, env={})


def test_tickets_config_env_picks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(memory_config(webhook_secret="x")))
    assert load_config(env={"TICKETS_CONFIG": str(path)}).enabled_systems == ["memory"]

"""`data_manager.sources.tickets.bugzilla`: validated by the schema, errors naming the key path."""

from __future__ import annotations

from typing import Any

import pytest

from data_manager.collectors.tickets.errors import ConfigError
from data_manager.config import parse_config

KEY_PATH = "data_manager.sources.tickets.bugzilla"


def load(section: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    raw = {"data_manager": {"sources": {"tickets": {"bugzilla": {"enabled": True, **section}}}}}
    return parse_config(raw, env=env or {}).sources["bugzilla"]


def test_defaults() -> None:
    settings = load({"base_url": "https://bz.example", "api_key": "k-123456", "products": ["Core"]})
    assert [settings[k] for k in ("version", "op_sys", "rep_platform", "resolution", "api_key_in")] == [
        "unspecified",
        "All",
        "All",
        "FIXED",
        "query",
    ]
    assert settings["include_private_comments"] is False and list(settings["products"]) == ["Core"]


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"base_url": "https://bz.example"}, "api_key"),
        ({"api_key": "k"}, "base_url"),
        ({"base_url": "https://bz.example", "api_key": "k", "api_key_in": "cookie"}, "api_key_in"),
        ({"base_url": "https://bz.example", "api_key": "k", "status_map": {"WAITING": "asleep"}}, "status_map"),
    ],
)
def test_errors_name_the_key_path(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{KEY_PATH}\.{key}"):
        load(section)


def test_the_key_can_come_from_the_environment() -> None:
    settings = load({"base_url": "https://bz.example", "api_key": "${BZ_KEY}"}, env={"BZ_KEY": "from-env"})
    assert settings["api_key"] == "from-env"
    overridden = load({"base_url": "https://bz.example", "api_key": "x"}, env={"TICKETS_BUGZILLA_API_KEY": "env"})
    assert overridden["api_key"] == "env"


def test_check_config_warns_that_private_comments_need_the_insider_group() -> None:
    """Issue #10: with include_private_comments the key's user must be an insider; check-config says so."""
    base = {"base_url": "https://bz.example", "api_key": "k-123456", "webhook_secret": "s"}
    raw = {"data_manager": {"sources": {"tickets": {"bugzilla": {"enabled": True, **base}}}}}
    assert parse_config(raw, env={}).warnings == []
    raw["data_manager"]["sources"]["tickets"]["bugzilla"]["include_private_comments"] = True
    [warning] = parse_config(raw, env={}).warnings
    assert warning.startswith(f"{KEY_PATH}.include_private_comments:") and "insider group" in warning

"""Jira configuration through the real loader: required keys, deployments, secrets, env overrides."""

from __future__ import annotations

from typing import Any

import pytest

from data_manager.collectors.tickets.errors import ConfigError
from data_manager.collectors.tickets.integration import integration_class
from data_manager.collectors.tickets.integrations.jira import JiraTickets
from data_manager.config import parse_config


def config_with(jira: dict[str, Any]) -> dict[str, Any]:
    return {"data_manager": {"sources": {"tickets": {"jira": jira}}}}


CLOUD = {
    "enabled": True,
    "base_url": "https://example.atlassian.net",
    "username": "bot@example.com",
    "api_token": "${JIRA_API_TOKEN}",
    "jql_query": "project = PROJ",
    "webhook_secret": "${JIRA_WEBHOOK_SECRET}",
}
ENV = {"JIRA_API_TOKEN": "tok-abcdef123456", "JIRA_WEBHOOK_SECRET": "hook-secret-123"}


def test_registry_finds_jira() -> None:
    assert integration_class("jira") is JiraTickets


def test_cloud_config_loads_with_defaults() -> None:
    cfg = parse_config(config_with(CLOUD), env=ENV).sources["jira"]
    assert cfg["deployment"] == "cloud"
    assert cfg["api_token"] == "tok-abcdef123456"
    assert cfg["issue_type"] == "Task"
    assert cfg["include_restricted_comments"] is False
    assert cfg["jql_timezone"] == "UTC"
    integration = JiraTickets.from_config(cfg)
    try:
        assert integration.is_cloud
        assert integration.webhook_secret == "hook-secret-123"
        assert integration.client.session.headers["Authorization"].startswith("Basic ")
    finally:
        integration.close()


def test_datacenter_needs_no_username_and_uses_a_bearer_token() -> None:
    raw = {**CLOUD, "deployment": "Data_Center"}
    del raw["username"]
    cfg = parse_config(config_with(raw), env=ENV).sources["jira"]
    assert cfg["deployment"] == "datacenter"
    integration = JiraTickets.from_config(cfg)
    try:
        assert integration.client.session.headers["Authorization"] == "Bearer tok-abcdef123456"
    finally:
        integration.close()


@pytest.mark.parametrize(
    ("drop", "deployment", "key"),
    [
        ("base_url", "cloud", "base_url"),
        ("api_token", "cloud", "api_token"),
        ("jql_query", "cloud", "jql_query"),
        ("username", "cloud", "username"),
        ("jql_query", "datacenter", "jql_query"),
    ],
)
def test_required_keys_when_enabled(drop: str, deployment: str, key: str) -> None:
    raw = {**CLOUD, "deployment": deployment, "api_token": "tok-abcdef123456"}
    del raw[drop]
    with pytest.raises(
        ConfigError, match=rf"data_manager\.sources\.tickets\.jira\.{key}: required when jira is enabled"
    ):
        parse_config(config_with(raw), env=ENV)


def test_disabled_jira_is_not_validated() -> None:
    assert parse_config(config_with({"enabled": False, "api_token": "${UNSET_VAR}"}), env={}).sources["jira"] == {
        "enabled": False
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("deployment", "onprem", "deployment: Must be one of"),
        ("jql_timezone", "Mars/Olympus", "jql_timezone: unknown time zone 'Mars/Olympus'"),
        ("page_size", 0, "page_size"),
        ("base_url", "ftp://jira.example.com", "base_url"),
    ],
)
def test_bad_values_name_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config_with({**CLOUD, key: value}), env=ENV)


def test_env_override_replaces_the_token() -> None:
    cfg = parse_config(config_with(CLOUD), env={**ENV, "TICKETS_JIRA_API_TOKEN": "from-override-999"}).sources["jira"]
    assert cfg["api_token"] == "from-override-999"


def test_secrets_are_redacted_for_display() -> None:
    shown = parse_config(config_with(CLOUD), env=ENV).redacted_sources()["jira"]
    assert shown["api_token"] == "***"
    assert shown["webhook_secret"] == "***"
    assert shown["username"] == "bot@example.com"


def test_repr_never_shows_the_token() -> None:
    integration = JiraTickets("https://example.atlassian.net", "bot@example.com", "tok-abcdef123456", "project = PROJ")
    try:
        assert "tok-abcdef123456" not in repr(integration)
        assert "tok-abcdef123456" not in repr(integration.client)
        assert "cloud" in repr(integration)
    finally:
        integration.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deployment": "mainframe"}, "jira.deployment: must be one of cloud, datacenter"),
        ({"username": None}, "jira.username: is required for Jira Cloud"),
        ({"api_token": ""}, "jira.api_token: is required"),
        ({"jql_query": "ORDER BY key"}, "jira.jql_query: is required"),
        ({"base_url": "jira.example.com"}, "jira.base_url: must be an http"),
        ({"jql_timezone": "Nowhere/Town"}, "jira.jql_timezone: unknown time zone"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "base_url": "https://example.atlassian.net",
        "username": "bot@example.com",
        "api_token": "tok-abcdef123456",
        "jql_query": "project = PROJ",
    }
    args.update(kwargs)
    with pytest.raises(ConfigError, match=message):
        JiraTickets(**args)

"""`data_manager.sources.tickets.salesforce`: exactly one auth combination, errors naming the key path."""

from __future__ import annotations

from typing import Any

import pytest

from data_manager.collectors.tickets import SalesforceBackend
from data_manager.collectors.tickets.errors import ConfigError, PermanentError
from data_manager.config import parse_config

KEY = "data_manager.sources.tickets.salesforce"


def config(**salesforce: Any) -> Any:
    section = {"enabled": True, "instance_url": "https://acme.my.salesforce.com", "webhook_secret": "s", **salesforce}
    return parse_config({"data_manager": {"sources": {"tickets": {"salesforce": section}}}}, env={})


@pytest.mark.parametrize(
    "auth",
    [
        {"access_token": "t"},
        {"client_id": "c", "client_secret": "s"},
        {"client_id": "c", "client_secret": "s", "refresh_token": "r"},
    ],
)
def test_the_three_auth_combinations_are_accepted(auth: dict[str, str]) -> None:
    loaded = config(**auth, status_map={"Waiting on Customer": "in progress"})
    section = loaded.sources["salesforce"]
    assert section["api_version"] == "62.0" and section["include_private_comments"] is False


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, "client_id"),
        ({"client_id": "c"}, "client_secret"),
        ({"access_token": "t", "client_id": "c"}, "access_token"),
        ({"access_token": "t", "instance_url": None}, "instance_url"),
        ({"access_token": "t", "api_version": "v62"}, "api_version"),
        ({"access_token": "t", "status_map": {"Waiting": "later"}}, "status_map"),
        ({"access_token": "t", "soql_where": "Origin = 'Web' ORDER BY Id"}, "soql_where"),
        ({"access_token": "t", "organization_id": "00D' OR 1=1"}, "organization_id"),
        ({"access_token": "t", "page_size": 50}, "page_size"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**settings)
    assert caught.value.key_path.startswith(f"{KEY}.{key}"), caught.value.key_path


def test_secrets_are_redacted_in_the_shown_config() -> None:
    shown = config(client_id="c", client_secret="very-secret", refresh_token="also-secret").redacted_sources()[
        "salesforce"
    ]
    assert shown["client_secret"] == "***" and shown["refresh_token"] == "***" and shown["webhook_secret"] == "***"


def test_seed_constructor_needs_no_network_and_hides_the_token() -> None:
    backend = SalesforceBackend(instance_url="https://acme.my.salesforce.com", access_token="00Dx!secret-session")
    assert "secret-session" not in repr(backend) and backend.request_count == 0
    # The seed's own example passes a placeholder (`instance_url="..."`), so construction accepts it; the first
    # request fails permanently, naming the setting, and nothing is sent (the config schema rejects it at load).
    placeholder = SalesforceBackend(instance_url="acme.my.salesforce.com", access_token="t")
    with pytest.raises(PermanentError, match=r"salesforce\.instance_url 'acme\.my\.salesforce\.com' is not an http"):
        placeholder.verify_credentials()
    assert placeholder.request_count == 0

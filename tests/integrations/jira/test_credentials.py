"""`JiraTickets.verify_credentials` against the fake: `/myself` is the one call that says 401 to a bad token."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from data_manager.collectors.tickets.errors import CredentialsRefused
from tests.integrations.jira.conftest import JiraSetup


def test_accepted_credentials_prove_themselves(make_jira: Callable[..., JiraSetup]) -> None:
    jira = make_jira()
    jira.client().verify_credentials()
    version = "3" if jira.deployment == "cloud" else "2"
    assert ("GET", f"/rest/api/{version}/myself", "") in jira.fake.requests


def test_a_refused_token_is_credentials_refused(make_jira: Callable[..., JiraSetup]) -> None:
    jira = make_jira()
    client = jira.client(api_token="revoked-token-123")
    with pytest.raises(CredentialsRefused, match="refused the credentials") as refused:
        client.verify_credentials()
    assert refused.value.status == 401
    assert "revoked-token-123" not in str(refused.value)

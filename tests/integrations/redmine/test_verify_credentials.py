"""`RedmineTickets.verify_credentials` against the real Redmine: a refused key reads as anonymous elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from data_manager.collectors.tickets.errors import CredentialsRefused
from data_manager.collectors.tickets.integrations.redmine import RedmineTickets

if TYPE_CHECKING:
    from tests.integrations.redmine.redmine_server import RedmineServer

pytestmark = pytest.mark.redmine
pytest_plugins = ("tests.integrations.redmine.redmine_server",)


def test_an_accepted_key_proves_itself(redmine_server: RedmineServer) -> None:
    integration = RedmineTickets(redmine_server.url, redmine_server.api_key)
    try:
        integration.verify_credentials()
    finally:
        integration.close()


def test_a_refused_key_is_credentials_refused_and_never_shown(redmine_server: RedmineServer) -> None:
    wrong = "0123456789abcdef0123456789abcdef01234567"
    integration = RedmineTickets(redmine_server.url, wrong)
    try:
        with pytest.raises(CredentialsRefused, match="refused the credentials") as refused:
            integration.verify_credentials()
        assert refused.value.status == 401
        assert wrong not in str(refused.value) and wrong not in repr(refused.value)
    finally:
        integration.close()

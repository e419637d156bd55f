"""A fake Jira per test, served over HTTP on loopback, and real `JiraTickets` clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from data_manager.collectors.tickets.integrations.jira import JiraTickets
from tests.integrations.jira.fake_server import (
    DEFAULT_TOKEN,
    DEFAULT_USERNAME,
    FakeJira,
    RunningFakeJira,
    start_fake_jira,
)

# The Data Center fake runs in a non-UTC profile time zone so offsets and JQL dates are exercised.
SERVER_ZONES = {"cloud": "UTC", "datacenter": "Europe/Berlin"}


@dataclass
class JiraSetup:
    """One fake Jira plus a factory for clients talking to it."""

    server: RunningFakeJira
    deployment: str
    sleeps: list[float] = field(default_factory=list)  # what the clients' retry loop waited, instead of sleeping
    clients: list[JiraTickets] = field(default_factory=list)

    @property
    def fake(self) -> FakeJira:
        return self.server.fake

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, jql_query: str = "project = PROJ", **kwargs: Any) -> JiraTickets:
        options = {"sleep": self.sleeps.append, **kwargs.pop("client_options", {})}
        kwargs.setdefault("jql_timezone", self.fake.zone.key)
        kwargs.setdefault("api_token", DEFAULT_TOKEN)
        integration = JiraTickets(
            self.url,
            kwargs.pop("username", DEFAULT_USERNAME if self.deployment == "cloud" else None),
            kwargs.pop("api_token"),
            jql_query,
            deployment=self.deployment,
            client_options=options,
            **kwargs,
        )
        self.clients.append(integration)
        return integration

    def user_id(self, handle: str) -> str:
        """How writes name a user: accountId on Cloud, name on Data Center."""
        user = self.fake.users[handle]
        return user.account_id if self.deployment == "cloud" else user.name

    def native_text(self, text: str) -> Any:
        return self.fake._native_text(text)


@pytest.fixture(params=["cloud", "datacenter"])
def deployment(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_jira(deployment: str) -> Iterator[Callable[..., JiraSetup]]:
    setups: list[JiraSetup] = []

    def make(issues: int = 0, **options: Any) -> JiraSetup:
        options.setdefault("timezone_name", SERVER_ZONES[deployment])
        setup = JiraSetup(start_fake_jira(issues=issues, deployment=deployment, **options), deployment)
        setups.append(setup)
        return setup

    yield make
    for setup in setups:
        for client in setup.clients:
            client.close()
        setup.server.stop()


@pytest.fixture
def jira(make_jira: Callable[..., JiraSetup]) -> JiraSetup:
    return make_jira()

"""A fake Salesforce per test, served over HTTP on loopback, and real `SalesforceBackend`s pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from data_manager.collectors.tickets.integrations.salesforce import SalesforceBackend
from tests.integrations.salesforce.fake_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    STATIC_TOKEN,
    FakeSalesforce,
    RunningFakeSalesforce,
    start_fake_salesforce,
)


@dataclass
class SalesforceSetup:
    server: RunningFakeSalesforce
    sleeps: list[float] = field(default_factory=list)
    backends: list[SalesforceBackend] = field(default_factory=list)

    @property
    def fake(self) -> FakeSalesforce:
        return self.server.fake

    @property
    def url(self) -> str:
        return self.server.url

    def backend(self, auth: str = "static", **kwargs: Any) -> SalesforceBackend:
        credentials: dict[str, Any] = {
            "static": {"access_token": STATIC_TOKEN},
            "client_credentials": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            "refresh_token": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN},
        }[auth]
        options = {"sleep": self.sleeps.append, **kwargs.pop("client_options", {})}
        backend = SalesforceBackend(instance_url=self.url, **{**credentials, **kwargs}, client_options=options)
        self.backends.append(backend)
        return backend

    def requests_to(self, fragment: str) -> list[tuple[str, str, str]]:
        with self.fake.lock:
            return [r for r in self.fake.requests if fragment in r[1]]


@pytest.fixture
def make_salesforce() -> Iterator[Callable[..., SalesforceSetup]]:
    setups: list[SalesforceSetup] = []

    def make(cases: int = 0, **options: Any) -> SalesforceSetup:
        setup = SalesforceSetup(start_fake_salesforce(cases=cases, **options))
        setups.append(setup)
        return setup

    yield make
    for setup in setups:
        for backend in setup.backends:
            backend.close()
        setup.server.stop()


@pytest.fixture
def salesforce(make_salesforce: Callable[..., SalesforceSetup]) -> SalesforceSetup:
    return make_salesforce()

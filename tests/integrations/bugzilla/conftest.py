"""A fake Bugzilla per test, served over HTTP on loopback, and real `BugzillaBackend`s pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from data_manager.collectors.tickets.integrations.bugzilla import BugzillaBackend
from tests.integrations.bugzilla.fake_server import ADMIN_KEY, FakeBugzilla, RunningFakeBugzilla, start_fake_bugzilla


@dataclass
class BugzillaSetup:
    server: RunningFakeBugzilla
    sleeps: list[float] = field(default_factory=list)
    backends: list[BugzillaBackend] = field(default_factory=list)

    @property
    def fake(self) -> FakeBugzilla:
        return self.server.fake

    @property
    def url(self) -> str:
        return self.server.url

    def backend(self, api_key: str = ADMIN_KEY, **kwargs: Any) -> BugzillaBackend:
        options = {"sleep": self.sleeps.append, **kwargs.pop("client_options", {})}
        kwargs.setdefault("product", "TestProduct")
        kwargs.setdefault("component", "TestComponent")
        backend = BugzillaBackend(base_url=self.url, api_key=api_key, client_options=options, **kwargs)
        self.backends.append(backend)
        return backend


@pytest.fixture
def make_bugzilla() -> Iterator[Callable[..., BugzillaSetup]]:
    setups: list[BugzillaSetup] = []

    def make(bugs: int = 0, **options: Any) -> BugzillaSetup:
        setup = BugzillaSetup(start_fake_bugzilla(bugs=bugs, **options))
        setups.append(setup)
        return setup

    yield make
    for setup in setups:
        for backend in setup.backends:
            backend.close()
        setup.server.stop()


@pytest.fixture
def bugzilla(make_bugzilla: Callable[..., BugzillaSetup]) -> BugzillaSetup:
    return make_bugzilla()

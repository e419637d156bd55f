"""The stores under contract: every test here runs once on the embedded store and once on PostgreSQL.

`opener` is how a test (or a child process it starts) opens another handle on the same store:
`StoreRef` is picklable, so writers in separate processes reach the very same data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.postgres import PostgresPersistence
from data_manager.collectors.store import TicketStore
from tests.pipeline_support.postgres_db import empty_tables

STORES = ["file", "postgres"]


@dataclass(frozen=True)
class StoreRef:
    kind: str
    location: str

    def open(self) -> TicketStore:
        if self.kind == "postgres":
            return PostgresPersistence(self.location)
        return PersistenceService(Path(self.location))


@pytest.fixture(params=STORES)
def store_ref(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRef:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        empty_tables(url)
        return StoreRef("postgres", url)
    return StoreRef("file", str(tmp_path / "data"))


@pytest.fixture
def store(store_ref: StoreRef) -> Iterator[TicketStore]:
    opened = store_ref.open()
    yield opened
    opened.close()

"""Each test's web app is gone before the next test starts.

A web process buffers its metrics and flushes them from a thread once a second, for as long as its
app lives. Collecting the finished test's app here stops that thread before the next test flushes
the (shared, per-session) Redis database, so one test's counts never land in another's.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_finished_apps() -> Iterator[None]:
    yield
    gc.collect()

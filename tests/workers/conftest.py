"""Fixtures the worker tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline_support.processes import Process


@pytest.fixture
def workers() -> Iterator[list[Process]]:
    """Worker processes a test starts (append them); each is stopped when the test ends."""
    started: list[Process] = []
    yield started
    for proc in started:
        proc.stop()

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.metrics import Metrics
from tests.pipeline_support.fixtures import app_config, config_path, redis_conn, redis_database, redis_url  # noqa: F401


@pytest.fixture(autouse=True)
def flush_metrics_at_teardown(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Apps buffer metrics and flush them from a thread once a second; a test's app must not flush its
    counts into the next test's (freshly emptied) database, so each test's buffers are flushed as it ends."""
    created: list[Metrics] = []
    original = Metrics.__init__

    def recording_init(self: Metrics, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        created.append(self)

    monkeypatch.setattr(Metrics, "__init__", recording_init)
    yield
    for metrics in created:
        metrics.flush()

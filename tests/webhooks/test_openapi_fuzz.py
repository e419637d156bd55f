"""The HTTP API fuzzed from its own `/openapi.json` (schemathesis: property-based, hypothesis underneath).

Every answer must be documented (status, content type, headers, body shape) and never a 5xx, and a
request the service refuses must leave no job behind. The memory system runs with
`webhook_unauthenticated: true` here so generated bodies reach the parser and the id rules, not
only the signature check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from data_manager.config import load_config
from tests.pipeline_support.configs import write_config
from webhooks import create_app

pytestmark = pytest.mark.redis


@pytest.fixture
def app(tmp_path: Path, redis_url: str):  # type: ignore[no-untyped-def]
    unsigned = {"webhook_secret": None, "webhook_unauthenticated": True}
    return create_app(load_config(write_config(tmp_path, redis_url, memory=unsigned)))


def test_every_endpoint_answers_as_documented(app, redis_conn: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"POST /webhooks/{system}", "GET /healthz", "GET /metrics"} <= {op.label for op in operations}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answers_as_documented(case: schemathesis.Case) -> None:
            before = len(redis_conn.keys("rq:job:*"))
            response = case.call()
            # Not "every schema-valid body is accepted": a webhook body is the ticket system's own
            # payload, which the document leaves open.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            if response.status_code not in (200, 202):
                jobs = len(redis_conn.keys("rq:job:*"))
                assert jobs == before, f"a refused request ({response.status_code}) queued a job"

        answers_as_documented()

"""Malformed and hostile webhooks get a 4xx JSON answer naming the problem, and queue nothing.

The causes of the 500s a fuzz run found, one test each; the whole corpus runs against gunicorn in
tests/faults/test_fuzz_run.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import redis
from flask.testing import FlaskClient

from data_manager.collectors.tickets.integration import TicketIntegration, integration_class
from service.connection import redis_client
from service.deadline import redis_deadline
from tests.pipeline_support.signing import signed
from webhooks import create_app

pytestmark = pytest.mark.redis


@pytest.fixture
def client(app_config) -> FlaskClient:  # type: ignore[no-untyped-def]
    return create_app(app_config).test_client()


def nothing_queued(conn: redis.Redis) -> bool:
    return conn.keys("rq:job:*") == [] and conn.keys("tickets:sync:*") == []


@pytest.mark.parametrize(
    "ticket_id",
    ["../../etc/passwd", "T1/../x", "/abs", "t1", "T-1", "T１２", "T1\u202e", "CON", "%2e%2e%2f", "T" + "9" * 40],
)
def test_ids_that_break_the_systems_rule_are_400(client: FlaskClient, redis_conn: redis.Redis, ticket_id: str) -> None:
    body, headers = signed({"ticket_id": ticket_id, "action": "updated"})
    response = client.post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_event"
    assert "T[0-9]{1,18}" in json.dumps(response.get_json()["details"])
    assert nothing_queued(redis_conn)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ticket_id": "\\ud800"}',  # a lone surrogate: json accepts it, UTF-8 (keys, files, logs) cannot hold it
        b'{"ticket_id": "T1", "delivery_id": "\\udfff"}',
        b"[" * 2000 + b"]" * 2000,  # nesting deeper than json's recursion limit
        b'{"ticket_id": "T1", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    ],
)
def test_bodies_that_used_to_crash_the_app_are_400(
    tmp_path, redis_url: str, redis_conn: redis.Redis, payload: bytes
) -> None:  # type: ignore[no-untyped-def]
    from data_manager.config import load_config
    from tests.pipeline_support.configs import write_config

    config = load_config(write_config(tmp_path, redis_url, webhooks={"max_body_bytes": 1 << 20}))
    body, headers = signed(payload)
    response = create_app(config).test_client().post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] in ("malformed", "invalid_event")
    assert nothing_queued(redis_conn)


@pytest.mark.parametrize("action", [["updated"], {"a": 1}, 5, None])
def test_an_action_of_another_type_is_an_event_we_do_not_act_on(
    client: FlaskClient, redis_conn: redis.Redis, action: object
) -> None:
    body, headers = signed({"ticket_id": "T1", "action": action})
    response = client.post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 200 and response.get_json()["status"] == "ignored"
    assert nothing_queued(redis_conn)


def test_405_says_which_methods_are_allowed(client: FlaskClient) -> None:
    response = client.put("/webhooks/memory", data=b"{}")
    assert response.status_code == 405 and response.get_json()["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("system", "good", "bad"),
    [
        ("memory", ["T1", "T000001"], ["1", "T", "T1a", "t1"]),
        ("redmine", ["1", "42"], ["0", "-1", "1.0", "a1", "1" * 19]),
        ("jira", ["PROJ-7", "AB_1-12", "10001"], ["proj-7", "P-1", "PROJ-", "PROJ-7x", "PROJ 7"]),
    ],
)
def test_each_system_has_its_own_id_rule(system: str, good: list[str], bad: list[str]) -> None:
    cls: type[TicketIntegration] = integration_class(system)
    assert all(cls.ticket_id_pattern.fullmatch(i) for i in good)
    assert not any(cls.ticket_id_pattern.fullmatch(i) for i in bad)


def test_openapi_document_lists_the_enabled_systems(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    [system] = document["paths"]["/webhooks/{system}"]["post"]["parameters"]
    assert system["schema"]["enum"] == ["memory"]
    assert "Retry-After" in document["paths"]["/webhooks/{system}"]["post"]["responses"]["503"]["headers"]


def test_one_deadline_bounds_all_redis_calls_of_a_request() -> None:
    """A server that accepts connections and never answers (a frozen Redis): ten calls, one budget."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    client = redis_client(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", socket_timeout=1.0)
    try:
        started = time.monotonic()
        failures = 0
        with redis_deadline(0.6):
            for _ in range(10):  # per-call timeouts alone would take about 10 s
                try:
                    client.get("x")
                except redis.RedisError:
                    failures += 1
        took = time.monotonic() - started
        assert failures == 10
        assert took < 0.9, f"ten calls took {took:.2f}s against a 0.6 s deadline"
        # Outside a deadline the configured per-call timeout applies again.
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.get("x")
        assert 0.9 < time.monotonic() - started < 1.6
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()

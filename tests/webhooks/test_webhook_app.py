"""The webhook app through Flask's test client, against a real Redis database."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from data_manager.config import load_config
from service.connection import redis_client
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.signing import signed
from webhooks import create_app


@pytest.fixture
def client(app_config) -> FlaskClient:  # type: ignore[no-untyped-def]
    return create_app(app_config).test_client()


def queued_job_ids(conn: redis.Redis) -> list[bytes]:
    return conn.lrange("rq:queue:tickets-live", 0, -1) + conn.lrange("rq:queue:tickets-bulk", 0, -1)


def assert_nothing_queued(conn: redis.Redis) -> None:
    assert queued_job_ids(conn) == []
    assert conn.keys("rq:job:*") == []
    assert conn.keys("tickets:sync:*") == []


def test_signed_event_is_accepted_with_its_job_id(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body, headers = signed({"ticket_id": "T000001", "action": "updated", "delivery_id": "d-1"})
    response = client.post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 202
    payload = response.get_json()
    assert payload["status"] == "accepted" and payload["system"] == "memory"
    [job] = payload["jobs"]
    assert job["ticket_id"] == "T000001" and job["outcome"] == "enqueued" and job["queue"] == "tickets-live"
    assert queued_job_ids(redis_conn) == [job["job_id"].encode()]
    assert redis_conn.hget(f"rq:job:{job['job_id']}", "status") == b"queued"


def test_repeated_events_coalesce_into_the_waiting_job(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body, headers = signed({"ticket_id": "T000001"})
    job_ids = {
        client.post("/webhooks/memory", data=body, headers=headers).get_json()["jobs"][0]["job_id"] for _ in range(5)
    }
    assert len(job_ids) == 1
    assert len(queued_job_ids(redis_conn)) == 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Content-Type": "application/json"}, "missing X-Signature-256"),
        ({"Content-Type": "application/json", "X-Signature-256": "sha256=" + "0" * 64}, "does not match"),
        ({"Content-Type": "application/json", "X-Signature-256": "md5=abc"}, "must look like"),
    ],
)
def test_unauthenticated_requests_get_401_and_queue_nothing(
    client: FlaskClient, redis_conn: redis.Redis, headers: dict[str, str], reason: str
) -> None:
    response = client.post("/webhooks/memory", data=json.dumps({"ticket_id": "T1"}), headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthenticated"
    assert reason in response.get_json()["message"]
    assert_nothing_queued(redis_conn)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"action": "updated"}', "'ticket_id' must be a non-empty string"),
        (b'{"ticket_id": "  "}', "'ticket_id' must be a non-empty string"),
    ],
)
def test_malformed_bodies_get_400_naming_the_problem(
    client: FlaskClient, redis_conn: redis.Redis, payload: bytes, message: str
) -> None:
    body, headers = signed(payload)
    response = client.post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "malformed"
    assert message in response.get_json()["message"]
    assert_nothing_queued(redis_conn)


def test_an_event_the_integration_should_never_produce_is_refused(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body, headers = signed({"ticket_id": "T1\nX-Injected: yes"})
    response = client.post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_event"
    assert "control characters" in json.dumps(response.get_json()["details"])
    assert_nothing_queued(redis_conn)


def test_event_kinds_we_do_not_act_on_are_acknowledged(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body, headers = signed({"ticket_id": "T000001", "action": "viewed"})
    response = client.post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored", "system": "memory", "jobs": []}
    assert_nothing_queued(redis_conn)


def test_unknown_system_is_404(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body, headers = signed({"ticket_id": "T1"})
    response = client.post("/webhooks/bugtracker9000", data=body, headers=headers)
    assert response.status_code == 404
    assert "bugtracker9000" in response.get_json()["message"] and "memory" in response.get_json()["message"]
    assert_nothing_queued(redis_conn)


def test_disabled_system_is_404(tmp_path: Path, redis_url: str, redis_conn: redis.Redis) -> None:
    config = load_config(write_config(tmp_path, redis_url, memory={"enabled": False}))
    body, headers = signed({"ticket_id": "T1"})
    response = create_app(config).test_client().post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 404
    assert_nothing_queued(redis_conn)


def test_too_large_body_is_413_by_header_and_while_streaming(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body, headers = signed({"ticket_id": "T1", "padding": "x" * 5000})  # limit in the test config: 4096
    assert client.post("/webhooks/memory", data=body, headers=headers).status_code == 413

    # No Content-Length (chunked transfer): the limit must hold while reading.
    response = client.post(
        "/webhooks/memory",
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == "too_large"
    assert_nothing_queued(redis_conn)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: FlaskClient, redis_conn: redis.Redis, content_type: str | None) -> None:
    body, headers = signed({"ticket_id": "T1"})
    headers.pop("Content-Type")
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/webhooks/memory", data=body, headers=headers)
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"
    assert_nothing_queued(redis_conn)


def test_json_with_charset_and_vendor_json_types_are_accepted(client: FlaskClient) -> None:
    body, headers = signed({"ticket_id": "T1"})
    for content_type in ("application/json; charset=utf-8", "application/vnd.example+json"):
        assert (
            client.post("/webhooks/memory", data=body, headers={**headers, "Content-Type": content_type}).status_code
            == 202
        )


def test_no_secret_rejects_unless_explicitly_unauthenticated(
    tmp_path: Path, redis_url: str, redis_conn: redis.Redis
) -> None:
    payload = json.dumps({"ticket_id": "T1"})
    headers = {"Content-Type": "application/json"}
    no_secret = load_config(write_config(tmp_path, redis_url, memory={"webhook_secret": None}))
    response = create_app(no_secret).test_client().post("/webhooks/memory", data=payload, headers=headers)
    assert response.status_code == 401
    assert "no webhook_secret is configured" in response.get_json()["message"]
    assert_nothing_queued(redis_conn)

    open_endpoint = load_config(
        write_config(tmp_path, redis_url, memory={"webhook_secret": None, "webhook_unauthenticated": True})
    )
    assert any("WITHOUT authentication" in w for w in open_endpoint.warnings)
    assert (
        create_app(open_endpoint).test_client().post("/webhooks/memory", data=payload, headers=headers).status_code
        == 202
    )


def test_healthz_and_metrics(client: FlaskClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["redis"] == "ok" and health.get_json()["systems"] == ["memory"]
    body, headers = signed({"ticket_id": "T1"})
    client.post("/webhooks/memory", data=body, headers=headers)
    client.post("/webhooks/memory", data=body, headers=headers)
    client.post("/webhooks/memory", data=body, headers={"Content-Type": "application/json"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'tickets_webhooks_received_total{system="memory"} 3.0' in text
    assert 'tickets_webhooks_rejected_total{reason="unauthenticated",system="memory"} 1.0' in text
    assert 'tickets_jobs_enqueued_total{queue="tickets-live",system="memory"} 1.0' in text
    assert 'tickets_events_coalesced_total{state="queued",system="memory"} 1.0' in text
    assert 'tickets_queue_depth{queue="tickets-live"} 1.0' in text


def test_redis_down_answers_503_quickly_and_never_202(app_config) -> None:  # type: ignore[no-untyped-def]
    dead = redis_client("redis://127.0.0.1:1/0", socket_timeout=1.0)  # nothing listens on port 1
    client = create_app(app_config, redis=dead).test_client()
    body, headers = signed({"ticket_id": "T1"})
    started = time.monotonic()
    response = client.post("/webhooks/memory", data=body, headers=headers)
    assert time.monotonic() - started < 2.0
    assert response.status_code == 503
    assert response.get_json()["error"] == "queue_unavailable"
    assert response.headers["Retry-After"]
    assert client.get("/healthz").status_code == 503

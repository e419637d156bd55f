"""The shared HTTP client against a real loopback server (pytest-httpserver)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import requests
from pytest_httpserver import HTTPServer

from data_manager.collectors.tickets.errors import PermanentError, TransientError
from data_manager.collectors.tickets.http import ApiClient, NotFoundError, redact, retry_after_seconds

SECRET = "tok-5ecret-value"


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(server: HTTPServer, sleeps: Sleeps, **kwargs: object) -> ApiClient:
    return ApiClient(
        server.url_for("/"), headers={"Authorization": f"Bearer {SECRET}"}, secrets=[SECRET], sleep=sleeps, **kwargs
    )  # type: ignore[arg-type]


def test_429_with_retry_after_is_honoured_then_succeeds(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/thing").respond_with_json({}, status=429, headers={"Retry-After": "3"})
    httpserver.expect_ordered_request("/thing").respond_with_json({"ok": True})
    sleeps = Sleeps()
    api = client(httpserver, sleeps)
    assert api.get_json("/thing") == {"ok": True}
    assert len(sleeps) == 1 and 3 <= sleeps[0] <= 4  # server's wait plus at most the jitter
    assert api.request_count == 2


def test_503_without_header_backs_off_exponentially(httpserver: HTTPServer) -> None:
    for _ in range(3):
        httpserver.expect_ordered_request("/x").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/x").respond_with_json([])
    sleeps = Sleeps()
    client(httpserver, sleeps, backoff_base=0.5).get_json("/x")
    # 0.5 * 2^(attempt-1), plus at most 0.5 s of jitter
    assert len(sleeps) == 3
    for sleep, base in zip(sleeps, (0.5, 1.0, 2.0), strict=True):
        assert base <= sleep <= base + 0.5


def test_retries_are_bounded_and_end_transient_with_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_json(
        {"message": "slow down"}, status=429, headers={"Retry-After": "2"}
    )
    sleeps = Sleeps()
    with pytest.raises(TransientError) as info:
        client(httpserver, sleeps, max_retries=2).get_json("/x")
    assert len(sleeps) == 2 and info.value.status == 429 and info.value.retry_after == 2
    assert "slow down" in str(info.value)


def test_a_wait_longer_than_the_cap_is_left_to_the_caller(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_json({}, status=429, headers={"Retry-After": "3600"})
    sleeps = Sleeps()
    with pytest.raises(TransientError) as info:
        client(httpserver, sleeps, max_wait=60).get_json("/x")
    assert sleeps == [] and info.value.retry_after == 3600


def test_x_ratelimit_reset_and_http_date_retry_after_are_understood() -> None:
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    response = requests.Response()
    response.status_code = 429
    response.headers["X-RateLimit-Reset"] = (now + timedelta(seconds=42)).isoformat().replace("+00:00", "Z")
    assert retry_after_seconds(response, now=lambda: now) == 42
    response.headers.clear()
    response.headers["Retry-After"] = "Wed, 01 May 2024 10:01:00 GMT"
    assert retry_after_seconds(response, now=lambda: now) == 60


@pytest.mark.parametrize("status", [400, 401, 403, 409])
def test_other_client_errors_fail_fast_with_the_server_message(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_request("/x").respond_with_json(
        {"errorMessages": ["Field 'foo' is wrong"], "errors": {"summary": "required"}}, status=status
    )
    sleeps = Sleeps()
    with pytest.raises(PermanentError) as info:
        client(httpserver, sleeps).get_json("/x")
    assert sleeps == [] and info.value.status == status
    assert "Field 'foo' is wrong" in str(info.value) and "summary: required" in str(info.value)


def test_404_is_its_own_class(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/gone").respond_with_json({"errors": ["Issue does not exist"]}, status=404)
    with pytest.raises(NotFoundError, match="Issue does not exist"):
        client(httpserver, Sleeps()).get_json("/gone")


def test_secrets_are_redacted_from_errors_and_logs(httpserver: HTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    httpserver.expect_request("/x").respond_with_data(f"bad token {SECRET}", status=401)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PermanentError) as info:
        client(httpserver, Sleeps()).get_json("/x", params={"key": SECRET})
    assert SECRET not in str(info.value)
    assert "key=***" in str(info.value)
    assert not [
        r for r in caplog.records if r.name != "werkzeug" and SECRET in r.getMessage()
    ]  # werkzeug is the test server
    assert SECRET not in repr(client(httpserver, Sleeps()))


def test_connection_errors_are_transient_and_retried() -> None:
    sleeps = Sleeps()
    api = ApiClient("http://127.0.0.1:9/", sleep=sleeps, max_retries=2, timeout=1)
    with pytest.raises(TransientError, match="ConnectionError"):
        api.get_json("/x")
    assert len(sleeps) == 2 and api.request_count == 3


def test_non_json_success_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data("<html>maintenance</html>", content_type="text/html")
    with pytest.raises(TransientError, match="expected JSON"):
        client(httpserver, Sleeps()).get_json("/x")


def test_redact_helper() -> None:
    assert redact("https://h/x?key=abc&api_key=def&page=2", []) == "https://h/x?key=***&api_key=***&page=2"
    assert redact("value hunter2 here", ["hunter2"]) == "value *** here"


def test_500_is_retried_for_reads_but_not_for_creates(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/x", method="GET").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/x", method="GET").respond_with_json({"ok": 1})
    assert client(httpserver, Sleeps()).get_json("/x") == {"ok": 1}
    httpserver.clear()
    httpserver.expect_request("/x", method="POST").respond_with_data("oops", status=500)
    api = client(httpserver, Sleeps())
    with pytest.raises(TransientError, match="500"):
        api.request("POST", "/x", json={})
    assert api.request_count == 1  # a create that may have taken effect is not sent twice


def test_a_post_answered_429_is_sent_again(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/x", method="POST").respond_with_data(
        "", status=429, headers={"Retry-After": "0"}
    )
    httpserver.expect_ordered_request("/x", method="POST").respond_with_json({"id": 1}, status=201)
    assert client(httpserver, Sleeps()).request("POST", "/x", json={}).json() == {"id": 1}


def test_a_secret_learnt_later_is_redacted_from_errors_and_logs(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/x").respond_with_data(f"bad token {SECRET}", status=401)
    caplog.set_level(logging.DEBUG)
    api = ApiClient(httpserver.url_for("/"), sleep=Sleeps())  # knows no secret yet
    api.add_secret(SECRET)
    with pytest.raises(PermanentError) as info:
        api.get_json("/x", params={"session": SECRET})  # a parameter name the pattern does not know
    assert SECRET not in str(info.value)
    assert not [r for r in caplog.records if r.name != "werkzeug" and SECRET in r.getMessage()]

"""Sessions and limits through the fake over HTTP: OAuth flows, INVALID_SESSION_ID, REQUEST_LIMIT_EXCEEDED.

Documented behaviour relied on (fixtures/README.md): an expired session is 401 `INVALID_SESSION_ID`
(403 `Bad_OAuth_Token` from the identity service's userinfo) and the OAuth flows issue a new one (no `expires_in`); the daily allocation is 403
`REQUEST_LIMIT_EXCEEDED` with no Retry-After; every answer has `Sforce-Limit-Info: api-usage=N/M`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from data_manager.collectors.tickets.errors import CredentialsRefused, PermanentError, TransientError
from data_manager.collectors.tickets.integrations.salesforce._client import (
    ApiUsage,
    RequestLimitExceeded,
    parse_limit_info,
)
from tests.integrations.salesforce.conftest import SalesforceSetup
from tests.integrations.salesforce.fake_server import CLIENT_SECRET, REFRESH_TOKEN, STATIC_TOKEN


def test_construction_makes_no_request(salesforce: SalesforceSetup) -> None:
    salesforce.backend("client_credentials")
    salesforce.backend("static")
    assert salesforce.fake.request_count == 0


@pytest.mark.parametrize("auth", ["client_credentials", "refresh_token"])
def test_oauth_flows_obtain_a_session_and_renew_it_once_when_it_expires(salesforce: SalesforceSetup, auth: str) -> None:
    case_id = salesforce.fake.add_case("Printer jam")
    backend = salesforce.backend(auth)
    assert backend.fetch(case_id).data.title == "Printer jam"
    assert salesforce.fake.tokens_issued == 1
    salesforce.fake.expire_sessions()
    assert backend.fetch(case_id).data.title == "Printer jam"
    assert salesforce.fake.tokens_issued == 2 and backend.client.renewals == 1
    assert len(salesforce.requests_to("/services/oauth2/token")) == 2


def test_a_static_token_that_expired_says_so_and_is_not_retried(salesforce: SalesforceSetup) -> None:
    case_id = salesforce.fake.add_case("Printer jam")
    backend = salesforce.backend("static")
    salesforce.fake.expire_sessions()
    with pytest.raises(PermanentError, match="expired") as caught:
        backend.fetch(case_id)
    assert caught.value.status == 401
    assert salesforce.fake.request_count == 1 and not salesforce.requests_to("oauth2/token")


def test_a_session_refused_right_after_renewal_fails_instead_of_looping(salesforce: SalesforceSetup) -> None:
    case_id = salesforce.fake.add_case("Printer jam")
    backend = salesforce.backend("client_credentials")
    salesforce.fake.after_request.append(lambda fake, request: fake.expire_sessions())  # every session dies at once
    with pytest.raises(PermanentError, match="freshly issued session"):
        backend.fetch(case_id)
    assert len(salesforce.requests_to("/query")) == 2 and salesforce.fake.tokens_issued == 2


def test_refused_oauth_credentials_never_show_the_secrets(
    salesforce: SalesforceSetup, caplog: pytest.LogCaptureFixture
) -> None:
    salesforce.fake.refresh_tokens.clear()
    backend = salesforce.backend("refresh_token")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PermanentError) as caught:
        backend.fetch(salesforce.fake.add_case("x"))
    assert caught.value.status == 401
    with pytest.raises(PermanentError, match="refused the credentials"):
        backend.verify_credentials()
    text = f"{caught.value} {backend!r} {backend.client!r} {caplog.text}"
    assert "invalid_grant" in str(caught.value) or "expired access/refresh token" in str(caught.value)
    for secret in (CLIENT_SECRET, REFRESH_TOKEN):
        assert secret not in text


def test_session_tokens_stay_out_of_errors_logs_and_reprs(
    salesforce: SalesforceSetup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = salesforce.backend("client_credentials")
    backend.fetch(salesforce.fake.add_case("x"))
    issued = next(t for t in salesforce.fake.sessions if t != STATIC_TOKEN)
    salesforce.fake.inject(
        500, path="/query", times=10, body=[{"errorCode": "UNKNOWN_EXCEPTION", "message": f"echo {issued}"}]
    )
    with pytest.raises(TransientError) as caught:
        backend.fetch(salesforce.fake.add_case("y"))
    assert issued not in f"{caught.value} {backend!r} {caplog.text}" and "***" in str(caught.value)
    assert STATIC_TOKEN not in repr(salesforce.backend("static"))


def test_request_limit_exceeded_is_transient_with_a_long_wait(salesforce: SalesforceSetup) -> None:
    salesforce.fake.api_limit = 1
    backend = salesforce.backend("static", request_limit_backoff_seconds=1200)
    case_id = salesforce.fake.add_case("x")
    backend.fetch(case_id)
    with pytest.raises(RequestLimitExceeded) as caught:
        backend.fetch(case_id)
    assert isinstance(caught.value, TransientError) and caught.value.status == 403
    assert caught.value.retry_after == 1200 and "REQUEST_LIMIT_EXCEEDED" in str(caught.value)
    assert len(salesforce.requests_to("/query")) == 2  # not hammered in place: the job retries much later


def test_other_403s_stay_permanent_and_name_the_code(salesforce: SalesforceSetup) -> None:
    salesforce.fake.inject(403, path="/query", body=[{"errorCode": "INSUFFICIENT_ACCESS", "message": "no access"}])
    with pytest.raises(PermanentError, match="INSUFFICIENT_ACCESS") as caught:
        salesforce.backend().fetch(salesforce.fake.add_case("x"))
    assert not isinstance(caught.value, TransientError)


def test_requests_slow_down_near_the_daily_limit(make_salesforce: Callable[..., SalesforceSetup]) -> None:
    setup = make_salesforce(api_limit=100)
    setup.fake.api_used = 89
    backend = setup.backend(api_limit_threshold=0.9, api_limit_max_delay_seconds=4.0)
    case_id = setup.fake.add_case("x")
    for _ in range(5):
        backend.fetch(case_id)  # usage 90, 91, ... seen after each answer
    # Below 90% no pause; from there on the pause grows with usage toward 4 s at 100%.
    assert setup.sleeps == pytest.approx([0.4, 0.8, 1.2])
    assert backend.client.usage is not None and backend.client.usage.used == 94


def test_limit_info_header_parsing() -> None:
    assert parse_limit_info("api-usage=18/5000") == ApiUsage(18, 5000)
    usage = parse_limit_info("api-usage=110018/100000; api-bursts=1/750")
    assert usage is not None and usage.ratio > 1
    assert parse_limit_info(None) is None and parse_limit_info("per-app-api-usage=1/2") is None


@pytest.mark.parametrize("auth", ["client_credentials", "refresh_token"])
def test_an_expired_session_at_the_credential_proof_is_renewed_not_taken_for_refused_credentials(
    salesforce: SalesforceSetup, auth: str
) -> None:
    """userinfo refuses an expired session with 403 `Bad_OAuth_Token` (not the REST API's 401): with an OAuth
    flow that is renewed once like INVALID_SESSION_ID, so a session expiring before a removal's proof does not
    fail the job as "credentials refused"."""
    backend = salesforce.backend(auth)
    backend.verify_credentials()
    salesforce.fake.expire_sessions()
    backend.verify_credentials()
    assert backend.client.renewals == 1 and salesforce.fake.tokens_issued == 2
    assert len(salesforce.requests_to("/services/oauth2/userinfo")) == 3


def test_an_expired_static_token_at_the_credential_proof_is_refused_and_says_it_expired(
    salesforce: SalesforceSetup,
) -> None:
    backend = salesforce.backend("static")
    salesforce.fake.expire_sessions()
    with pytest.raises(CredentialsRefused, match=r"refused the credentials: .*expired") as caught:
        backend.verify_credentials()
    assert caught.value.status == 401 and not salesforce.requests_to("oauth2/token")


def test_verify_credentials_uses_userinfo(salesforce: SalesforceSetup) -> None:
    salesforce.backend("client_credentials").verify_credentials()
    assert salesforce.requests_to("/services/oauth2/userinfo")
    bad = salesforce.backend("static", access_token="00Dx!not-a-session")
    with pytest.raises(PermanentError, match="refused the credentials") as caught:
        bad.verify_credentials()
    assert caught.value.status == 401

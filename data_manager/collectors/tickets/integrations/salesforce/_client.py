"""The Salesforce REST client: the shared `ApiClient` plus OAuth sessions, error codes and the daily API limit.

What Salesforce documents and this relies on (REST API Developer Guide, "Status Codes and Error
Responses", "Limit Info Header"; OAuth 2.0 client credentials / refresh token flows):

* errors are a JSON list `[{"message", "errorCode", "fields"}]`; the code is named in every error;
* an expired or revoked session is 401 `INVALID_SESSION_ID`: with an OAuth flow we obtain a new token
  and repeat the request once (never more); a static `access_token` cannot be renewed, so that is a
  clear "expired" error. The identity service (`/services/oauth2/userinfo`, which proves our
  credentials) refuses the same session with **403** and the plain-text body `Bad_OAuth_Token`
  (Salesforce's Mobile SDK: "It returns a 403 for an invalid access token"); that is the same expired
  session, renewed the same way, never a permission error;
* the org's rolling 24-hour allocation, once used up, is **403** `REQUEST_LIMIT_EXCEEDED` (not 429,
  no Retry-After): transient, retried after a long pause;
* every response carries `Sforce-Limit-Info: api-usage=N/M`; above `limit_threshold` of M we pause
  before each request, longer the closer usage gets to M, so other integrations of the org keep room.

Tokens are sent per request (never stored in the session's headers) and registered for redaction.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from data_manager.collectors.tickets import http
from data_manager.collectors.tickets.errors import IntegrationError, PermanentError, TransientError
from data_manager.collectors.tickets.http import ApiClient

log = logging.getLogger(__name__)

TOKEN_PATH = "services/oauth2/token"
LIMIT_HEADER = "Sforce-Limit-Info"
BAD_OAUTH_TOKEN = "Bad_OAuth_Token"  # the identity service's (userinfo's) 403 body for a refused session
_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")
DEFAULT_LIMIT_BACKOFF_SECONDS = 900.0


class SessionExpired(PermanentError):
    """401 INVALID_SESSION_ID: the access token is expired or revoked."""


class RequestLimitExceeded(TransientError):
    """403 REQUEST_LIMIT_EXCEEDED: the org's daily API allocation is used up; try again much later."""


@dataclass(frozen=True)
class ApiUsage:
    used: int
    limit: int

    @property
    def ratio(self) -> float:
        return self.used / self.limit if self.limit > 0 else 0.0


def parse_limit_info(value: str | None) -> ApiUsage | None:
    """`api-usage=18/5000; per-app-api-usage=...` → ApiUsage(18, 5000)."""
    match = _USAGE.search(value or "")
    return ApiUsage(int(match.group(1)), int(match.group(2))) if match else None


def error_codes(response: requests.Response) -> list[str]:
    """The `errorCode`s of a Salesforce error body (empty when the body is not that shape)."""
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, list):
        return [str(item.get("errorCode")) for item in body if isinstance(item, dict) and item.get("errorCode")]
    return []


def is_bad_oauth_token(response: requests.Response) -> bool:
    """The identity service's refusal of an expired or invalid session: 403 with the one word `Bad_OAuth_Token`."""
    return response.status_code == 403 and response.text.strip() == BAD_OAUTH_TOKEN


class TokenSource:
    """Where access tokens come from; `renewable` says whether a refused one can be replaced."""

    renewable = False
    flow = "static access_token"

    def __init__(self, access_token: str | None = None) -> None:
        self._token = access_token or None
        self._lock = threading.Lock()

    def current(self, client: SalesforceClient) -> str:
        with self._lock:
            if self._token is None:
                self._token = self._obtain(client)
                client.add_secret(self._token)
            return self._token

    def renew(self, client: SalesforceClient, refused: str) -> str:
        """A new token, unless another thread already replaced the refused one."""
        with self._lock:
            if self._token == refused or self._token is None:
                self._token = self._obtain(client)
                client.add_secret(self._token)
            return self._token

    def _obtain(self, client: SalesforceClient) -> str:
        raise PermanentError(
            "the Salesforce access_token has expired or was revoked (INVALID_SESSION_ID); a static token "
            "cannot be renewed: set a new access_token, or configure client_id and client_secret (and "
            "refresh_token) so sessions are renewed automatically",
            status=401,
        )


class OAuthTokenSource(TokenSource):
    """Client credentials (`client_id` + `client_secret`) or refresh token (plus `refresh_token`) flow."""

    renewable = True

    def __init__(self, client_id: str, client_secret: str, refresh_token: str | None = None) -> None:
        super().__init__(None)
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token or None
        self.flow = "OAuth refresh token flow" if self.refresh_token else "OAuth client credentials flow"

    def _obtain(self, client: SalesforceClient) -> str:
        form = {"client_id": self.client_id, "client_secret": self.client_secret}
        if self.refresh_token:
            form |= {"grant_type": "refresh_token", "refresh_token": self.refresh_token}
        else:
            form["grant_type"] = "client_credentials"
        try:
            answer = client.token_request(form)
        except PermanentError as exc:
            # Refused client credentials or refresh token: the credentials are refused, whatever 4xx said so.
            raise PermanentError(
                f"Salesforce refused to issue an access token ({self.flow}): {exc}", status=401
            ) from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise TransientError(f"Salesforce's token endpoint answered without an access_token ({self.flow})")
        return token


class SalesforceClient(ApiClient):
    """`ApiClient` for one org: Bearer sessions renewed once on INVALID_SESSION_ID, error codes, API-limit pacing."""

    def __init__(
        self,
        instance_url: str,
        tokens: TokenSource,
        *,
        limit_threshold: float = 0.9,
        limit_max_delay: float = 5.0,
        limit_backoff: float = DEFAULT_LIMIT_BACKOFF_SECONDS,
        secrets: tuple[str | None, ...] = (),
        sleep: Callable[[float], None] = time.sleep,
        **options: Any,
    ) -> None:
        super().__init__(instance_url, secrets=secrets, sleep=sleep, **options)
        self.tokens = tokens
        self.limit_threshold = limit_threshold
        self.limit_max_delay = limit_max_delay
        self.limit_backoff = limit_backoff
        self.usage: ApiUsage | None = None
        self.paused_seconds = 0.0  # total pacing near the daily limit (for reports and tests)
        self.renewals = 0

    # -- secrets --------------------------------------------------------------------------------
    def add_secret(self, secret: str | None) -> None:
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    # -- requests -------------------------------------------------------------------------------
    def token_request(self, form: dict[str, str]) -> Any:
        """POST the token endpoint (form-encoded; no Bearer header); the answer as JSON."""
        response = super().request("POST", TOKEN_PATH, data=form, headers={"Accept": "application/json"})
        return self._json(response)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send with the current session; on INVALID_SESSION_ID renew it (OAuth flows) and send once more."""
        self._pace()
        token = self.tokens.current(self)
        try:
            return self._send(method, path, token, kwargs)
        except SessionExpired:
            if not self.tokens.renewable:
                raise PermanentError(
                    "the Salesforce access_token has expired or was revoked (INVALID_SESSION_ID); a static "
                    "token cannot be renewed: set a new access_token, or configure client_id and "
                    "client_secret (and refresh_token) so sessions are renewed automatically",
                    status=401,
                ) from None
            renewed = self.tokens.renew(self, token)
            self.renewals += 1
            log.info(
                "Salesforce session expired; renewed it with the %s and repeating the request once", self.tokens.flow
            )
        try:
            return self._send(method, path, renewed, kwargs)
        except SessionExpired as exc:
            raise PermanentError(
                f"Salesforce refused a freshly issued session ({self.tokens.flow}): {exc}", status=401
            ) from None

    def _send(self, method: str, path: str, token: str, kwargs: dict[str, Any]) -> requests.Response:
        headers = dict(kwargs.get("headers") or {})
        headers["Authorization"] = f"Bearer {token}"
        response = super().request(method, path, **{**kwargs, "headers": headers})
        self._observe(response)
        return response

    # -- API limit ------------------------------------------------------------------------------
    def _observe(self, response: requests.Response) -> None:
        usage = parse_limit_info(response.headers.get(LIMIT_HEADER))
        if usage is not None:
            self.usage = usage

    def pause_before_next(self) -> float:
        """How long to wait before the next request: 0 below the threshold, rising to `limit_max_delay` at 100%."""
        usage = self.usage
        if usage is None or usage.limit <= 0 or usage.ratio < self.limit_threshold:
            return 0.0
        span = max(1e-9, 1.0 - self.limit_threshold)
        return min(self.limit_max_delay, self.limit_max_delay * (usage.ratio - self.limit_threshold) / span)

    def _pace(self) -> None:
        delay = self.pause_before_next()
        if delay > 0:
            assert self.usage is not None
            log.info(
                "Salesforce API usage at %d of %d today; pausing %.1fs before the next request",
                self.usage.used,
                self.usage.limit,
                delay,
            )
            self.paused_seconds += delay
            self._sleep(delay)

    # -- errors ---------------------------------------------------------------------------------
    def _error(self, method: str, url: str, response: requests.Response, wait: float | None) -> IntegrationError:
        self._observe(response)
        codes = error_codes(response)
        status = response.status_code
        if (status == 401 and TOKEN_PATH not in url) or is_bad_oauth_token(response):
            expired = SessionExpired(
                self.redact(f"{method} {url} answered 401: {http.server_message(response)}"), status=401
            )
            expired.codes = tuple(codes)  # type: ignore[attr-defined]
            return expired
        if status == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
            return RequestLimitExceeded(
                self.redact(
                    f"{method} {url}: the org's daily API request limit is used up (REQUEST_LIMIT_EXCEEDED); "
                    f"retrying in {self.limit_backoff:.0f}s"
                ),
                status=403,
                retry_after=self.limit_backoff,
            )
        error = super()._error(method, url, response, wait)
        error.codes = tuple(codes)  # type: ignore[attr-defined]
        return error

    def __repr__(self) -> str:
        return f"<SalesforceClient {self.base_url} {self.tokens.flow}>"

"""One HTTP client for every integration: keep-alive session, timeouts, bounded retries, redaction.

Integrations differ in endpoints and payloads, not in how to survive a flaky server, so the
retry policy (429/503 honour `Retry-After` or `X-RateLimit-Reset`, capped and jittered; other 4xx
fail fast with the server's message) lives here once.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import requests

from data_manager.collectors.tickets.errors import IntegrationError, PermanentError, TransientError

log = logging.getLogger(__name__)

# 429 and 503 say the request was not processed, so any method may be sent again. 500/502/504 (and a
# connection lost mid-request) may follow a request that took effect: only idempotent methods repeat them.
RETRY_ANY_METHOD = frozenset({429, 503})
RETRY_IDEMPOTENT = frozenset({500, 502, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
TRANSIENT_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
_SECRET_PARAMS = re.compile(r"(?i)([?&](?:key|api_key|apikey|token|access_token|password|Bugzilla_api_key)=)[^&#\s]*")


# The secrets of the client whose request is in flight in this thread (or task). urllib3 logs from inside
# `session.request`, so the filter below sees exactly that client's secrets; nothing accumulates per process.
_request_secrets: ContextVar[tuple[str, ...]] = ContextVar("ticket_http_request_secrets", default=())


class _RedactingFilter(logging.Filter):
    """urllib3 logs request lines (query strings included) at DEBUG; scrub them before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, _request_secrets.get())
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactingFilter())


class NotFoundError(PermanentError):
    """The server answered 404 (the caller decides whether that means "gone")."""


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove secret values and secret-looking query parameters from `text`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _SECRET_PARAMS.sub(r"\1***", text)


def retry_after_seconds(response: requests.Response, now: Callable[[], datetime] | None = None) -> float | None:
    """How long the server asked us to wait, from `Retry-After` (seconds or HTTP date) or `X-RateLimit-Reset`."""
    current = (now or (lambda: datetime.now(UTC)))()
    value = response.headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, (when - current).total_seconds())
            except (TypeError, ValueError):
                pass
    reset = response.headers.get("X-RateLimit-Reset")
    if reset:
        reset = reset.strip()
        try:
            when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - current).total_seconds())
        except ValueError:
            try:  # some servers send epoch seconds
                return max(0.0, float(reset) - current.timestamp())
            except ValueError:
                pass
    return None


def clients_of(holder: object) -> list[ApiClient]:
    """The HTTP clients an object (an integration) holds as attributes."""
    return [value for value in vars(holder).values() if isinstance(value, ApiClient)]


def server_message(response: requests.Response, limit: int = 500) -> str:
    """The error text a ticket system put in its response body (Jira, Redmine, Bugzilla, Salesforce shapes)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:limit] if text else response.reason or ""
    parts: list[str] = []
    if isinstance(body, list):  # Salesforce: [{"message", "errorCode"}]
        parts += [
            f"{item.get('errorCode', '')}: {item.get('message', '')}".strip(": ")
            for item in body
            if isinstance(item, dict)
        ]
    elif isinstance(body, dict):
        parts += [str(m) for m in body.get("errorMessages") or []]
        errors = body.get("errors")
        if isinstance(errors, dict):
            parts += [f"{k}: {v}" for k, v in errors.items()]
        elif isinstance(errors, list):
            parts += [str(e) for e in errors]
        for key in ("message", "error_description", "error"):
            if isinstance(body.get(key), str) and body[key] not in parts:
                parts.append(body[key])
    return ("; ".join(p for p in parts if p) or response.text.strip())[:limit]


class ApiClient:
    """A `requests.Session` bound to one base URL, with the retry policy every integration shares."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_wait: float = 60.0,
        backoff_base: float = 0.5,
        secrets: Iterable[str | None] = (),
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        user_agent: str = "ticket-collector/0.1",
        base_url_setting: str = "base_url",
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        # The setting that holds `base_url`, named when it is not an http(s) URL (a seed-style constructor may be
        # given a placeholder such as "..."; the first request then fails permanently instead of being sent).
        self.base_url_setting = base_url_setting
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.backoff_base = backoff_base
        self._secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.session.headers["Accept"] = "application/json"
        self.session.headers.update(dict(headers or {}))
        # A larger pool so bounded-concurrency resyncs reuse connections instead of opening new ones.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._count_lock = threading.Lock()
        self.request_count = 0  # every HTTP request sent, retries included (for resync reports)
        self._unauthorized_listeners: list[Callable[[], None]] = []
        self._throttle_listeners: list[Callable[[], None]] = []

    def on_unauthorized(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever the server answers 401: our credentials stopped working.

        The pipeline's credential proof (`credentials.prove_credentials`) listens here, so a proof
        never outlives the first sign that the credentials were refused.
        """
        with self._count_lock:
            if listener not in self._unauthorized_listeners:
                self._unauthorized_listeners.append(listener)

    def on_throttled(self, listener: Callable[[], None]) -> None:
        """Call `listener` (in the requesting thread) whenever the server answers 429 or 503: it wants less load.

        The resync's adaptive concurrency (`throttle.AdaptiveLimit`) listens here to run fewer threads.
        """
        with self._count_lock:
            self._throttle_listeners.append(listener)

    def off_throttled(self, listener: Callable[[], None]) -> None:
        """Stop calling a listener given to `on_throttled` (a resync that ended)."""
        with self._count_lock:
            if listener in self._throttle_listeners:
                self._throttle_listeners.remove(listener)

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/")) if not path.startswith(("http://", "https://")) else path

    def add_secret(self, secret: str | None) -> None:
        """A secret learnt after construction (e.g. an OAuth access token): redacted like the others."""
        if secret and len(secret) >= 4:
            self._secrets = (*self._secrets, secret)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request; return a 2xx/3xx response or raise a classified `IntegrationError`."""
        url = self.url(path)
        if not url.startswith(("http://", "https://")):
            raise PermanentError(
                self.redact(
                    f"{self.base_url_setting} {self.base_url.rstrip('/')!r} is not an http(s) URL; nothing sent"
                )
            )
        idempotent = method.upper() in IDEMPOTENT_METHODS
        kwargs.setdefault("timeout", self.timeout)
        attempt = 0
        while True:
            attempt += 1
            with self._count_lock:  # resyncs send from several threads
                self.request_count += 1
            in_flight = _request_secrets.set(self._secrets)
            try:
                response = self.session.request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                never_sent = isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in repr(exc)
                if attempt > self.max_retries or not (idempotent or never_sent):
                    raise TransientError(self.redact(f"{method} {url}: {type(exc).__name__}: {exc}")) from None
                self._sleep(self._backoff(attempt, None))
                continue
            finally:
                _request_secrets.reset(in_flight)
            if response.status_code < 400:
                return response
            if response.status_code in RETRY_ANY_METHOD:
                for listener in list(self._throttle_listeners):
                    listener()
            wait = retry_after_seconds(response)
            retryable = response.status_code in RETRY_ANY_METHOD or (
                idempotent and response.status_code in RETRY_IDEMPOTENT
            )
            if retryable and attempt <= self.max_retries:
                if wait is None or wait <= self.max_wait:
                    delay = self._backoff(attempt, wait)
                    log.info(
                        "%s %s answered %s; retrying in %.1fs", method, self.redact(url), response.status_code, delay
                    )
                    self._sleep(delay)
                    continue
            raise self._error(method, response.url or url, response, wait)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self._json(self.request("GET", path, **kwargs))

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request`, then the body as JSON (None when empty); a non-JSON body is a `TransientError`."""
        return self._json(self.request(method, path, **kwargs))

    def _json(self, response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise TransientError(
                self.redact(
                    f"{response.request.method} {response.url}: expected JSON, got {response.headers.get('Content-Type', 'no content type')}"
                )
            ) from None

    def _backoff(self, attempt: int, server_wait: float | None) -> float:
        """The server's wait if it gave one, else exponential; plus jitter so clients don't retry in lockstep."""
        base = server_wait if server_wait is not None else self.backoff_base * (2 ** (attempt - 1))
        return min(self.max_wait, base) + random.uniform(0, min(1.0, self.backoff_base))

    def notify_unauthorized(self) -> None:
        """Tell the listeners the server refused our credentials (a 401, or a system's own way of saying it)."""
        for listener in list(self._unauthorized_listeners):
            listener()

    def _error(self, method: str, url: str, response: requests.Response, wait: float | None) -> IntegrationError:
        status = response.status_code
        message = self.redact(f"{method} {url} answered {status}: {server_message(response)}")
        if status == 401:
            self.notify_unauthorized()
        if status == 404:
            return NotFoundError(message, status=status)
        if status in TRANSIENT_STATUSES:
            return TransientError(message, status=status, retry_after=wait)
        return PermanentError(message, status=status)

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"<ApiClient {self.base_url}>"

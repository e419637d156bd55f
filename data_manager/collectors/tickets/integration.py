"""The seam between the pipeline and a ticket system.

Each system lives in one module `integrations/<system>.py` that defines a `TicketIntegration`
subclass. The pipeline (webhooks, workers, resync) only talks to this interface, so it never
branches on a system's name.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import importlib
import json
import pkgutil
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from types import MappingProxyType
from typing import Any, ClassVar

from marshmallow import EXCLUDE, Schema, fields, validate
from requests.structures import CaseInsensitiveDict

from data_manager.collectors.tickets.errors import ConfigError, WebhookAuthError, WebhookPayloadError
from data_manager.collectors.tickets.model import Comment, TicketData


@dataclass(frozen=True)
class TicketSnapshot:
    """Everything an integration fetched about one ticket: the model's data and the system's facts."""

    ticket_id: str
    data: TicketData
    comments: tuple[Comment, ...] = ()
    url: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    project: str | None = None
    status_name: str | None = None  # the system's own status name, e.g. "Waiting for customer"
    extra: Mapping[str, str] = field(default_factory=dict)  # tracker, priority, labels, ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "ticket_id", str(self.ticket_id))
        object.__setattr__(self, "comments", tuple(sorted(self.comments, key=lambda c: c.at)))
        object.__setattr__(
            self, "extra", MappingProxyType({str(k): str(v) for k, v in self.extra.items() if v is not None})
        )


@dataclass(frozen=True)
class TicketRef:
    """A ticket found by a listing, with its upstream update time when the listing tells it.

    A listing that already brought the complete ticket (every comment included) passes it as
    `snapshot`, and the resync stores it without fetching again.
    """

    ticket_id: str
    updated_at: datetime | None = None
    snapshot: TicketSnapshot | None = None


class EventAction(str, Enum):
    UPSERT = "upsert"  # fetch the ticket and store its current state
    DELETE = "delete"  # the ticket is gone upstream


@dataclass(frozen=True)
class TicketEvent:
    """One thing a webhook told us: which ticket changed and how. A hint; the worker re-fetches."""

    ticket_id: str
    action: EventAction = EventAction.UPSERT
    delivery_id: str | None = None  # the sender's id for this delivery, to recognise duplicates


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook request, independent of the web framework."""

    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", CaseInsensitiveDict(dict(self.headers)))


def constant_time_equal(given: str | bytes | None, expected: str | bytes) -> bool:
    """Compare secrets without leaking their length-prefix through timing."""
    if given is None:
        return False
    given_bytes = given.encode() if isinstance(given, str) else given
    expected_bytes = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(given_bytes, expected_bytes)


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body parsed as a JSON object, or `WebhookPayloadError` saying why it is not one."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # json's C scanner recurses once per nesting level
        raise WebhookPayloadError("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError("body must be a JSON object")
    return payload


_HMAC_ALGORITHMS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "sha512": hashlib.sha512}


def verify_hmac_signature(header_value: str | None, body: bytes, secret: str, *, header_name: str) -> None:
    """Check a `<algorithm>=<hex digest>` signature of the raw body (GitHub / Jira / Redmine 7 style).

    The algorithm is read from the prefix; only known strong-enough ones are accepted.
    """
    if not header_value:
        raise WebhookAuthError(f"missing {header_name} signature header")
    algorithm, sep, digest = header_value.strip().partition("=")
    algorithm = algorithm.strip().lower()
    if not sep or algorithm not in _HMAC_ALGORITHMS:
        raise WebhookAuthError(f"{header_name} must look like 'sha256=<hex digest>'")
    expected = hmac.new(secret.encode(), body, _HMAC_ALGORITHMS[algorithm]).hexdigest()
    if not constant_time_equal(digest.strip().lower(), expected):
        raise WebhookAuthError(f"{header_name} signature does not match the request body")


class IntegrationConfigSchema(Schema):
    """Keys every system accepts under `data_manager.sources.tickets.<system>`."""

    class Meta:
        unknown = EXCLUDE

    enabled = fields.Boolean(load_default=False)
    base_url = fields.Url(require_tld=False, schemes={"http", "https"})
    webhook_secret = fields.String(load_default=None, allow_none=True)
    # Set true only on purpose: the endpoint then accepts unsigned webhooks (e.g. behind an authenticating proxy).
    webhook_unauthenticated = fields.Boolean(load_default=False)
    timeout_seconds = fields.Float(load_default=30.0, validate=validate.Range(min=0.1, max=600))
    max_retries = fields.Integer(load_default=4, validate=validate.Range(min=0, max=20))
    resync_concurrency = fields.Integer(load_default=4, validate=validate.Range(min=1, max=64))
    resync_overlap_seconds = fields.Integer(load_default=300, validate=validate.Range(min=0, max=86400))
    # How long a successful credential check is trusted (see credentials.py); 0 = check every time.
    credential_proof_seconds = fields.Float(load_default=60.0, validate=validate.Range(min=0, max=3600))


class TicketIntegration(abc.ABC):
    """One ticket system: fetch a ticket, list changed tickets, authenticate and parse its webhooks."""

    system: ClassVar[str]
    config_schema: ClassVar[type[Schema]] = IntegrationConfigSchema
    # Names of config keys that hold secrets; they are redacted wherever config is shown.
    secret_keys: ClassVar[frozenset[str]] = frozenset({"webhook_secret"})
    # Media types this system's webhooks arrive as (JSON unless a system sends e.g. SOAP/XML).
    webhook_content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    # The system's own rule for a ticket id (fullmatch). A webhook event whose id breaks it is refused
    # (400) before anything is queued. Every system sets its own; this default only bounds the shape.
    ticket_id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")

    webhook_secret: str | None = None
    webhook_unauthenticated: bool = False
    resync_concurrency: int = 4
    resync_overlap_seconds: int = 300
    credential_proof_seconds: float = 60.0

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: Mapping[str, Any]) -> TicketIntegration:
        """Build from the validated `sources.tickets.<system>` mapping."""

    def apply_common_config(self, config: Mapping[str, Any]) -> None:
        """Take the keys `IntegrationConfigSchema` defines for every system."""
        self.webhook_secret = config.get("webhook_secret") or None
        self.webhook_unauthenticated = bool(config.get("webhook_unauthenticated", False))
        self.resync_concurrency = int(config.get("resync_concurrency", 4))
        self.resync_overlap_seconds = int(config.get("resync_overlap_seconds", 300))
        self.credential_proof_seconds = float(config.get("credential_proof_seconds", 60.0))

    # -- reading ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def fetch(self, ticket_id: str) -> TicketSnapshot:
        """The ticket's current state with every comment; raises `TicketGone` if it no longer exists."""

    @abc.abstractmethod
    def iter_changed(self, since: datetime | None) -> Iterator[TicketRef]:
        """Every ticket updated at or after `since` (every ticket when None), closed ones included."""

    def in_scope(self, ticket_id: str) -> bool | None:
        """Whether an existing ticket is inside the configured scope (project, query); None when unknown.

        A full resync asks this only about stored tickets its listing did not return, and removes our
        copy only on a definite False, so a listing that came back short never costs a live ticket.
        Integrations whose `fetch` already treats out-of-scope tickets as gone need not answer.
        """
        return None

    @abc.abstractmethod
    def verify_credentials(self) -> None:
        """One cheap call that fails with `CredentialsRefused` unless the system accepts our credentials.

        Many systems answer a refused key as the anonymous user ("not found" for everything), so the
        pipeline calls this (cached, via `credentials.prove_credentials`) before listing and before
        removing a copy. Integrations do not call it themselves.
        """

    # -- webhooks --------------------------------------------------------------------------------
    def authenticate_webhook(self, request: WebhookRequest) -> None:
        """Refuse the request unless it proves it came from the system (or the config waives that)."""
        if self.webhook_secret:
            self.verify_webhook(request, self.webhook_secret)
        elif not self.webhook_unauthenticated:
            raise WebhookAuthError(
                f"no webhook_secret is configured for {self.system}; set one, or set "
                f"webhook_unauthenticated: true to accept unsigned webhooks on purpose"
            )

    @abc.abstractmethod
    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        """Raise `WebhookAuthError` unless the request carries a valid signature or token for `secret`."""

    @abc.abstractmethod
    def parse_webhook(self, request: WebhookRequest) -> list[TicketEvent]:
        """The events in an authenticated request; [] for kinds we do not act on. `WebhookPayloadError` if malformed."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    def __repr__(self) -> str:  # never show credentials
        return f"<{type(self).__name__} system={self.system!r}>"


# -- registry of systems ----------------------------------------------------------------------------
_INTEGRATIONS_PACKAGE = "data_manager.collectors.tickets.integrations"


def known_systems() -> list[str]:
    """Every system that has a module in the integrations package."""
    package = importlib.import_module(_INTEGRATIONS_PACKAGE)
    return sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_"))


def integration_class(system: str, key_path: str = "") -> type[TicketIntegration]:
    """The integration class for `system`, imported on first use."""
    if system not in known_systems():
        raise ConfigError(f"unknown ticket system {system!r} (known: {', '.join(known_systems())})", key_path)
    module = importlib.import_module(f"{_INTEGRATIONS_PACKAGE}.{system}")
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, TicketIntegration)
            and getattr(value, "system", None) == system
        ):
            return value
    raise ConfigError(f"module {module.__name__} defines no TicketIntegration with system = {system!r}", key_path)

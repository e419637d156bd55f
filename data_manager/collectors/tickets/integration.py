"""The seam between the pipeline and a ticket system: one contract class per system.

Each system lives in one module `integrations/<system>.py` (or a package `integrations/<system>/`)
that defines `class X(TicketIntegration, system="<system>")`. That one class reads (fetch, list
changed), proves its credentials, authenticates and parses webhooks, and writes (the seed's
`TicketBackend` methods). The pipeline (webhooks, workers, resync) only talks to this interface,
so it never branches on a system's name. See docs/adding-a-system.md.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import importlib
import json
import pkgutil
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime
from enum import Enum
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate
from requests.structures import CaseInsensitiveDict

from data_manager.collectors.tickets.errors import (
    ConfigError,
    ReadOnlySystemError,
    TicketGone,
    WebhookAuthError,
    WebhookPayloadError,
)
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


@dataclass(frozen=True)
class WebhookReply:
    """What to answer a webhook once its events are safely queued, when the system wants more than JSON."""

    status: int
    body: bytes
    content_type: str


_Shared = TypeVar("_Shared")


class SharedResources:
    """What the integrations built together share, owned by whoever builds them (no process-wide registry).

    `TicketManager` (and so `service.runtime.Runtime`, the composition root) owns one and hands it to
    every `from_settings`; so do `AppConfig.build_integrations` and `Ticket.configure(config)`, one per
    build. Instances of one build that name the same resource get the same object (two `memory`
    instances with `store: default` see the same tickets); two managers or runtimes in one process never
    share state by accident, and tests have nothing to reset.
    """

    def __init__(self) -> None:
        self._items: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, key: str, kind: type[_Shared], factory: Callable[[], _Shared]) -> _Shared:
        """The resource called `key`, made by `factory` on first use; a `TypeError` if `key` holds another kind."""
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            item = self._items[key]
        if not isinstance(item, kind):
            raise TypeError(f"shared resource {key!r} is a {type(item).__name__}, not a {kind.__name__}")
        return item

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items


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


SOURCES_PATH = "data_manager.sources.tickets"
# Tickets a resync works on at once: a remote server's latency, not our CPU, bounds a resync, and 8 keep-alive
# connections reach the floor of a real Redmine (bench/redmine_resync.py). A 429/503 halves it for the run.
DEFAULT_RESYNC_CONCURRENCY = 8


@dataclass(frozen=True, eq=False, kw_only=True)
class IntegrationSettings(Mapping[str, Any]):
    """Validated settings of one configured system instance: the keys every system accepts.

    A system's settings dataclass subclasses this with its own keys; its `config_schema` builds it
    in `post_load`, so config is validated exactly once. The read-only mapping view
    (`settings["api_key"]`, `dict(settings)`) serves display (secrets redacted) and older callers.
    """

    enabled: bool = False
    webhook_secret: str | None = None
    # True only on purpose: the endpoint then accepts unsigned webhooks (e.g. behind an authenticating proxy).
    webhook_unauthenticated: bool = False
    timeout_seconds: float = 30.0
    max_retries: int = 4
    resync_concurrency: int = DEFAULT_RESYNC_CONCURRENCY
    resync_overlap_seconds: int = 300
    credential_proof_seconds: float = 60.0  # how long a successful credential check is trusted (credentials.py)

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclass_fields(cls))


class IntegrationConfigSchema(Schema):
    """Keys every system accepts under `data_manager.sources.tickets.<name>`; loads `settings_class`.

    A system's schema subclasses this, adds its keys and names its settings dataclass in
    `settings_class` (same field names).
    """

    settings_class: ClassVar[type[IntegrationSettings]] = IntegrationSettings

    class Meta:
        unknown = EXCLUDE

    enabled = fields.Boolean(load_default=False)
    webhook_secret = fields.String(load_default=None, allow_none=True)
    webhook_unauthenticated = fields.Boolean(load_default=False)
    timeout_seconds = fields.Float(load_default=30.0, validate=validate.Range(min=0.1, max=600))
    max_retries = fields.Integer(load_default=4, validate=validate.Range(min=0, max=20))
    resync_concurrency = fields.Integer(load_default=DEFAULT_RESYNC_CONCURRENCY, validate=validate.Range(min=1, max=64))
    resync_overlap_seconds = fields.Integer(load_default=300, validate=validate.Range(min=0, max=86400))
    # How long a successful credential check is trusted (see credentials.py); 0 = check every time.
    credential_proof_seconds = fields.Float(load_default=60.0, validate=validate.Range(min=0, max=3600))

    @post_load
    def _make_settings(self, data: dict[str, Any], **kwargs: Any) -> IntegrationSettings:
        known = {f.name for f in dataclass_fields(self.settings_class)}
        return self.settings_class(**{key: value for key, value in data.items() if key in known})


def first_config_error(messages: Any, key_path: str) -> ConfigError:
    """Flatten marshmallow's nested messages into one error that names the full key path."""
    if isinstance(messages, Mapping) and messages:
        key, inner = next(iter(messages.items()))
        return first_config_error(inner, key_path if key == "_schema" else f"{key_path}.{key}")
    if isinstance(messages, list) and messages:
        return (
            first_config_error(messages[0], key_path)
            if isinstance(messages[0], (Mapping, list))
            else (ConfigError(str(messages[0]).rstrip("."), key_path))
        )
    return ConfigError(str(messages), key_path)


# The write side: the seed's `TicketBackend` methods. A read-only system need not define them.
WRITE_METHODS = ("create", "update", "add_comment")
BACKEND_METHODS = ("create", "read", "update", "add_comment")


class TicketIntegration(abc.ABC):
    """One ticket system: read, prove credentials, take webhooks, and write (the seed's TicketBackend).

    Subclass it as `class X(TicketIntegration, system="x")`; the class is checked when it is defined:
    a missing method is a `TypeError` naming it, at import. Intermediate abstract bases leave out
    `system=`. A read-only system sets `read_only = True`; its `create`, `update` and `add_comment`
    then raise `ReadOnlySystemError` and `read` answers from `fetch`.
    """

    system: ClassVar[str]  # the system TYPE ("jira"); the instance is `name`
    read_only: ClassVar[bool] = False
    # Whether `fetch_many` sees every change already made (read-after-write). The worker drains a burst of a
    # webhook's jobs with it only then: a batched read that lags a write would store the version before the
    # change the webhook announced, and nothing would fetch again (Jira's search index lags its writes).
    fetch_many_sees_latest: ClassVar[bool] = True
    config_schema: ClassVar[type[IntegrationConfigSchema]] = IntegrationConfigSchema
    # Names of config keys that hold secrets; they are redacted wherever config is shown.
    secret_keys: ClassVar[frozenset[str]] = frozenset({"webhook_secret"})
    # Media types this system's webhooks arrive as (JSON unless a system sends e.g. SOAP/XML).
    webhook_content_types: ClassVar[tuple[str, ...]] = ("application/json",)
    # What a ticket id of this system looks like; a webhook event whose id does not fullmatch is refused.
    ticket_id_pattern: ClassVar[re.Pattern[str]]

    webhook_secret: str | None = None
    webhook_unauthenticated: bool = False
    resync_concurrency: int = DEFAULT_RESYNC_CONCURRENCY
    resync_overlap_seconds: int = 300
    credential_proof_seconds: float = 60.0
    _name: str | None = None

    def __init_subclass__(cls, system: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if system is None:
            return  # an intermediate base: checked where a concrete system names itself
        if not isinstance(system, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", system):
            raise TypeError(f"{cls.__name__}: system must be lower-case letters, digits and '_', not {system!r}")
        cls.system = system
        if cls.read_only:
            _install_read_only_methods(cls)
        missing = sorted(name for name in _abstract_names(cls) if _is_abstract(getattr(cls, name, None)))
        if not isinstance(getattr(cls, "ticket_id_pattern", None), re.Pattern):
            missing.append("ticket_id_pattern (a compiled re.Pattern)")
        if missing:
            raise TypeError(
                f"{cls.__module__}.{cls.__name__} (system {system!r}) does not implement: {', '.join(missing)}"
                + ("" if cls.read_only else "; a read-only system says read_only = True")
            )

    # -- construction ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The instance name: `source_type` in hashes, files, job ids, metrics, cursors, the webhook path."""
        return self._name or self.system

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def config_key(self, key: str) -> str:
        """The key path of one of this instance's settings, as every config error names it."""
        return f"{SOURCES_PATH}.{self.name}.{key}"

    @classmethod
    def settings_warnings(cls, settings: Any, key_path: str) -> list[str]:
        """What `tickets check-config` should warn about in valid settings (a permission the key needs, ...)."""
        return []

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Any, *, name: str, shared: SharedResources | None = None) -> Self:
        """Build from this system's validated settings (its `config_schema`'s `settings_class`); never re-validate.

        `shared`: what the integrations built together share (see `SharedResources`); None: nothing shared.
        """

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, name: str | None = None, shared: SharedResources | None = None
    ) -> Self:
        """Build from a raw `sources.tickets.<name>` mapping (validated here) or from already-loaded settings."""
        name = name or cls.system
        settings_class = cls.config_schema.settings_class
        if not isinstance(config, settings_class):
            try:
                config = cls.config_schema().load({**dict(config), "enabled": True})
            except ValidationError as exc:
                raise first_config_error(exc.messages, f"{SOURCES_PATH}.{name}") from None
        return cls.from_settings(config, name=name, shared=shared)

    def apply_settings(self, settings: IntegrationSettings, *, name: str) -> None:
        """Take the keys every system accepts, and the instance name."""
        self.name = name
        self.webhook_secret = settings.webhook_secret or None
        self.webhook_unauthenticated = bool(settings.webhook_unauthenticated)
        self.resync_concurrency = int(settings.resync_concurrency)
        self.resync_overlap_seconds = int(settings.resync_overlap_seconds)
        self.credential_proof_seconds = float(settings.credential_proof_seconds)

    # -- reading ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def fetch(self, ticket_id: str) -> TicketSnapshot:
        """The ticket's current state with every comment; raises `TicketGone` if it no longer exists
        (or is out of our reach: 404, 403, moved). The pipeline proves credentials before acting on it."""

    def fetch_many(self, ticket_ids: Sequence[str]) -> dict[str, TicketSnapshot | TicketGone]:
        """Every requested id → its snapshot or `TicketGone`; any other error raises for the whole batch.

        One `fetch` per id by default; a system with a batch endpoint overrides this.
        """
        found: dict[str, TicketSnapshot | TicketGone] = {}
        for ticket_id in ticket_ids:
            try:
                found[ticket_id] = self.fetch(ticket_id)
            except TicketGone as gone:
                found[ticket_id] = gone
        return found

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
                f"no webhook_secret is configured for {self.name}; set one, or set "
                f"webhook_unauthenticated: true to accept unsigned webhooks on purpose"
            )

    @abc.abstractmethod
    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        """Raise `WebhookAuthError` unless the request carries a valid signature or token for `secret`."""

    @abc.abstractmethod
    def parse_webhook(self, request: WebhookRequest) -> list[TicketEvent]:
        """The events in an authenticated request; [] for kinds we do not act on. `WebhookPayloadError` if malformed."""

    def display_name(self, snapshot: TicketSnapshot) -> str | None:
        """The stored ticket's `display_name` (its metadata); None: the standard one.

        The standard one is `<ticket id>: <title>`, or for an untitled ticket the seed's default
        `{source_type}:{ticket_id}`. A system whose people know its tickets by another number (a Salesforce
        CaseNumber) names them that way here; the pipeline calls this for every ticket it stores.
        """
        return None

    def webhook_reply(self, events: list[TicketEvent]) -> WebhookReply | None:
        """The answer once every event is safely queued (or ignored); None: the standard JSON 202/200."""
        return None

    # -- writing (the seed's TicketBackend) ------------------------------------------------------
    @abc.abstractmethod
    def create(self, data: TicketData) -> str:
        """Create a ticket upstream; its id."""

    @abc.abstractmethod
    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        """The ticket's data and comments, for the `Ticket` facade."""

    @abc.abstractmethod
    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        """Change the named `TicketData` fields upstream."""

    @abc.abstractmethod
    def add_comment(self, ticket_id: str, comment: Comment) -> None:
        """Add a comment upstream."""

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    def __repr__(self) -> str:  # never show credentials
        return f"<{type(self).__name__} system={self.system!r} name={self.name!r}>"


def _is_abstract(value: Any) -> bool:
    return bool(getattr(value, "__isabstractmethod__", False))


def _abstract_names(cls: type) -> set[str]:
    """Abstract names of the bases plus the class's own (ABCMeta computes its set only after this check)."""
    names = {name for base in cls.__mro__[1:] for name in getattr(base, "__abstractmethods__", ())}
    return names | {name for name, value in vars(cls).items() if _is_abstract(value)}


def _install_read_only_methods(cls: type[TicketIntegration]) -> None:
    """Give a read-only system writes that refuse clearly, and a `read` that answers from `fetch`."""

    def refuse(operation: str) -> Any:
        def method(self: TicketIntegration, *args: Any, **kwargs: Any) -> Any:
            raise ReadOnlySystemError(self.name, operation)

        method.__name__ = operation
        method.__doc__ = f"Refused: {cls.__name__} is read-only."
        return method

    for operation in WRITE_METHODS:
        if _is_abstract(getattr(cls, operation, None)):
            setattr(cls, operation, refuse(operation))
    if _is_abstract(getattr(cls, "read", None)):

        def read(self: TicketIntegration, ticket_id: str) -> tuple[TicketData, list[Comment]]:
            snapshot = self.fetch(ticket_id)
            return snapshot.data, list(snapshot.comments)

        cls.read = read  # type: ignore[method-assign]


# -- the systems ------------------------------------------------------------------------------------
_INTEGRATIONS_PACKAGE = "data_manager.collectors.tickets.integrations"


def known_systems() -> list[str]:
    """Every system that has a module or package in the integrations package (nothing is imported)."""
    package = importlib.import_module(_INTEGRATIONS_PACKAGE)
    return sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_"))


def integration_class(system: str, key_path: str = "") -> type[TicketIntegration]:
    """The integration class for `system`, importing only that system's module.

    The class is found in its module (`class X(TicketIntegration, system="x")`), so there is no
    process-wide registry to fill or reset; an import error in one system never touches another.
    """
    if system not in known_systems():
        raise ConfigError(f"unknown ticket system {system!r} (known: {', '.join(known_systems())})", key_path)
    try:
        module = importlib.import_module(f"{_INTEGRATIONS_PACKAGE}.{system}")
    except Exception as exc:  # whatever one system's import raises is that system's error, reported for it alone
        raise ConfigError(f"the {system} integration cannot be loaded: {type(exc).__name__}: {exc}", key_path) from exc
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, TicketIntegration) and value.__dict__.get("system") == system:
            return value
    raise ConfigError(f"module {module.__name__} defines no class X(TicketIntegration, system={system!r})", key_path)

"""Load and validate `config.yaml`: `${VAR}` / `${VAR:-default}` substitution, env overrides, marshmallow.

Every error names the key path (e.g. `data_manager.sources.tickets.jira.api_token`) and, for a
missing environment variable, the variable. A disabled system is not validated beyond its shape,
so its unset secrets are no error, and its module is not even imported.

`data_manager.sources.tickets.<name>` is one INSTANCE of a ticket system: `type: <system>` says which
system (when absent, the name is the system, so `jira:` means a Jira). Each enabled instance is
validated once, by its system's schema, into that system's settings dataclass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from data_manager.collectors.tickets.errors import ConfigError
from data_manager.collectors.tickets.integration import (
    IntegrationSettings,
    SharedResources,
    TicketIntegration,
    first_config_error,
    integration_class,
    known_systems,
)

DEFAULT_CONFIG_PATH = "config.yaml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SOURCES_PATH = "data_manager.sources.tickets"
# An instance name is a file-name prefix, a URL segment, a metric label and part of env variable names.
_INSTANCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def substitute_env(value: Any, key_path: str, env: Mapping[str, str]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in strings, recursively; a missing VAR is a ConfigError."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set", key_path)

        return _VAR.sub(replace, value)
    if isinstance(value, Mapping):
        return {k: substitute_env(v, f"{key_path}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, f"{key_path}[{i}]", env) for i, v in enumerate(value)]
    return value


def env_override_name(name: str, key: str) -> str:
    """`TICKETS_<NAME>_<KEY>`: e.g. TICKETS_JIRA_API_TOKEN overrides sources.tickets.jira.api_token."""
    return f"TICKETS_{name}_{key}".upper()


class RedisSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    url = fields.String(load_default="redis://localhost:6379/0")
    key_prefix = fields.String(load_default="tickets")
    socket_timeout = fields.Float(load_default=1.0, validate=validate.Range(min=0.05, max=60))


class ResyncSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    # Periodic incremental resync run by the worker's scheduler; 0 turns it off.
    interval_minutes = fields.Integer(load_default=0, validate=validate.Range(min=0, max=7 * 24 * 60))
    # Periodic FULL resync (heals what no webhook reports, e.g. Redmine's edited notes); 0 turns it off.
    full_interval_hours = fields.Integer(load_default=0, validate=validate.Range(min=0, max=90 * 24))
    # Mass-deletion guard: a full resync that would remove more than this fraction of a system's stored
    # tickets AND more than max_delete_min of them removes none (`--allow-mass-delete` overrides once).
    max_delete_fraction = fields.Float(load_default=0.1, validate=validate.Range(min=0, max=1))
    max_delete_min = fields.Integer(load_default=20, validate=validate.Range(min=0))


class PersistenceSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    # Removed copies stay in <data_path>/trash/ this many days (`tickets restore`), then the worker purges them.
    trash_days = fields.Float(load_default=7.0, validate=validate.Range(min=0, max=3650))


STORE_PATH = "data_manager.store"
_STORE_SCHEMES = ("file:", "postgresql://", "postgres://")


def _store_url(value: str) -> bool:
    """`file:` (the embedded store: files + SQLite in `data_path`) or a PostgreSQL URL."""
    if value.strip() == "file:" or value.startswith(_STORE_SCHEMES[1:]):
        return True
    raise ValidationError("must be file: (the embedded store) or postgresql://user@host/db")


class StoreSchema(Schema):
    """Where tickets are kept: `file:` (default: files + SQLite in data_path) or `postgresql://...`."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(load_default="file:", validate=_store_url)
    pool_min_size = fields.Integer(load_default=1, validate=validate.Range(min=0, max=64))
    pool_max_size = fields.Integer(load_default=4, validate=validate.Range(min=1, max=64))
    statement_timeout_seconds = fields.Float(load_default=30.0, validate=validate.Range(min=0.1, max=3600))
    connect_timeout_seconds = fields.Integer(load_default=10, validate=validate.Range(min=1, max=300))


class WebhooksSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    max_body_bytes = fields.Integer(load_default=1_048_576, validate=validate.Range(min=1024, max=64 * 1_048_576))


class WorkersSchema(Schema):
    """How workers retry a ticket's sync and how quickly a crashed worker's job is taken over."""

    class Meta:
        unknown = EXCLUDE

    max_attempts = fields.Integer(load_default=12, validate=validate.Range(min=1, max=50))
    retry_base_seconds = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=3600))
    retry_max_seconds = fields.Float(load_default=1800.0, validate=validate.Range(min=0.1, max=86400))
    job_timeout_seconds = fields.Integer(load_default=600, validate=validate.Range(min=10, max=86400))
    lease_seconds = fields.Integer(load_default=15, validate=validate.Range(min=3, max=600))


@dataclass
class AppConfig:
    """The validated configuration the service runs with."""

    data_path: Path
    # instance name -> its system's validated settings dataclass when enabled; {"enabled": False} when not
    sources: dict[str, IntegrationSettings | dict[str, Any]]
    redis: dict[str, Any] = field(default_factory=dict)
    resync: dict[str, Any] = field(default_factory=lambda: dict(ResyncSchema().load({})))
    persistence: dict[str, Any] = field(default_factory=lambda: dict(PersistenceSchema().load({})))
    webhooks: dict[str, Any] = field(default_factory=dict)
    workers: dict[str, Any] = field(default_factory=lambda: dict(WorkersSchema().load({})))
    store: dict[str, Any] = field(default_factory=lambda: dict(StoreSchema().load({})))
    source_path: str = ""
    warnings: list[str] = field(default_factory=list)
    # instance name -> system type, for every instance (a missing name here means name == system)
    source_types: dict[str, str] = field(default_factory=dict)

    @property
    def enabled_systems(self) -> list[str]:
        """The names of the enabled instances (what `--system`, webhook paths and files use)."""
        return sorted(name for name, cfg in self.sources.items() if cfg.get("enabled"))

    def system_of(self, name: str) -> str:
        """The system type of the instance called `name`."""
        return self.source_types.get(name, name)

    def enabled_instances(self) -> list[tuple[str, IntegrationSettings]]:
        """(name, settings) of every enabled instance, in config order."""
        return [
            (name, cfg) for name, cfg in self.sources.items() if isinstance(cfg, IntegrationSettings) and cfg.enabled
        ]

    def build_integrations(self, shared: SharedResources | None = None) -> list[TicketIntegration]:
        """One integration per enabled instance, in config order, from the settings validated at load time.

        They share `shared` (a new `SharedResources` for this build when None), never anything process-wide.
        """
        shared = shared if shared is not None else SharedResources()
        built: list[TicketIntegration] = []
        for name, settings in self.enabled_instances():
            key_path = f"{SOURCES_PATH}.{name}"
            cls = integration_class(self.system_of(name), key_path)
            try:
                built.append(cls.from_settings(settings, name=name, shared=shared))
            except ConfigError as exc:
                for integration in built:
                    integration.close()
                if exc.key_path.startswith(SOURCES_PATH):
                    raise
                key = exc.key_path.rsplit(".", 1)[-1]  # a constructor names the bare key ("base_url", "jira.base_url")
                message = str(exc).removeprefix(f"{exc.key_path}: ")
                raise ConfigError(message, f"{key_path}.{key}" if key else key_path) from exc
            except (TypeError, ValueError, KeyError) as exc:
                for integration in built:
                    integration.close()
                raise ConfigError(str(exc), key_path) from exc
        return built

    def ticket_backends(self) -> list[tuple[str, TicketIntegration]]:
        """(name, integration) of every enabled instance, freshly built: what `Ticket.configure(config)` registers."""
        return [(integration.name, integration) for integration in self.build_integrations()]

    def data_manager(self) -> dict[str, Any]:
        """The `data_manager` mapping `TicketManager` takes (re-validated from it)."""
        tickets: dict[str, dict[str, Any]] = {}
        for name, cfg in self.sources.items():
            tickets[name] = dict(cfg)
            if self.system_of(name) != name:
                tickets[name]["type"] = self.system_of(name)
        return {"data_path": str(self.data_path), "sources": {"tickets": tickets}}

    def redacted_sources(self) -> dict[str, dict[str, Any]]:
        """Sources with every secret value replaced, for display (disabled ones are not imported: nothing to hide)."""
        shown: dict[str, dict[str, Any]] = {}
        for name, cfg in self.sources.items():
            secrets = integration_class(self.system_of(name)).secret_keys if cfg.get("enabled") else frozenset()
            shown[name] = {k: ("***" if k in secrets and v else v) for k, v in cfg.items()}
            if self.system_of(name) != name:
                shown[name] = {"type": self.system_of(name), **shown[name]}
        return shown


def _as_mapping(value: Any, key_path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"must be a mapping, not {type(value).__name__}", key_path)
    return dict(value)


def _load_schema(schema: Schema, raw: Mapping[str, Any], key_path: str) -> Any:
    """What `schema` loads (a dict, or the settings dataclass its `post_load` builds); errors name the key path."""
    try:
        return schema.load(raw)
    except ValidationError as exc:
        raise first_config_error(exc.messages, key_path) from None


def _is_enabled(raw: Mapping[str, Any], key_path: str, env: Mapping[str, str]) -> bool:
    value = substitute_env(raw.get("enabled", False), f"{key_path}.enabled", env)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "on", "1", "false", "no", "off", "0", ""}:
        return value.strip().lower() in {"true", "yes", "on", "1"}
    raise ConfigError(f"must be true or false, not {value!r}", f"{key_path}.enabled")


def parse_config(raw: Any, env: Mapping[str, str] | None = None, source_path: str = "") -> AppConfig:
    """Validate an already-parsed YAML document."""
    env = dict(os.environ if env is None else env)
    root = _as_mapping(raw, "<root>")
    dm = _as_mapping(root.get("data_manager"), "data_manager")
    data_path = env.get("DATA_PATH") or substitute_env(dm.get("data_path", "./data"), "data_manager.data_path", env)
    if not isinstance(data_path, str) or not data_path.strip():
        raise ConfigError("must be a non-empty path", "data_manager.data_path")
    sources_raw = _as_mapping(_as_mapping(dm.get("sources"), "data_manager.sources").get("tickets"), SOURCES_PATH)

    sources: dict[str, IntegrationSettings | dict[str, Any]] = {}
    source_types: dict[str, str] = {}
    warnings: list[str] = []
    for raw_name, instance_raw in sources_raw.items():
        name = str(raw_name)
        key_path = f"{SOURCES_PATH}.{name}"
        instance_raw = _as_mapping(instance_raw, key_path)
        system = _system_type(name, instance_raw, key_path, env)
        source_types[name] = system
        if not _is_enabled(instance_raw, key_path, env):
            sources[name] = {"enabled": False}
            continue
        cls = integration_class(system, key_path)  # only now: a disabled system's module is never imported
        for key in list(cls.config_schema().fields):
            override = env.get(env_override_name(name, key))
            if override:
                instance_raw[key] = override
        resolved = substitute_env(instance_raw, key_path, env)
        resolved.pop("type", None)
        resolved["enabled"] = True
        settings = sources[name] = _load_schema(cls.config_schema(), resolved, key_path)
        if not settings.webhook_secret and not settings.webhook_unauthenticated:
            warnings.append(
                f"{key_path}.webhook_secret is not set: webhooks for {name} will be rejected (401) "
                f"until it is, or until webhook_unauthenticated: true says so on purpose"
            )
        elif settings.webhook_unauthenticated and not settings.webhook_secret:
            warnings.append(f"{key_path}: webhooks are accepted WITHOUT authentication (webhook_unauthenticated: true)")
        warnings.extend(cls.settings_warnings(settings, key_path))

    def section(key: str, schema: Schema, overrides: Mapping[str, str | None] | None = None) -> dict[str, Any]:
        """A top-level section: substituted, overridden from the environment, validated."""
        raw = substitute_env(_as_mapping(root.get(key), key), key, env)
        raw.update({field: value for field, value in (overrides or {}).items() if value})
        return dict(_load_schema(schema, raw, key))

    return AppConfig(
        data_path=Path(data_path).expanduser(),
        sources=sources,
        redis=section("redis", RedisSchema(), {"url": env.get("REDIS_URL")}),
        resync=section("resync", ResyncSchema()),
        persistence=section("persistence", PersistenceSchema()),
        webhooks=section("webhooks", WebhooksSchema()),
        workers=section("workers", WorkersSchema()),
        store=_store_section(dm, env),
        source_path=source_path,
        warnings=warnings,
        source_types=source_types,
    )


def _store_section(dm: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`data_manager.store`, with `DATABASE_URL` overriding its url; errors name `data_manager.store.<key>`."""
    raw = substitute_env(_as_mapping(dm.get("store"), STORE_PATH), STORE_PATH, env)
    if env.get("DATABASE_URL"):
        raw["url"] = env["DATABASE_URL"]
    if raw.get("url") in (None, ""):
        raw.pop("url", None)
    store = dict(_load_schema(StoreSchema(), raw, STORE_PATH))
    if store["pool_min_size"] > store["pool_max_size"]:
        raise ConfigError("must not exceed pool_max_size", f"{STORE_PATH}.pool_min_size")
    return store


def _system_type(name: str, raw: Mapping[str, Any], key_path: str, env: Mapping[str, str]) -> str:
    """The system an instance runs: its `type`, else its name; checked without importing anything."""
    if "type" in raw:
        system = substitute_env(raw["type"], f"{key_path}.type", env)
        if not isinstance(system, str) or system not in known_systems():
            raise ConfigError(
                f"unknown ticket system {system!r} (known: {', '.join(known_systems())})", f"{key_path}.type"
            )
        if not _INSTANCE_NAME.fullmatch(name):
            raise ConfigError(
                "an instance name must be lower-case letters, digits and '_', starting with a letter (at most 40)",
                key_path,
            )
        return system
    if name not in known_systems():
        raise ConfigError(
            f"unknown ticket system {name!r} (known: {', '.join(known_systems())}); "
            f"a second instance of a system names it with `type: <system>`",
            key_path,
        )
    return name


def config_path(explicit: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """`--config PATH`, else `TICKETS_CONFIG`, else ./config.yaml."""
    env = os.environ if env is None else env
    return Path(explicit or env.get("TICKETS_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate the config file; a missing file is an error naming the path."""
    resolved = config_path(path, env)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {resolved} does not exist (set --config or TICKETS_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {resolved}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{resolved} is not valid YAML: {exc}") from None
    return parse_config(raw, env, source_path=str(resolved))

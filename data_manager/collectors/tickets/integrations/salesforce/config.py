"""`data_manager.sources.tickets.salesforce`: the keys Salesforce accepts, validated once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from data_manager.collectors.tickets.errors import ConfigError
from data_manager.collectors.tickets.integration import IntegrationConfigSchema, IntegrationSettings
from data_manager.collectors.tickets.integrations.salesforce._ids import ID_PATTERN
from data_manager.collectors.tickets.integrations.salesforce._soql import validate_where
from data_manager.collectors.tickets.model import Status

DEFAULT_API_VERSION = "62.0"
# What `Ticket.comment(...)` posts: a public CaseComment (IsPublished: customers see it in portals, and an org
# that notifies contacts of case comments emails it) or an internal one. The model's Comment has no visibility.
COMMENT_VISIBILITIES = ("public", "internal")
_STATES = [s.value for s in Status]


def _soql_condition(value: Any) -> None:
    try:
        validate_where(value, "soql_where")
    except ConfigError as exc:
        raise ValidationError(str(exc).removeprefix("soql_where: ")) from None


def _status_value(value: Any) -> None:
    try:
        Status.parse(value)
    except ValueError:
        raise ValidationError(f"must be one of {', '.join(_STATES)}, not {value!r}") from None


@dataclass(frozen=True, eq=False, kw_only=True)
class SalesforceSettings(IntegrationSettings):
    """Validated `data_manager.sources.tickets.<name>` of a Salesforce org."""

    instance_url: str | None = None
    api_version: str = DEFAULT_API_VERSION
    access_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    soql_where: str | None = None
    include_private_comments: bool = False
    comment_visibility: str = "public"
    organization_id: str | None = None
    origin: str | None = None
    record_type_id: str | None = None
    status_map: Mapping[str, str] = field(default_factory=dict)
    page_size: int = 2000
    api_limit_threshold: float = 0.9
    api_limit_max_delay_seconds: float = 5.0
    request_limit_backoff_seconds: float = 900.0


class SalesforceConfigSchema(IntegrationConfigSchema):
    """Auth is one of: `access_token`; `client_id` + `client_secret`; `client_id` + `client_secret` + `refresh_token`."""

    settings_class = SalesforceSettings

    instance_url = fields.Url(require_tld=False, schemes={"http", "https"}, load_default=None, allow_none=True)
    api_version = fields.String(load_default=DEFAULT_API_VERSION, validate=validate.Regexp(r"^\d{2,3}\.0$"))
    access_token = fields.String(load_default=None, allow_none=True)
    client_id = fields.String(load_default=None, allow_none=True)
    client_secret = fields.String(load_default=None, allow_none=True)
    refresh_token = fields.String(load_default=None, allow_none=True)
    soql_where = fields.String(load_default=None, allow_none=True, validate=_soql_condition)  # e.g. "Origin = 'Web'"
    include_private_comments = fields.Boolean(load_default=False)  # IsPublished = false comments are internal
    comment_visibility = fields.String(load_default="public", validate=validate.OneOf(COMMENT_VISIBILITIES))
    organization_id = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(ID_PATTERN.pattern))
    origin = fields.String(load_default=None, allow_none=True)  # Origin of cases `create` makes
    record_type_id = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(ID_PATTERN.pattern))
    status_map = fields.Dict(keys=fields.String(), values=fields.String(validate=_status_value), load_default=dict)
    page_size = fields.Integer(load_default=2000, validate=validate.Range(min=200, max=2000))
    api_limit_threshold = fields.Float(load_default=0.9, validate=validate.Range(min=0.1, max=1.0))
    api_limit_max_delay_seconds = fields.Float(load_default=5.0, validate=validate.Range(min=0, max=600))
    request_limit_backoff_seconds = fields.Float(load_default=900.0, validate=validate.Range(min=1, max=86400))

    @validates_schema
    def _auth_when_enabled(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if not data.get("enabled"):
            return
        if not data.get("instance_url"):
            raise ValidationError({"instance_url": ["required when salesforce is enabled"]})
        problem = auth_problem(data)
        if problem:
            raise ValidationError({problem[0]: [problem[1]]})


def auth_problem(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """(key, message) when the auth keys are not exactly one of the three supported combinations."""
    token, client_id, secret = data.get("access_token"), data.get("client_id"), data.get("client_secret")
    refresh = data.get("refresh_token")
    if token and (client_id or secret or refresh):
        return "access_token", "set either access_token or client_id/client_secret, not both"
    if token:
        return None
    if not client_id:
        return "client_id", "required (or set access_token): the connected app's consumer key"
    if not secret:
        return "client_secret", "required with client_id: the connected app's consumer secret"
    return None


def split_api_version(value: str) -> str:
    match = re.fullmatch(r"v?(\d{2,3}\.0)", str(value).strip())
    if not match:
        raise ValueError(f"api_version must look like '62.0', not {value!r}")
    return match.group(1)

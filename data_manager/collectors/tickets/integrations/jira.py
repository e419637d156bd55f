"""Jira Cloud (REST v3) and Jira Data Center / Server (REST v2).

Reading: `fetch` gets one issue and *all* its comments (paged through the comment endpoint, never the
truncated embedded list); `iter_changed` lists issues by `updated` with JQL; `fetch_many` searches
`key in (...)` and fetches only what the search cannot bring complete (not for webhook jobs: the search lags writes).
Writing (`TicketBackend`): create, update (fields, then status through a workflow transition) and
comment. Webhooks: Jira's admin webhooks signed with `X-Hub-Signature: sha256=...`.

Differences between the deployments, all decided here and nowhere else:

* auth: Cloud uses Basic `email:api_token`; Data Center a personal access token as `Bearer`.
* text: v3 sends and expects Atlassian Document Format (see `_jira_adf`); v2 wiki-markup strings.
* listing: Cloud `POST /rest/api/3/search/jql` with `nextPageToken`; DC `/rest/api/2/search` with startAt/total.
* users in writes: Cloud by `accountId`, DC by user `name`. Reads show `displayName`.

Status mapping (Jira status category → model `Status`): `new` → OPEN, `indeterminate` → IN_PROGRESS,
`done` → RESOLVED when the status name says "resolved" (e.g. "Resolved"), else CLOSED. A status
without a known category counts as CLOSED when a resolution is set, else OPEN. The upstream name is
kept in `TicketSnapshot.status_name`.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from data_manager.collectors.tickets.errors import (
    ConfigError,
    CredentialsRefused,
    PermanentError,
    TicketGone,
    TransientError,
    UnknownFieldError,
    WebhookPayloadError,
)
from data_manager.collectors.tickets.http import ApiClient, NotFoundError
from data_manager.collectors.tickets.integration import (
    EventAction,
    IntegrationConfigSchema,
    IntegrationSettings,
    SharedResources,
    TicketEvent,
    TicketIntegration,
    TicketRef,
    TicketSnapshot,
    WebhookRequest,
    json_object,
    verify_hmac_signature,
)
from data_manager.collectors.tickets.integrations._jira_adf import adf_to_text, text_to_adf
from data_manager.collectors.tickets.model import Comment, Status, TicketData, parse_datetime

log = logging.getLogger(__name__)

DEPLOYMENTS = ("cloud", "datacenter")
_DEPLOYMENT_ALIASES = {
    "server": "datacenter",
    "data_center": "datacenter",
    "data-center": "datacenter",
    "dc": "datacenter",
}
SIGNATURE_HEADER = "X-Hub-Signature"
DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"
COMMENT_PAGE_SIZE = 100
ISSUE_FIELDS = (
    "summary", "status", "description", "created", "updated", "issuetype", "priority", "reporter",
    "assignee", "labels", "components", "project", "resolution", "resolutiondate",
)  # fmt: skip
JQL_TIME_FORMAT = "%Y-%m-%d %H:%M"  # JQL has minute precision
# `fetch_many` asks for at most this many keys per search, in a JQL of at most this many characters: the
# search embeds 20 comments per issue, and DC's GET carries the JQL in the URL (proxies refuse long ones).
KEYS_PER_SEARCH = 50
KEYS_JQL_CHARS = 2000
# The keys Jira names in its 400 to a `key in (...)` it cannot resolve: "An issue with key 'X' does not exist
# for field 'key'." (deleted, never existed, or invisible to the user) and "The issue key 'X' for field 'key'
# is invalid." A search whose refusal names none of ours is given up for one fetch per issue.
_REFUSED_KEY = re.compile(
    r"An issue with key '([^']+)' does not exist for field|The issue key '([^']+)' for field '[^']*' is invalid"
)
_ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]{1,254}-[0-9]{1,18}")


def _refused_keys(exc: PermanentError) -> set[str]:
    """The issue keys a 400 to a search names as ones Jira cannot resolve (none for any other error)."""
    if exc.status != 400:
        return set()
    return {key for match in _REFUSED_KEY.finditer(str(exc)) for key in match.groups() if key}


_ISSUE_EVENTS = {
    "jira:issue_created": EventAction.UPSERT,
    "jira:issue_updated": EventAction.UPSERT,
    "jira:issue_deleted": EventAction.DELETE,
}
_COMMENT_EVENTS = frozenset({"comment_created", "comment_updated", "comment_deleted"})
# `.../rest/api/2/issue/<issue id or key>/comment/<comment id>` in a comment's `self`.
_COMMENT_SELF = re.compile(r"/rest/api/(?:\d+|latest)/issue/([A-Za-z0-9_-]+)/comment/[^/]+/?$")


def _issue_id_from_comment(comment: Any) -> str | None:
    """The issue a comment belongs to, read from its `self` URL; None when it cannot be told."""
    link = comment.get("self") if isinstance(comment, Mapping) else None
    match = _COMMENT_SELF.search(link) if isinstance(link, str) else None
    return match.group(1).upper() if match else None


_ORDER_BY = re.compile(r"order\s+by\b", re.IGNORECASE)
_WRITABLE = frozenset({"title", "description", "assignee", "requester", "status", "custom_fields"})
_JIRA_PROJECT_ONLY = re.compile(r'^\s*project\s*=\s*"?([A-Za-z][A-Za-z0-9_]*)"?\s*$', re.IGNORECASE)


# -- pure helpers (tested directly) -------------------------------------------------------------------
def strip_order_by(jql: str) -> str:
    """`jql` without its ORDER BY clause (ours decides the order); quoted text is left alone."""
    quote_char: str | None = None
    index = 0
    while index < len(jql):
        char = jql[index]
        if quote_char:
            if char == "\\":
                index += 2
                continue
            if char == quote_char:
                quote_char = None
        elif char in "\"'":
            quote_char = char
        elif _ORDER_BY.match(jql, index) and (index == 0 or not (jql[index - 1].isalnum() or jql[index - 1] == "_")):
            return jql[:index].strip()
        index += 1
    return jql.strip()


def jql_minute(moment: datetime, zone: ZoneInfo) -> datetime:
    """`moment` in the JQL time zone, floored to the minute (JQL cannot say seconds)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).replace(second=0, microsecond=0)


def changed_jql(base_jql: str, since: datetime | None) -> str:
    """`(<base>) AND updated >= "yyyy-MM-dd HH:mm" ORDER BY updated ASC, key ASC` (`since` already floored)."""
    clauses = []
    base = strip_order_by(base_jql or "")
    if base:
        clauses.append(f"({base})")
    if since is not None:
        clauses.append(f'updated >= "{since.strftime(JQL_TIME_FORMAT)}"')
    return (" AND ".join(clauses) + " ORDER BY updated ASC, key ASC").strip()


def jql_string(value: str) -> str:
    """`value` as a quoted JQL string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def map_status(status: Any, resolution: Any = None) -> Status:
    """Jira status (with its category) → the model's four states; see the module docstring."""
    status = status if isinstance(status, Mapping) else {}
    category = _json_object(status.get("statusCategory"))
    key = str(category.get("key") or "").lower()
    name = str(status.get("name") or "")
    if key == "new":
        return Status.OPEN
    if key == "indeterminate":
        return Status.IN_PROGRESS
    if key == "done":
        return Status.RESOLVED if "resolv" in name.lower() else Status.CLOSED
    return Status.CLOSED if resolution else Status.OPEN


def _json_object(value: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else an empty one (payloads are never trusted to have a shape)."""
    return value if isinstance(value, Mapping) else {}


def _json_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) else default


def display_name(user: Any) -> str | None:
    """How a person is shown: displayName, else the DC name, the accountId or the email."""
    if not isinstance(user, Mapping):
        return None
    for key in ("displayName", "name", "accountId", "emailAddress"):
        name = user.get(key)
        if isinstance(name, str) and name.strip():
            return name
    return None


def comment_is_restricted(comment: Mapping[str, Any]) -> bool:
    """Restricted to a role/group (`visibility`) or internal to the service desk (JSM `jsdPublic: false`)."""
    if comment.get("visibility"):
        return True
    if comment.get("jsdPublic") is False:
        return True
    for prop in comment.get("properties") or []:
        if isinstance(prop, Mapping) and prop.get("key") == "sd.public.comment":
            value = prop.get("value")
            if isinstance(value, Mapping) and value.get("internal") in (True, "true"):
                return True
    return False


def _named(value: Any) -> str:
    """A Jira option/object value as text (`name`, `value`, `displayName`, ...)."""
    if isinstance(value, Mapping):
        if value.get("type") == "doc":
            return adf_to_text(value)
        for key in ("name", "value", "displayName", "key"):
            text = value.get(key)
            if isinstance(text, str):
                return text
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return "" if value is None else str(value)


def _custom_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [_custom_value(item) for item in value]
    return _named(value)


def _valid_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"unknown time zone {name!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None


# -- configuration ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, kw_only=True)
class JiraSettings(IntegrationSettings):
    """Validated `data_manager.sources.tickets.<name>` of a Jira instance."""

    base_url: str | None = None
    deployment: str = "cloud"
    username: str | None = None
    api_token: str | None = None
    jql_query: str | None = None
    project_key: str | None = None
    issue_type: str = "Task"
    include_restricted_comments: bool = False
    jql_timezone: str = "UTC"
    page_size: int = 100
    custom_fields: tuple[str, ...] | list[str] = ()


class JiraConfigSchema(IntegrationConfigSchema):
    """`data_manager.sources.tickets.jira`."""

    settings_class = JiraSettings

    base_url = fields.Url(load_default=None, allow_none=True, require_tld=False, schemes={"http", "https"})
    deployment = fields.String(load_default="cloud", validate=validate.OneOf(DEPLOYMENTS))
    username = fields.String(load_default=None, allow_none=True)  # Cloud: the account's email; unused on DC (PAT)
    api_token = fields.String(load_default=None, allow_none=True)  # Cloud: API token; DC: personal access token
    jql_query = fields.String(load_default=None, allow_none=True)  # bounds every search, e.g. "project = PROJ"
    project_key = fields.String(load_default=None, allow_none=True)  # where `create` puts new issues
    issue_type = fields.String(load_default="Task")
    # Also keep comments limited to a role/group (`visibility`) and JSM internal notes (`jsdPublic: false`).
    include_restricted_comments = fields.Boolean(load_default=False)
    jql_timezone = fields.String(load_default="UTC", validate=_valid_timezone)  # the API user's profile time zone
    page_size = fields.Integer(load_default=100, validate=validate.Range(min=1, max=5000))
    custom_fields = fields.List(fields.String(), load_default=list)  # field ids copied into custom_fields

    @pre_load
    def _normalise_deployment(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("deployment"), str):
            value = data["deployment"].strip().lower()
            data = {**data, "deployment": _DEPLOYMENT_ALIASES.get(value, value)}
        return data

    @validates_schema
    def _required_when_enabled(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if not data.get("enabled"):
            return
        required = ["base_url", "api_token", "jql_query"] + (
            ["username"] if data.get("deployment", "cloud") == "cloud" else []
        )
        missing = {
            name: [f"required when jira is enabled ({data.get('deployment', 'cloud')})"]
            for name in required
            if not data.get(name)
        }
        if missing:
            raise ValidationError(missing)


# -- the integration -------------------------------------------------------------------------------------
class JiraTickets(TicketIntegration, system="jira"):
    """Jira as a ticket source (fetch, list, webhooks) and as a `TicketBackend` (create, read, update, comment).

    `assignee` / `requester` in writes are an accountId on Cloud and a user name on Data Center
    (reads return display names). The author of a comment written through `add_comment` is the API
    user; `Comment.author` and `Comment.at` are not sent (Jira sets both).
    """

    # An issue key (PROJ-7) or an issue's numeric id.
    ticket_id_pattern: ClassVar[re.Pattern[str]] = re.compile(f"{_ISSUE_KEY.pattern}|[0-9]{{1,18}}")
    # The search behind `fetch_many` is eventually consistent: "subsequent search operations ... may return stale
    # or outdated data ... from a few seconds to minutes" (Atlassian, "Search After Write with Search And
    # Reconcile"; `reconcileIssues` needs numeric issue ids, which a job does not carry), and a Data Center
    # cluster replicates its index between nodes. So webhook jobs fetch issue by issue (a GET reads the database).
    fetch_many_sees_latest: ClassVar[bool] = False
    config_schema = JiraConfigSchema
    secret_keys: ClassVar[frozenset[str]] = frozenset({"api_token", "webhook_secret"})

    def __init__(
        self,
        base_url: str,
        username: str | None,
        api_token: str,
        jql_query: str,
        *,
        deployment: str = "cloud",
        project_key: str | None = None,
        issue_type: str = "Task",
        include_restricted_comments: bool = False,
        jql_timezone: str = "UTC",
        page_size: int = 100,
        custom_fields: Iterable[str] = (),
        webhook_secret: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        deployment = _DEPLOYMENT_ALIASES.get(str(deployment).strip().lower(), str(deployment).strip().lower())
        if deployment not in DEPLOYMENTS:
            raise ConfigError(
                f"must be one of {', '.join(DEPLOYMENTS)}, not {deployment!r}", self.config_key("deployment")
            )
        if not base_url or not str(base_url).startswith(("http://", "https://")):
            raise ConfigError("must be an http(s) URL", self.config_key("base_url"))
        if not api_token:
            raise ConfigError("is required", self.config_key("api_token"))
        if deployment == "cloud" and not username:
            raise ConfigError("is required for Jira Cloud (the account's email address)", self.config_key("username"))
        if not strip_order_by(jql_query or ""):
            raise ConfigError(
                "is required: a JQL restriction such as 'project = PROJ' (Cloud refuses unbounded searches)",
                self.config_key("jql_query"),
            )
        try:
            self.zone = ZoneInfo(jql_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {jql_timezone!r}", self.config_key("jql_timezone")) from None
        self.deployment = deployment
        self.base_url = str(base_url).rstrip("/")
        self.username = username
        self.api_token = api_token  # the seed's attribute; never in repr, logs or errors
        self.jql_query = jql_query
        self.project_key = project_key
        self.issue_type = issue_type
        self.include_restricted_comments = include_restricted_comments
        self.page_size = page_size
        self.custom_fields = tuple(custom_fields)
        self.webhook_secret = webhook_secret
        self._api = "rest/api/3" if deployment == "cloud" else "rest/api/2"
        if deployment == "cloud":
            credential = base64.b64encode(f"{username}:{api_token}".encode()).decode()
            authorization = f"Basic {credential}"
        else:
            credential = api_token
            authorization = f"Bearer {api_token}"
        self.client = ApiClient(
            self.base_url,
            headers={"Authorization": authorization},
            timeout=timeout,
            max_retries=max_retries,
            secrets=(api_token, credential),
            **dict(client_options or {}),
        )

    @classmethod
    def from_settings(cls, settings: JiraSettings, *, name: str, shared: SharedResources | None = None) -> JiraTickets:
        integration = cls(
            settings.base_url or "",
            settings.username,
            settings.api_token or "",
            settings.jql_query or "",
            deployment=settings.deployment,
            project_key=settings.project_key,
            issue_type=settings.issue_type or "Task",
            include_restricted_comments=settings.include_restricted_comments,
            jql_timezone=settings.jql_timezone or "UTC",
            page_size=settings.page_size,
            custom_fields=settings.custom_fields or (),
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
        )
        integration.apply_settings(settings, name=name)
        return integration

    # -- HTTP plumbing ------------------------------------------------------------------------------------
    @property
    def is_cloud(self) -> bool:
        return self.deployment == "cloud"

    @property
    def request_count(self) -> int:
        return self.client.request_count

    def _path(self, *parts: str) -> str:
        return "/".join([self._api, *(quote(str(part), safe="") for part in parts)])

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request_json(method, path, **kwargs)

    def _object(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise TransientError(f"Jira answered {what} with {type(value).__name__}, not a JSON object")
        return value

    def _write_text(self, text: str) -> Any:
        """The body of a text field as the API version wants it: ADF on v3, a string on v2."""
        return text_to_adf(text) if self.is_cloud else text

    def _user_ref(self, who: str | None) -> dict[str, str] | None:
        if who is None or who == "":
            return None
        return {"accountId": who} if self.is_cloud else {"name": who}

    # -- reading --------------------------------------------------------------------------------------------
    def fetch(self, ticket_id: str) -> TicketSnapshot:
        key = str(ticket_id).strip()
        params = {"fields": ",".join(ISSUE_FIELDS + self.custom_fields)}
        try:
            issue = self._object(self._call("GET", self._path("issue", key), params=params), f"issue {key}")
            canonical = str(issue.get("key") or key)
            # A numeric id (from a comment webhook's comment.self) names the issue whatever its key is now.
            if canonical.upper() != key.upper() and not key.isdigit():
                # Jira resolves a moved issue's old key to the issue under its new key: the old ticket is gone.
                raise TicketGone(key, f"Jira (moved to {canonical})")
            comments = self._fetch_comments(canonical)
        except NotFoundError:
            raise TicketGone(key, "Jira") from None
        return self._snapshot(issue, comments)

    def verify_credentials(self) -> None:
        """`GET /myself`: Jira serves a refused token as the anonymous user; only this call answers 401."""
        try:
            me = self._call("GET", self._path("myself"))
        except PermanentError as exc:
            if exc.status in (401, 403):
                raise CredentialsRefused(
                    f"Jira at {self.base_url} refused the credentials ({exc.status} from /myself): check "
                    f"{'username and api_token (API tokens expire)' if self.is_cloud else 'the personal access token'}",
                    status=401,
                ) from None
            raise
        if not isinstance(me, Mapping) or not (me.get("accountId") or me.get("name") or me.get("key")):
            raise CredentialsRefused(f"Jira at {self.base_url} answered /myself without a user: credentials refused")

    def _fetch_comments(self, key: str) -> list[dict[str, Any]]:
        """Every comment, oldest first, paging until `startAt + len(comments) >= total`."""
        comments: list[dict[str, Any]] = []
        seen: set[str] = set()
        start = 0
        while True:
            page = self._object(
                self._call(
                    "GET",
                    self._path("issue", key, "comment"),
                    params={"startAt": start, "maxResults": COMMENT_PAGE_SIZE, "orderBy": "created"},
                ),
                f"the comments of {key}",
            )
            items = [c for c in page.get("comments") or [] if isinstance(c, dict)]
            total = page.get("total")
            for item in items:
                comment_id = str(item.get("id", ""))
                if comment_id and comment_id in seen:
                    continue
                seen.add(comment_id)
                comments.append(item)
            if not items:
                if isinstance(total, int) and start < total:
                    log.warning(
                        "Jira returned no comments for %s at startAt=%d although total=%d; stopping there",
                        key,
                        start,
                        total,
                    )
                return comments
            page_start = _json_int(page.get("startAt"), start)
            start = page_start + len(items)
            if not isinstance(total, int) or start >= total:
                return comments

    def _snapshot(self, issue: Mapping[str, Any], raw_comments: list[dict[str, Any]]) -> TicketSnapshot:
        fields_ = _json_object(issue.get("fields"))
        key = str(issue.get("key"))
        created_at = self._time(fields_.get("created"))
        comments = [
            Comment(
                author=display_name(raw.get("author")) or "",
                text=adf_to_text(raw.get("body")),
                at=self._time(raw.get("created"))
                or self._time(raw.get("updated"))
                or created_at
                or datetime.fromtimestamp(0, UTC),
            )
            for raw in raw_comments
            if self.include_restricted_comments or not comment_is_restricted(raw)
        ]
        status = _json_object(fields_.get("status"))
        resolution = fields_.get("resolution")
        project = _json_object(fields_.get("project"))
        labels = [str(label) for label in fields_.get("labels") or [] if label]
        components = [_named(c) for c in fields_.get("components") or [] if c]
        resolved_at = self._time(fields_.get("resolutiondate"))
        extra = {
            "issue_type": _named(fields_.get("issuetype")),
            "priority": _named(fields_.get("priority")),
            "reporter": display_name(fields_.get("reporter")) or "",
            "labels": ", ".join(labels),
            "components": ", ".join(components),
            "resolution": _named(resolution),
            "resolved": resolved_at.astimezone(UTC).isoformat() if resolved_at else "",
            "jira_id": str(issue.get("id") or ""),
        }
        data = TicketData(
            title=str(fields_.get("summary") or ""),
            description=adf_to_text(fields_.get("description")),
            assignee=display_name(fields_.get("assignee")),
            requester=display_name(fields_.get("reporter")),
            status=map_status(status, resolution),
            custom_fields={
                name: _custom_value(fields_.get(name)) for name in self.custom_fields if fields_.get(name) is not None
            },
        )
        return TicketSnapshot(
            ticket_id=key,
            data=data,
            comments=tuple(comments),
            url=f"{self.base_url}/browse/{key}",
            created_at=created_at,
            updated_at=self._time(fields_.get("updated")),
            project=str(project.get("key") or "") or None,
            status_name=str(status.get("name") or "") or None,
            extra={name: value for name, value in extra.items() if value},
        )

    @staticmethod
    def _time(value: Any) -> datetime | None:
        if not isinstance(value, str) or not value.strip():
            return None
        try:
            return parse_datetime(value)
        except ValueError:
            log.warning("unparseable Jira timestamp %r", value)
            return None

    def changed_jql(self, since: datetime | None) -> str:
        """The search `iter_changed` runs: the configured `jql_query` bounded by `updated >= since` (floored)."""
        return changed_jql(self.jql_query, jql_minute(since, self.zone) if since is not None else None)

    def iter_changed(self, since: datetime | None) -> Iterator[TicketRef]:
        """Every issue matching `jql_query` updated at or after `since` (floored to the minute), oldest change first.

        Paging by position alone can skip an issue when an already-listed one is updated meanwhile (it
        jumps to the end and everything shifts left). So after each page the search restarts from the
        minute of the last issue seen (`updated >= that minute`), skipping keys already yielded; only a
        single minute holding more than a page of issues is paged by position.
        """
        anchor = jql_minute(since, self.zone) if since is not None else None
        yielded: set[str] = set()
        while True:
            restarted = False
            for page in self._search_pages(changed_jql(self.jql_query, anchor), self._listing_fields):
                last_updated: datetime | None = None
                for raw in page:
                    key = raw.get("key")
                    if not isinstance(key, str) or not key:
                        continue
                    fields_ = _json_object(raw.get("fields"))
                    updated = self._time(fields_.get("updated"))
                    last_updated = updated or last_updated
                    if key not in yielded:
                        yielded.add(key)
                        yield TicketRef(key, updated, self._listed_snapshot(raw))
                if last_updated is not None:
                    minute = jql_minute(last_updated, self.zone)
                    if anchor is None or minute > anchor:
                        anchor = minute
                        restarted = True
                        break
            if not restarted:
                return

    @property
    def _listing_fields(self) -> tuple[str, ...]:
        """`updated` first (what the listing itself reads), then what a complete snapshot needs."""
        return tuple(dict.fromkeys(("updated", *ISSUE_FIELDS, *self.custom_fields, "comment")))

    def fetch_many(self, ticket_ids: Sequence[str]) -> dict[str, TicketSnapshot | TicketGone]:
        """One search per chunk of issue keys; `fetch` for every id the search did not bring complete.

        An issue comes from the search only when it is returned under the very key asked for with all its
        comments. Everything else (not returned: deleted, out of scope, invisible, moved to another key;
        comments cut off at 20; an id that is not a key) goes through `fetch`, which decides gone-ness as
        it always has: absence from a search proves nothing. Cloud's search is eventually consistent
        (seconds behind a write, more for bulk changes) where `fetch` reads the issue itself.
        """
        found: dict[str, TicketSnapshot | TicketGone] = {}
        keys = [ticket_id for ticket_id in dict.fromkeys(ticket_ids) if _ISSUE_KEY.fullmatch(ticket_id)]
        for chunk in self._key_chunks(keys):
            found.update(self._search_keys(chunk))
        for ticket_id in ticket_ids:
            if ticket_id not in found:
                try:
                    found[ticket_id] = self.fetch(ticket_id)
                except TicketGone as gone:
                    found[ticket_id] = gone
        return found

    def _scoped(self, clause: str) -> str:
        """`clause` within the configured `jql_query` (its ORDER BY left out)."""
        base = strip_order_by(self.jql_query or "")
        return f"({base}) AND {clause}" if base else clause

    def _keys_jql(self, keys: Sequence[str]) -> str:
        return self._scoped(f"key in ({', '.join(jql_string(key) for key in keys)})")

    def _key_chunks(self, keys: Sequence[str]) -> Iterator[list[str]]:
        """`keys` in chunks of at most KEYS_PER_SEARCH whose JQL stays within KEYS_JQL_CHARS (one key at least)."""
        chunk: list[str] = []
        length = len(self._keys_jql([]))
        for key in keys:
            cost = len(jql_string(key)) + 2
            if chunk and (len(chunk) >= KEYS_PER_SEARCH or length + cost > KEYS_JQL_CHARS):
                yield chunk
                chunk, length = [], len(self._keys_jql([]))
            chunk.append(key)
            length += cost
        if chunk:
            yield chunk

    def _search_keys(self, keys: list[str]) -> dict[str, TicketSnapshot]:
        """The complete snapshots one search brings for `keys`, by key; the rest are left to `fetch`.

        Jira refuses (400) a whole `key in (...)` naming a key it cannot resolve, saying which: those keys
        are dropped and the search asked again (three tries at most); a refusal naming none of ours leaves
        the chunk to `fetch`. Every other error (401, 403, 5xx after retries) fails the batch.
        """
        for _ in range(3):
            try:
                hits = [hit for page in self._search_pages(self._keys_jql(keys), self._listing_fields) for hit in page]
            except PermanentError as exc:
                if exc.status != 400:
                    raise
                refused = _refused_keys(exc)
                if not refused & set(keys):
                    log.warning(
                        "Jira refused a search for %d issue keys (%s); fetching them one by one", len(keys), exc
                    )
                    return {}
                keys = [key for key in keys if key not in refused]
                if not keys:
                    return {}
                continue
            wanted = set(keys)
            complete = {}
            for hit in hits:
                snapshot = self._listed_snapshot(hit) if hit.get("key") in wanted else None
                if snapshot is not None:
                    complete[snapshot.ticket_id] = snapshot
            return complete
        return {}

    def _listed_snapshot(self, issue: Mapping[str, Any]) -> TicketSnapshot | None:
        """The complete ticket from a search hit, or None when its embedded comments were cut off.

        The search embeds at most 20 comments per issue as a page (`comments`, `startAt`, `total`);
        only an issue whose page holds every comment is complete, the others are fetched one by one.
        """
        page = _json_object(_json_object(issue.get("fields")).get("comment"))
        comments = [c for c in page.get("comments") or [] if isinstance(c, dict)]
        total = page.get("total")
        if not isinstance(total, int) or _json_int(page.get("startAt"), 0) != 0 or len(comments) < total:
            return None
        return self._snapshot(issue, comments)

    def in_scope(self, ticket_id: str) -> bool | None:
        """Whether `jql_query` matches the (existing) issue: one search for `(<jql>) AND key = "<key>"`.

        None (unknown) when Jira refuses the search because the key no longer resolves (deleted since it was
        fetched): the copy stays, and the next resync's fetch finds the issue gone.
        """
        jql = self._scoped(f"key = {jql_string(ticket_id)}")
        try:
            return any(page for page in itertools.islice(self._search_pages(jql), 1))
        except PermanentError as exc:
            if ticket_id in _refused_keys(exc):
                return None
            raise

    def _search_pages(self, jql: str, fields: Sequence[str] = ("updated",)) -> Iterator[list[dict[str, Any]]]:
        if self.is_cloud:
            yield from self._search_pages_cloud(jql, fields)
        else:
            yield from self._search_pages_datacenter(jql, fields)

    def _search_pages_cloud(self, jql: str, fields: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
        """`POST /rest/api/3/search/jql`; the end is `isLast` or a missing `nextPageToken` (JRACLOUD-92184)."""
        token: str | None = None
        while True:
            body: dict[str, Any] = {"jql": jql, "fields": list(fields), "maxResults": self.page_size}
            if token:
                body["nextPageToken"] = token
            page = self._object(self._call("POST", self._path("search", "jql"), json=body), "a search")
            yield [issue for issue in page.get("issues") or [] if isinstance(issue, dict)]
            next_token = page.get("nextPageToken")
            if page.get("isLast") is True or not next_token:
                return
            if next_token == token:
                raise TransientError(
                    "Jira returned the same nextPageToken twice; stopping the search rather than looping"
                )
            token = str(next_token)

    def _search_pages_datacenter(self, jql: str, fields: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
        """`GET /rest/api/2/search` with startAt/maxResults until `startAt + len(issues) >= total`."""
        start = 0
        while True:
            params = {"jql": jql, "fields": ",".join(fields), "startAt": start, "maxResults": self.page_size}
            page = self._object(self._call("GET", self._path("search"), params=params), "a search")
            issues = [issue for issue in page.get("issues") or [] if isinstance(issue, dict)]
            total = page.get("total")
            if not issues:
                if isinstance(total, int) and start < total:
                    log.warning(
                        "Jira search returned no issues at startAt=%d although total=%d; stopping there", start, total
                    )
                return
            yield issues
            start = _json_int(page.get("startAt"), start) + len(issues)
            if not isinstance(total, int) or start >= total:
                return

    # -- webhooks -------------------------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        verify_hmac_signature(request.headers.get(SIGNATURE_HEADER), request.body, secret, header_name=SIGNATURE_HEADER)

    def parse_webhook(self, request: WebhookRequest) -> list[TicketEvent]:
        """Issue and comment events → the issue to re-fetch (or delete); other kinds are acknowledged as []."""
        payload = json_object(request.body)
        event = payload.get("webhookEvent")
        if not isinstance(event, str) or not event.strip():
            raise WebhookPayloadError("missing 'webhookEvent'")
        if event not in _ISSUE_EVENTS and event not in _COMMENT_EVENTS:
            return []
        delivery = request.headers.get(DELIVERY_HEADER) or None
        if "issue" not in payload and event in _COMMENT_EVENTS:
            # Jira Server / Data Center often send comment events without the issue: its id is in comment.self.
            issue_id = _issue_id_from_comment(payload.get("comment"))
            if issue_id is None:
                log.info("Jira %s webhook names no issue (no 'issue', no comment.self); acknowledged, ignored", event)
                return []
            return [TicketEvent(issue_id, EventAction.UPSERT, delivery)]
        issue = payload.get("issue")
        if not isinstance(issue, dict):
            raise WebhookPayloadError(f"{event} payload has no 'issue' object")
        key = issue.get("key")
        if not isinstance(key, str) or not key.strip():
            raise WebhookPayloadError(f"{event} payload has no 'issue.key'")
        key = key.strip()
        events = [TicketEvent(key, _ISSUE_EVENTS.get(event, EventAction.UPSERT), delivery)]
        old_key = self._moved_from(payload, key)
        if old_key:  # a move renames the issue: the copy under the old key is gone
            events.insert(0, TicketEvent(old_key, EventAction.DELETE, f"{delivery}:moved-from" if delivery else None))
        return events

    @staticmethod
    def _moved_from(payload: Mapping[str, Any], key: str) -> str | None:
        changelog = payload.get("changelog")
        items = changelog.get("items") if isinstance(changelog, Mapping) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, Mapping) and str(item.get("field", "")).lower() == "key":
                old = item.get("fromString")
                if isinstance(old, str) and old.strip() and old.strip().upper() != key.upper():
                    return old.strip()
        return None

    # -- TicketBackend ----------------------------------------------------------------------------------------
    def create(self, data: TicketData) -> str:
        """A new issue in `project_key` of type `issue_type`; a status other than OPEN is reached by a transition."""
        if data.communication:
            raise UnknownFieldError("Jira has no field for 'communication'; leave it unset for Jira tickets")
        fields_: dict[str, Any] = {
            "project": {"key": self._create_project()},
            "issuetype": {"name": self.issue_type},
            "summary": data.title,
        }
        if data.description:
            fields_["description"] = self._write_text(data.description)
        if data.assignee:
            fields_["assignee"] = self._user_ref(data.assignee)
        if data.requester:
            fields_["reporter"] = self._user_ref(data.requester)
        fields_.update(data.custom_fields)
        created = self._object(self._call("POST", self._path("issue"), json={"fields": fields_}), "issue creation")
        key = str(created.get("key") or "")
        if not key:
            raise TransientError("Jira created an issue but did not say its key")
        if data.status is not Status.OPEN:
            try:
                self._move_to(key, data.status)
            except PermanentError as exc:
                raise PermanentError(f"created {key}, but could not set its status: {exc}", status=exc.status) from None
        return key

    def _create_project(self) -> str:
        if self.project_key:
            return self.project_key
        match = _JIRA_PROJECT_ONLY.match(strip_order_by(self.jql_query))
        if match:
            return match.group(1).upper()
        raise ConfigError(
            "is required to create issues (jql_query does not name a single project)", self.config_key("project_key")
        )

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        snapshot = self.fetch(ticket_id)
        return snapshot.data, list(snapshot.comments)

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        """Edit summary/description/assignee/reporter/custom fields, then move the status by a transition.

        The transition is chosen before anything is written, so "no transition leads there" changes nothing.
        """
        unknown = set(fields) - _WRITABLE
        if unknown:
            raise UnknownFieldError(
                f"Jira cannot update {', '.join(sorted(unknown))} (supported: {', '.join(sorted(_WRITABLE))})"
            )
        key = str(ticket_id).strip()
        try:
            transition = self._choose_transition(key, Status.parse(fields["status"])) if "status" in fields else None
            edit: dict[str, Any] = {}
            if "title" in fields:
                edit["summary"] = fields["title"]
            if "description" in fields:
                edit["description"] = self._write_text(fields["description"] or "") if fields["description"] else None
            if "assignee" in fields:
                edit["assignee"] = self._user_ref(fields["assignee"])
            if "requester" in fields:
                edit["reporter"] = self._user_ref(fields["requester"])
            edit.update(dict(fields.get("custom_fields") or {}))
            if edit:
                self._call("PUT", self._path("issue", key), json={"fields": edit})
            if transition is not None:
                self._call("POST", self._path("issue", key, "transitions"), json=transition)
        except NotFoundError:
            raise TicketGone(key, "Jira") from None

    def add_comment(self, ticket_id: str, comment: Comment) -> None:
        key = str(ticket_id).strip()
        try:
            self._call("POST", self._path("issue", key, "comment"), json={"body": self._write_text(comment.text)})
        except NotFoundError:
            raise TicketGone(key, "Jira") from None

    def _move_to(self, key: str, target: Status) -> None:
        transition = self._choose_transition(key, target)
        if transition is not None:
            self._call("POST", self._path("issue", key, "transitions"), json=transition)

    def _choose_transition(self, key: str, target: Status) -> dict[str, Any] | None:
        """The transition payload that takes `key` to a status mapping to `target`; None if it is there already.

        Prefers a transition whose target maps exactly (e.g. "Resolved" for RESOLVED); for RESOLVED and
        CLOSED any transition into the done category is accepted when no exact one exists. A required
        resolution is filled with "Fixed"/"Done" when offered, else the first allowed value.
        """
        current = self._object(
            self._call("GET", self._path("issue", key), params={"fields": "status,resolution"}), f"issue {key}"
        )
        current_fields = _json_object(current.get("fields"))
        current_status = _json_object(current_fields.get("status"))
        if map_status(current_status, current_fields.get("resolution")) is target:
            return None
        answer = self._object(
            self._call("GET", self._path("issue", key, "transitions"), params={"expand": "transitions.fields"}),
            f"the transitions of {key}",
        )
        transitions = [t for t in answer.get("transitions") or [] if isinstance(t, Mapping)]
        exact = [t for t in transitions if map_status(t.get("to"), None) is target]
        done = [
            t
            for t in transitions
            if str(((t.get("to") or {}).get("statusCategory") or {}).get("key", "")).lower() == "done"
        ]
        candidates = exact or (done if target in (Status.RESOLVED, Status.CLOSED) else [])
        if not candidates:
            available = (
                ", ".join(f"'{t.get('name')}' → {(t.get('to') or {}).get('name')}" for t in transitions) or "none"
            )
            raise PermanentError(
                f"Jira issue {key}: no transition from status '{current_status.get('name', '?')}' leads to a "
                f"status that maps to {target.value} (available: {available})"
            )
        chosen = candidates[0]
        payload: dict[str, Any] = {"transition": {"id": str(chosen.get("id"))}}
        resolution = (
            ((chosen.get("fields") or {}).get("resolution")) if isinstance(chosen.get("fields"), Mapping) else None
        )
        if isinstance(resolution, Mapping) and resolution.get("required"):
            allowed = [v for v in resolution.get("allowedValues") or [] if isinstance(v, Mapping)]
            preferred = ("Fixed", "Done") if target is Status.RESOLVED else ("Done", "Fixed")
            pick = next(
                (v for name in preferred for v in allowed if v.get("name") == name), allowed[0] if allowed else None
            )
            if pick is not None:
                payload["fields"] = {
                    "resolution": {"id": str(pick["id"])} if pick.get("id") else {"name": pick.get("name")}
                }
        return payload

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return (
            f"<JiraTickets system='jira' name={self.name!r} deployment={self.deployment!r} base_url={self.base_url!r}>"
        )


__all__ = ["JiraConfigSchema", "JiraSettings", "JiraTickets", "changed_jql", "map_status", "strip_order_by"]

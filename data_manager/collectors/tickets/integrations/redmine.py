"""Redmine (5.x and later): fetch issues with their journals, list changed issues, write, and take webhooks.

Reading
- `fetch` is one request (`/issues/<id>.json?include=journals`). Journals with non-empty notes are the
  comments, in journal-id order (Redmine reverses the array for users who prefer "comments in reverse
  order"). Private notes are left out unless `include_private_notes` is set, even for an admin key.
- 404 and 403 both mean the ticket is gone *from our view*: 404 is deleted, 403 is an issue the API user
  may no longer see (private, membership removed, project archived). A full resync would drop it too, as
  the listing no longer shows it, so the two paths agree. An issue outside the configured project (moved,
  or announced by a global webhook) is gone in the same sense.
- A wrong or revoked API key is *not* an error to Redmine: it silently answers as the anonymous user, who
  sees only public projects. A listing made that way would make a full resync delete every private
  ticket, so `iter_changed` first checks the key (`/users/current.json`, 401 for anonymous) and fails
  loudly instead.
- `iter_changed` pages by issue id (`issue_id=>=N&sort=id`), not by offset over `sort=updated_on`: offset
  paging skips an issue whenever one listed before it changes or is deleted mid-listing (everything after
  it shifts left by one), and the skipped issue is old, so no overlap window brings it back. With an id
  keyset nothing shifts: ids never change, and an issue that changes stays in the result set because
  `updated_on` only grows.

Writing (`TicketBackend`)
- Every write carries `X-Skip-Webhooks`, so the redmine_webhook plugin does not echo our own writes back.
- Every write is read back (one GET): Redmine answers 204 even when it silently drops a change the API user
  may not make (e.g. a status change without edit_issues, though `allowed_statuses` offered it), so a dropped
  change is a `PermanentError` naming the fields, never a silent success.
- Custom fields are set by name; fields not named are left as they are. Text comes back with LF line ends
  (Redmine stores CRLF).
- Status: the wanted `Status` is matched against the statuses the workflow allows for that issue now
  (`include=allowed_statuses`), preferring the canonical name (New, In Progress, Resolved, Closed); Redmine
  would otherwise silently ignore a disallowed status. If the issue is already in that category, nothing
  is sent (closing a "Rejected" issue keeps it "Rejected").
- Assignee: a numeric user/group id, else a project member's display name, else (admin keys) a login or
  full name from `/users.json`; ambiguous or unknown names are errors. None or "" unassigns.
- Requester and comment author: Redmine records the API user. With `impersonate_authors` (admin key) the
  requester of a created ticket and the author of a comment are sent as `X-Redmine-Switch-User` (a login,
  or a full name that matches exactly one user). Comment times are always the server's "now".

Webhooks
- redmine_webhook plugin (`{"payload": {"action", "issue", "journal", "url"}}`): it cannot sign, so the
  shared secret travels as the `X-Webhook-Token` header or the `token` query parameter.
- Redmine 7 native (`{"type": "issue.updated", "timestamp", "data": {"issue", "journal"}}`): HMAC-SHA256 of
  the raw body in `X-Redmine-Signature-256`. When that header is present it must verify; no token fallback.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar, cast
from urllib.parse import quote, urlsplit

import requests
from marshmallow import ValidationError, fields, validate

from data_manager.collectors.tickets.errors import (
    ConfigError,
    CredentialsRefused,
    PermanentError,
    TicketGone,
    UnknownFieldError,
    WebhookAuthError,
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
    constant_time_equal,
    json_object,
    verify_hmac_signature,
)
from data_manager.collectors.tickets.model import Comment, Status, TicketData, parse_datetime

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-Redmine-API-Key"
SKIP_WEBHOOKS_HEADER = "X-Skip-Webhooks"  # honoured by the redmine_webhook plugin: no hook for this request
SWITCH_USER_HEADER = "X-Redmine-Switch-User"
SIGNATURE_HEADER = "X-Redmine-Signature-256"  # Redmine 7 native webhooks
TOKEN_HEADER = "X-Webhook-Token"  # plugin webhooks: shared secret in a header ...
TOKEN_QUERY_PARAM = "token"  # ... or in the endpoint URL, which is all the plugin can configure
MAX_PAGE_SIZE = 100  # Redmine caps `limit` at 100
CACHE_SECONDS = 300.0  # statuses, trackers, members, identity: re-read after this long

# Status names every Redmine installs by default, and the model state each stands for.
_STATUS_BY_NAME: dict[str, Status] = {
    "new": Status.OPEN,
    "open": Status.OPEN,
    "feedback": Status.OPEN,
    "reopened": Status.OPEN,
    "in progress": Status.IN_PROGRESS,
    "assigned": Status.IN_PROGRESS,
    "resolved": Status.RESOLVED,
    "closed": Status.CLOSED,
    "rejected": Status.CLOSED,
}
# The name preferred when writing a state and several allowed statuses map onto it.
_CANONICAL_STATUS = {
    Status.OPEN: "new",
    Status.IN_PROGRESS: "in progress",
    Status.RESOLVED: "resolved",
    Status.CLOSED: "closed",
}
_PROJECT_IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class InvalidTicketId(PermanentError, ValueError):
    """A ticket id that cannot be a Redmine issue id; refused before any URL is built."""


def parse_issue_id(ticket_id: Any, what: str = "Redmine ticket id") -> int:
    """Redmine issue ids are positive integers; accept them as int or as a string of digits."""
    if isinstance(ticket_id, bool):
        raise InvalidTicketId(f"{what} must be a positive integer, not {ticket_id!r}")
    if isinstance(ticket_id, int):
        number = ticket_id
    elif (
        isinstance(ticket_id, str)
        and ticket_id.strip().isascii()
        and ticket_id.strip().isdigit()
        and len(ticket_id.strip()) <= 18  # int() refuses huge digit strings with a ValueError
    ):
        number = int(ticket_id.strip())
    else:
        raise InvalidTicketId(f"{what} must be a positive integer, not {ticket_id!r}")
    if number <= 0:
        raise InvalidTicketId(f"{what} must be a positive integer, not {ticket_id!r}")
    return number


def status_category(name: str, is_closed: bool | None, overrides: Mapping[str, Status] | None = None) -> Status:
    """The model state for a Redmine status: configured name → default name → is_closed → OPEN.

    A closed status is CLOSED unless its name says Resolved (some instances mark Resolved as closed).
    """
    key = (name or "").strip().casefold()
    if overrides and key in overrides:
        return overrides[key]
    named = _STATUS_BY_NAME.get(key)
    if is_closed:
        return Status.RESOLVED if named is Status.RESOLVED else Status.CLOSED
    if is_closed is False and named is Status.CLOSED:  # e.g. "Rejected" configured as open: trust the flag
        return Status.OPEN
    return named or Status.OPEN


def choose_status(
    wanted: Status, candidates: Sequence[Mapping[str, Any]], overrides: Mapping[str, Status] | None = None
) -> Mapping[str, Any] | None:
    """The candidate status to write for `wanted`: its canonical name if offered, else the first that maps to it."""
    matching = [
        s for s in candidates if status_category(str(s.get("name", "")), s.get("is_closed"), overrides) is wanted
    ]
    for status in matching:
        if str(status.get("name", "")).strip().casefold() == _CANONICAL_STATUS[wanted]:
            return status
    return matching[0] if matching else None


def _utc_seconds(value: datetime) -> str:
    """`YYYY-MM-DDThh:mm:ssZ`, floored to the second: the only precise form Redmine's filters accept."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    """Redmine stores text with CRLF line ends (as browsers send it); keep the copy in plain LF."""
    return str(value or "").replace("\r\n", "\n")


def _name_of(value: Any) -> str | None:
    """The display name in Redmine's `{"id": 3, "name": "Jane Doe"}` references."""
    if isinstance(value, Mapping) and value.get("name") not in (None, ""):
        return str(value["name"])
    return None


# -- configuration ---------------------------------------------------------------------------------
class _ProjectIdField(fields.Field[Any]):
    """A project identifier ("my-project") or numeric id; YAML may give the latter as an int."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("must be a project identifier or numeric id")
        text = str(value).strip()
        if not _PROJECT_IDENTIFIER.match(text):
            raise ValidationError(f"{text!r} is not a Redmine project identifier (letters, digits, '-', '_') or id")
        return text


class _TrackerField(fields.Field[Any]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("must be a tracker name or numeric id")
        return str(value).strip()


class _StatusField(fields.Field[Any]):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Status:
        try:
            return Status.parse(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


@dataclass(frozen=True, eq=False, kw_only=True)
class RedmineSettings(IntegrationSettings):
    """Validated `data_manager.sources.tickets.<name>` of a Redmine instance."""

    base_url: str
    api_key: str
    project_id: str | None = None
    include_subprojects: bool = True
    include_private_notes: bool = False
    tracker: str | None = None
    status_map: Mapping[str, Status] = field(default_factory=dict)
    impersonate_authors: bool = False
    communication_field: str | None = None


class RedmineConfigSchema(IntegrationConfigSchema):
    """`data_manager.sources.tickets.redmine`."""

    settings_class = RedmineSettings

    base_url = fields.Url(required=True, require_tld=False, schemes={"http", "https"})
    api_key = fields.String(required=True, validate=validate.Length(min=1))
    project_id = _ProjectIdField(load_default=None, allow_none=True)
    include_subprojects = fields.Boolean(load_default=True)
    include_private_notes = fields.Boolean(load_default=False)
    tracker = _TrackerField(load_default=None, allow_none=True)  # for created tickets; else the project's first
    # Instance-specific status names → model state, e.g. {"Waiting for customer": "open"}.
    status_map = fields.Dict(keys=fields.String(), values=_StatusField(), load_default=dict)
    impersonate_authors = fields.Boolean(load_default=False)
    # A custom field that holds `TicketData.communication` (Redmine has no such field of its own).
    communication_field = fields.String(load_default=None, allow_none=True)


_T = TypeVar("_T")


class _Cached:
    """Values re-read after `CACHE_SECONDS`; concurrent misses on one key load it once (resyncs fetch in parallel)."""

    def __init__(self) -> None:
        self._values: dict[Any, tuple[float, Any]] = {}
        self._loading: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], _T]) -> _T:
        with self._lock:
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            hit = self._values.get(key)
            if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
                return cast(_T, hit[1])
            value = load()
            self._values[key] = (time.monotonic(), value)
            return value

    def forget(self, key: Any) -> None:
        with self._lock:
            self._values.pop(key, None)


class RedmineTickets(TicketIntegration, system="redmine"):
    """Redmine through its REST API, as a `TicketIntegration` and as a `TicketBackend`."""

    ticket_id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[1-9][0-9]{0,17}")
    config_schema = RedmineConfigSchema
    secret_keys: ClassVar[frozenset[str]] = frozenset({"api_key", "webhook_secret"})

    def __init__(
        self,
        base_url: str,
        api_key: str,
        project_id: str | int | None = None,
        *,
        include_subprojects: bool = True,
        include_private_notes: bool = False,
        timeout: float = 30.0,
        max_retries: int = 4,
        tracker: str | int | None = None,
        status_map: Mapping[str, Status | str] | None = None,
        impersonate_authors: bool = False,
        communication_field: str | None = None,
        webhook_secret: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        session: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(str(base_url or ""))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"base_url must be an http(s) URL, not {base_url!r}", self.config_key("base_url"))
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError("base_url must not carry credentials, a query or a fragment", self.config_key("base_url"))
        if not api_key or not str(api_key).strip():
            raise ConfigError("api_key is required", self.config_key("api_key"))
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}", self.config_key("page_size"))
        self.base_url = str(base_url).rstrip("/")
        self.api_key = str(api_key).strip()  # the seed's attribute; never in repr, logs or errors
        self.project_id = str(project_id).strip() if project_id not in (None, "") else None
        if self.project_id is not None and not _PROJECT_IDENTIFIER.match(self.project_id):
            raise ConfigError(
                f"{self.project_id!r} is not a Redmine project identifier or id", self.config_key("project_id")
            )
        self.include_subprojects = include_subprojects
        self.include_private_notes = include_private_notes
        self.tracker = str(tracker).strip() if tracker not in (None, "") else None
        self.status_map = {
            str(name).strip().casefold(): Status.parse(state) for name, state in (status_map or {}).items()
        }
        self.impersonate_authors = impersonate_authors
        self.communication_field = communication_field or None
        self.webhook_secret = webhook_secret or None
        self.page_size = page_size
        self.client = ApiClient(
            self.base_url,
            headers={API_KEY_HEADER: str(api_key).strip()},
            timeout=timeout,
            max_retries=max_retries,
            secrets=[str(api_key).strip()],
            session=session,
        )
        self._cache = _Cached()

    @classmethod
    def from_settings(
        cls, settings: RedmineSettings, *, name: str, shared: SharedResources | None = None
    ) -> RedmineTickets:
        integration = cls(
            settings.base_url,
            settings.api_key,
            settings.project_id,
            include_subprojects=settings.include_subprojects,
            include_private_notes=settings.include_private_notes,
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
            tracker=settings.tracker,
            status_map=settings.status_map,
            impersonate_authors=settings.impersonate_authors,
            communication_field=settings.communication_field,
        )
        integration.apply_settings(settings, name=name)
        return integration

    def __repr__(self) -> str:  # never the API key
        return f"<RedmineTickets {self.base_url} project={self.project_id or '*'}>"

    def close(self) -> None:
        self.client.close()

    # -- reading -------------------------------------------------------------------------------
    def issue_url(self, issue_id: int | str) -> str:
        return f"{self.base_url}/issues/{issue_id}"

    def fetch(self, ticket_id: str) -> TicketSnapshot:
        number = parse_issue_id(ticket_id)
        issue = self._get_issue(number, "journals")
        if not self._in_scope(issue):
            raise TicketGone(
                str(number),
                f"Redmine project {self.project_id!r} (it is in project {_name_of(issue.get('project'))!r})",
            )
        return self._snapshot(issue)

    def _get_issue(self, number: int, include: str) -> dict[str, Any]:
        try:
            body = self.client.get_json(f"issues/{number}.json", params={"include": include})
        except NotFoundError:
            raise TicketGone(str(number), f"Redmine at {self.base_url} (deleted)") from None
        except PermanentError as exc:
            if exc.status == 403:  # exists, but the API user may not see it: gone from our view
                raise TicketGone(str(number), f"Redmine at {self.base_url} (not visible to the API user)") from None
            raise
        issue = body.get("issue") if isinstance(body, dict) else None
        if not isinstance(issue, dict) or "id" not in issue:
            raise PermanentError(f"GET {self.issue_url(number)}.json answered without an 'issue' object")
        return issue

    def _snapshot(self, issue: Mapping[str, Any]) -> TicketSnapshot:
        number = issue["id"]
        status = issue.get("status") or {}
        status_name = str(status.get("name") or "")
        custom_fields = {
            str(cf["name"]): cf.get("value")
            for cf in issue.get("custom_fields") or []
            if isinstance(cf, Mapping) and cf.get("name")
        }
        communication = custom_fields.pop(self.communication_field, None) if self.communication_field else None
        data = TicketData(
            title=str(issue.get("subject") or ""),
            description=_text(issue.get("description")),
            assignee=_name_of(issue.get("assigned_to")),
            requester=_name_of(issue.get("author")),
            status=status_category(status_name, self._is_closed(status), self.status_map),
            custom_fields=custom_fields,
            communication=str(communication) if communication not in (None, "") else None,
        )
        parent = issue.get("parent") or {}
        extra: dict[str, Any] = {
            "tracker": _name_of(issue.get("tracker")),
            "priority": _name_of(issue.get("priority")),
            "author": _name_of(issue.get("author")),
            "category": _name_of(issue.get("category")),
            "target_version": _name_of(issue.get("fixed_version")),
            "parent": f"#{parent['id']}" if parent.get("id") else None,
            "start_date": issue.get("start_date"),
            "due_date": issue.get("due_date"),
            "closed_on": issue.get("closed_on"),
            "private": "yes" if issue.get("is_private") else None,
        }
        return TicketSnapshot(
            ticket_id=str(number),
            data=data,
            comments=tuple(self._comments(issue.get("journals") or [])),
            url=self.issue_url(number),
            created_at=parse_datetime(issue.get("created_on")),
            updated_at=parse_datetime(issue.get("updated_on")),
            project=_name_of(issue.get("project")),
            status_name=status_name or None,
            extra=extra,
        )

    def _comments(self, journals: list[Mapping[str, Any]]) -> list[Comment]:
        """Journals with notes, by id: the API user's "reverse order" preference flips Redmine's array."""
        comments = []
        for journal in sorted((j for j in journals if isinstance(j, Mapping)), key=lambda j: int(j.get("id") or 0)):
            notes = journal.get("notes") or ""
            if not notes.strip():
                continue  # a field change (status, assignee, ...) without words
            if journal.get("private_notes") and not self.include_private_notes:
                continue
            if not journal.get("created_on"):
                raise PermanentError(f"Redmine journal {journal.get('id')} has no created_on")
            comments.append(
                Comment(author=_name_of(journal.get("user")) or "", text=_text(notes), at=journal["created_on"])
            )
        return comments

    def _is_closed(self, status: Mapping[str, Any]) -> bool | None:
        """From the issue if it says (Redmine ≥ 5.0), else from the instance's status list."""
        if "is_closed" in status:
            return bool(status["is_closed"])
        for known in self.statuses():
            if known.get("id") == status.get("id"):
                return bool(known.get("is_closed"))
        return None

    def statuses(self) -> list[dict[str, Any]]:
        """The instance's issue statuses (`/issue_statuses.json`), cached."""

        def load() -> list[dict[str, Any]]:
            return list((self.client.get_json("issue_statuses.json") or {}).get("issue_statuses") or [])

        return self._cache.get("statuses", load)

    def whoami(self, *, fresh: bool = False) -> dict[str, Any]:
        """The API user; fails clearly when Redmine would otherwise answer as the anonymous user."""

        def load() -> dict[str, Any]:
            try:
                return dict((self.client.get_json("users/current.json") or {}).get("user") or {})
            except PermanentError as exc:
                if exc.status in (401, 403):
                    raise CredentialsRefused(
                        f"Redmine at {self.base_url} refused the credentials: it did not accept the API key "
                        f"({exc.status}); check api_key, that the user is active, and that the REST API is "
                        f"enabled (Administration > Settings > API)",
                        status=exc.status,
                    ) from None
                raise

        if fresh:
            self._cache.forget("whoami")
        return self._cache.get("whoami", load)

    def verify_credentials(self) -> None:
        """`/users/current.json`: Redmine serves a refused key as the anonymous user, and only this says 401."""
        self.whoami(fresh=True)

    # -- scope -----------------------------------------------------------------------------------
    def _in_scope(self, issue: Mapping[str, Any]) -> bool:
        """Whether the issue belongs to the configured project (and, if included, its subprojects)."""
        if self.project_id is None:
            return True
        project_id = (issue.get("project") or {}).get("id")
        root = self._project(self.project_id).get("id")
        seen: set[int] = set()
        while project_id is not None and project_id not in seen:
            if project_id == root:
                return True
            if not self.include_subprojects:
                return False
            seen.add(project_id)
            project_id = (self._project(str(project_id)).get("parent") or {}).get("id")
        return False

    def _project(self, project: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            try:
                return dict(
                    (self.client.get_json(f"projects/{quote(project, safe='')}.json") or {}).get("project") or {}
                )
            except NotFoundError:
                raise PermanentError(
                    f"Redmine project {project!r} does not exist or is not visible to the API user"
                ) from None

        return self._cache.get(("project", project), load)

    # -- listing ---------------------------------------------------------------------------------
    def iter_changed(self, since: datetime | None) -> Iterator[TicketRef]:
        """Every visible issue (closed ones too) updated at or after `since`, by ascending id.

        Redmine's `>=` on a time is `> since - 1s` in the database, so a little more comes back, never less.
        """
        self.whoami(fresh=True)  # an unaccepted key would list as anonymous: public issues only
        params: dict[str, Any] = {"status_id": "*", "sort": "id", "limit": self.page_size, "offset": 0}
        if since is not None:
            params["updated_on"] = ">=" + _utc_seconds(since)
        if self.project_id is not None:
            params["project_id"] = self.project_id
            params["subproject_id"] = "*" if self.include_subprojects else "!*"
        next_id = 1
        while True:
            params["issue_id"] = f">={next_id}"
            try:
                body = self.client.get_json("issues.json", params=params)
            except NotFoundError:
                raise PermanentError(
                    f"Redmine project {self.project_id!r} does not exist or is not visible to the API user"
                ) from None
            issues = [
                i for i in (body or {}).get("issues") or [] if isinstance(i, Mapping) and isinstance(i.get("id"), int)
            ]
            fresh = [i for i in issues if i["id"] >= next_id]
            log.debug(
                "Redmine listing from issue #%d: %d issues of %s", next_id, len(fresh), (body or {}).get("total_count")
            )
            for issue in sorted(fresh, key=lambda i: i["id"]):
                yield TicketRef(str(issue["id"]), parse_datetime(issue.get("updated_on")))
            total = int((body or {}).get("total_count") or 0)
            if total <= len(issues) or not issues:
                return
            if not fresh:  # the server ignored issue_id (Redmine < 3.3?): paging on would never end
                raise PermanentError(
                    f"Redmine at {self.base_url} ignored the issue_id filter; listing cannot page safely"
                )
            next_id = max(i["id"] for i in fresh) + 1

    # -- writing (TicketBackend) -----------------------------------------------------------------
    def create(self, data: TicketData) -> str:
        if self.project_id is None:
            raise ConfigError("creating a Redmine ticket needs project_id in its config", self.config_key("project_id"))
        issue: dict[str, Any] = {"project_id": self.project_id, "subject": data.title, "description": data.description}
        if self.tracker is not None:
            issue["tracker_id"] = self._tracker_id(self.tracker)
        if data.assignee not in (None, ""):
            issue["assigned_to_id"] = self._principal_id(data.assignee, self.project_id)
        if data.status is not Status.OPEN:
            status = choose_status(data.status, self.statuses(), self.status_map)
            if status is None:
                raise PermanentError(f"Redmine at {self.base_url} has no status that maps to {data.status.name}")
            issue["status_id"] = status["id"]
        custom_fields = self._custom_field_values(
            data.custom_fields, data.communication, self._creatable_custom_fields()
        )
        if custom_fields:
            issue["custom_fields"] = custom_fields
        headers = self._write_headers(data.requester)
        response = self.client.request("POST", "issues.json", json={"issue": issue}, headers=headers)
        try:
            created = (response.json() or {}).get("issue") or {}
        except ValueError:
            created = {}
        number = created.get("id")
        if not isinstance(number, int):
            raise PermanentError("POST /issues.json answered without the new issue's id")
        self._check_applied(
            created,
            {k: v for k, v in issue.items() if k in ("subject", "description", "assigned_to_id", "custom_fields")},
        )
        state = created.get("status") or {}
        if status_category(str(state.get("name", "")), self._is_closed(state), self.status_map) is not data.status:
            # Redmine drops an initial status the workflow does not allow; move it there in a second step.
            self.update(str(number), {"status": data.status})
        return str(number)

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        snapshot = self.fetch(ticket_id)
        return snapshot.data, list(snapshot.comments)

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        number = parse_issue_id(ticket_id)
        unknown = set(fields) - TicketData.field_names()
        if unknown:
            raise UnknownFieldError(f"unknown ticket field(s): {', '.join(sorted(unknown))}")
        if "requester" in fields:
            raise PermanentError("Redmine does not let an issue's author (requester) be changed")
        changes: dict[str, Any] = {}
        if "title" in fields:
            changes["subject"] = fields["title"] or ""
        if "description" in fields:
            changes["description"] = fields["description"] or ""
        if {"status", "assignee", "custom_fields", "communication"} & set(fields):
            issue = self._get_issue(number, "allowed_statuses")
            if "status" in fields:
                status_id = self._status_change(issue, Status.parse(fields["status"]))
                if status_id is not None:
                    changes["status_id"] = status_id
            if "assignee" in fields:
                assignee = fields["assignee"]
                project = str((issue.get("project") or {}).get("id"))
                changes["assigned_to_id"] = "" if assignee in (None, "") else self._principal_id(assignee, project)
            if "custom_fields" in fields or "communication" in fields:
                available = [cf for cf in issue.get("custom_fields") or [] if isinstance(cf, Mapping)]
                values = self._custom_field_values(
                    fields.get("custom_fields") or {},
                    fields.get("communication"),
                    available,
                    communication_given="communication" in fields,
                )
                if values:
                    changes["custom_fields"] = values
        if changes:
            self._put(number, changes)

    def add_comment(self, ticket_id: str, comment: Comment) -> None:
        number = parse_issue_id(ticket_id)
        if not comment.text or not comment.text.strip():
            raise ValueError("a Redmine comment needs text")
        self._put(number, {"notes": comment.text}, author=comment.author)

    def _put(self, number: int, changes: Mapping[str, Any], author: str | None = None) -> None:
        """Send the changes, then read the issue back: Redmine answers 204 even when it drops a change."""
        try:
            self.client.request(
                "PUT", f"issues/{number}.json", json={"issue": dict(changes)}, headers=self._write_headers(author)
            )
        except NotFoundError:
            raise TicketGone(str(number), f"Redmine at {self.base_url}") from None
        self._check_applied(self._get_issue(number, "journals"), changes)

    def _check_applied(self, issue: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        """Raise if Redmine silently ignored part of a write (no permission, workflow, read-only field)."""
        ignored = [_MODEL_NAMES.get(name, name) for name, value in changes.items() if not _applied(issue, name, value)]
        if ignored:
            raise PermanentError(
                f"Redmine accepted the change to issue #{issue.get('id')} but did not apply {', '.join(ignored)}: "
                f"the API user may lack the permission (e.g. edit_issues), or the workflow or field permissions forbid it"
            )

    def _write_headers(self, author: str | None) -> dict[str, str]:
        headers = {SKIP_WEBHOOKS_HEADER: "true"}
        if self.impersonate_authors and author:
            headers[SWITCH_USER_HEADER] = self._login_for(author)
        return headers

    def _status_change(self, issue: Mapping[str, Any], wanted: Status) -> int | None:
        """The status id to send for `wanted`, or None when the issue is already in that state."""
        current = issue.get("status") or {}
        if status_category(str(current.get("name", "")), self._is_closed(current), self.status_map) is wanted:
            return None
        allowed = [s for s in issue.get("allowed_statuses") or [] if isinstance(s, Mapping)]
        chosen = choose_status(wanted, allowed, self.status_map)
        if chosen is None:
            names = ", ".join(str(s.get("name")) for s in allowed) or "none"
            raise PermanentError(
                f"Redmine's workflow does not let the API user move issue #{issue.get('id')} from "
                f"{current.get('name')!r} to any status meaning {wanted.name} (allowed: {names})"
            )
        return int(chosen["id"])

    # -- look-ups for writes -----------------------------------------------------------------
    def _tracker_id(self, tracker: str) -> int:
        if tracker.isdigit():
            return int(tracker)
        trackers = self._cache.get(
            "trackers", lambda: list((self.client.get_json("trackers.json") or {}).get("trackers") or [])
        )
        for item in trackers:
            if str(item.get("name", "")).casefold() == tracker.casefold():
                return int(item["id"])
        names = ", ".join(str(t.get("name")) for t in trackers)
        raise ConfigError(f"Redmine has no tracker named {tracker!r} (trackers: {names})", self.config_key("tracker"))

    def _principal_id(self, who: Any, project: str) -> int:
        """A user or group id from an id, a project member's name, or (admin keys) a login / full name."""
        if isinstance(who, int) and not isinstance(who, bool):
            return who
        text = str(who).strip()
        if text.isdigit():
            return int(text)
        key = text.casefold()
        members = self._cache.get(("members", project), lambda: self._members(project))
        if not any(name.casefold() == key for _, name in members):  # perhaps a member added since: look again
            self._cache.forget(("members", project))
            members = self._cache.get(("members", project), lambda: self._members(project))
        matches = {pid for pid, name in members if name.casefold() == key}
        if not matches:
            matches = {
                int(u["id"])
                for u in self._users_named(text)
                if key in (str(u.get("login", "")).casefold(), _full_name(u).casefold())
            }
        if len(matches) == 1:
            return matches.pop()
        if matches:
            raise PermanentError(f"{text!r} matches several Redmine users; give the user id instead")
        names = ", ".join(sorted({name for _, name in members})) or "none"
        raise PermanentError(
            f"no Redmine user or group {text!r} can be assigned in project {project} (members: {names})"
        )

    def _members(self, project: str) -> list[tuple[int, str]]:
        members: list[tuple[int, str]] = []
        offset = 0
        while True:
            body = (
                self.client.get_json(
                    f"projects/{quote(project, safe='')}/memberships.json",
                    params={"limit": MAX_PAGE_SIZE, "offset": offset},
                )
                or {}
            )
            page = body.get("memberships") or []
            for membership in page:
                principal = membership.get("user") or membership.get("group") or {}
                if principal.get("id") is not None and principal.get("name"):
                    members.append((int(principal["id"]), str(principal["name"])))
            offset += len(page)
            if not page or offset >= int(body.get("total_count") or 0):
                return members

    def _users_named(self, text: str) -> list[dict[str, Any]]:
        """`/users.json?name=` (admin only); [] when the key may not search users."""
        try:
            return list(
                (self.client.get_json("users.json", params={"name": text, "limit": MAX_PAGE_SIZE}) or {}).get("users")
                or []
            )
        except PermanentError as exc:
            if exc.status in (401, 403):
                return []
            raise

    def _login_for(self, author: str) -> str:
        """The login to act as for `author` (a login, or a full name that matches one user)."""

        def load() -> str:
            users = self._users_named(author)
            for user in users:
                if str(user.get("login", "")) == author:
                    return author
            named = [u for u in users if _full_name(u).casefold() == author.strip().casefold()]
            if len(named) == 1:
                return str(named[0]["login"])
            raise PermanentError(
                f"impersonate_authors: no single active Redmine user has the login or name {author!r} "
                f"(impersonation also needs an admin API key)"
            )

        return self._cache.get(("login", author), load)

    def _creatable_custom_fields(self) -> list[Mapping[str, Any]]:
        """Issue custom fields (id, name) for a new issue: every one (admin key) or the project's own."""

        def load() -> list[Mapping[str, Any]]:
            try:
                found = (self.client.get_json("custom_fields.json") or {}).get("custom_fields") or []
                return [cf for cf in found if cf.get("customized_type") == "issue"]
            except PermanentError as exc:
                if exc.status not in (401, 403):
                    raise
            project = (
                self.client.get_json(
                    f"projects/{quote(str(self.project_id), safe='')}.json", params={"include": "issue_custom_fields"}
                )
                or {}
            )
            return list((project.get("project") or {}).get("issue_custom_fields") or [])

        return self._cache.get("custom_fields", load)

    def _custom_field_values(
        self,
        values: Mapping[str, Any],
        communication: str | None,
        available: list[Mapping[str, Any]],
        *,
        communication_given: bool | None = None,
    ) -> list[dict[str, Any]]:
        """`[{"id", "value"}]` for custom fields given by name; unknown names are an error."""
        wanted = dict(values or {})
        if communication_given is None:
            communication_given = communication not in (None, "")
        if communication_given:
            if not self.communication_field:
                raise PermanentError(
                    "Redmine has no 'communication' field: set communication_field to a custom field's name"
                )
            wanted[self.communication_field] = communication or ""
        if not wanted:
            return []
        by_name = {str(cf.get("name", "")).casefold(): cf for cf in available}
        unknown = [name for name in wanted if str(name).casefold() not in by_name]
        if unknown:
            names = ", ".join(sorted(str(cf.get("name")) for cf in available)) or "none"
            raise PermanentError(
                f"unknown Redmine custom field(s) {', '.join(map(repr, unknown))} (available: {names})"
            )
        return [{"id": by_name[str(name).casefold()]["id"], "value": value} for name, value in wanted.items()]

    # -- webhooks ------------------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        """Native: the HMAC signature must match. Plugin: the shared token, constant-time."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if signature is not None:
            verify_hmac_signature(signature, request.body, secret, header_name=SIGNATURE_HEADER)
            return
        token = request.headers.get(TOKEN_HEADER)
        if token is None:
            token = request.query.get(TOKEN_QUERY_PARAM)
        if token is None:
            raise WebhookAuthError(
                f"missing {SIGNATURE_HEADER} signature (Redmine 7 webhooks) or {TOKEN_HEADER} header / "
                f"'{TOKEN_QUERY_PARAM}' query parameter (redmine_webhook plugin)"
            )
        if not constant_time_equal(token, secret):
            raise WebhookAuthError("the Redmine webhook token does not match")

    def parse_webhook(self, request: WebhookRequest) -> list[TicketEvent]:
        return parse_redmine_webhook(request.body)


_MODEL_NAMES = {"subject": "title", "status_id": "status", "assigned_to_id": "assignee", "notes": "comment"}


def _comparable(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(_comparable(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"  # how Redmine stores boolean custom fields
    return _text(value).strip() if value is not None else ""


def _same(sent: Any, stored: Any) -> bool:
    if isinstance(sent, list) or isinstance(stored, list):  # multi-value fields: a scalar is a one-item list
        return bool(_comparable(_as_list(sent)) == _comparable(_as_list(stored)))
    return bool(_comparable(sent) == _comparable(stored))


def _as_list(value: Any) -> list[Any]:
    """Multi-value fields: a scalar is a one-item list, nothing is an empty one."""
    return value if isinstance(value, list) else ([] if value in (None, "") else [value])


def _applied(issue: Mapping[str, Any], name: str, value: Any) -> bool:
    """Whether the issue as read back shows the change `name=value` that was sent."""
    if name == "status_id":
        return bool((issue.get("status") or {}).get("id") == value)
    if name == "assigned_to_id":
        return bool((issue.get("assigned_to") or {}).get("id", "") == value)
    if name in ("subject", "description"):
        return _same(value, issue.get(name))
    if name == "notes":
        return any(_same(value, j.get("notes")) for j in issue.get("journals") or [])
    if name == "custom_fields":
        current = {cf.get("id"): cf.get("value") for cf in issue.get("custom_fields") or []}
        return all(_same(cf["value"], current.get(cf["id"])) for cf in value)
    return True


def _full_name(user: Mapping[str, Any]) -> str:
    return f"{user.get('firstname', '')} {user.get('lastname', '')}".strip()


# -- webhook payloads ----------------------------------------------------------------------------
def parse_redmine_webhook(body: bytes) -> list[TicketEvent]:
    """Events in a plugin or native Redmine webhook body; [] for kinds we do not act on."""
    payload = json_object(body)
    if "payload" in payload:
        return _plugin_events(payload["payload"])
    if "type" in payload:
        return _native_events(payload)
    raise WebhookPayloadError(
        'body is neither a redmine_webhook plugin payload ({"payload": ...}) nor a Redmine webhook ({"type": ...})'
    )


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        raise WebhookPayloadError(f"{path} missing")
    if not isinstance(value, Mapping):
        raise WebhookPayloadError(f"{path} must be an object")
    return value


def _webhook_issue_id(issue: Mapping[str, Any], path: str) -> str:
    if issue.get("id") is None:
        raise WebhookPayloadError(f"{path}.id missing")
    try:
        return str(parse_issue_id(issue["id"], f"{path}.id"))
    except InvalidTicketId as exc:
        raise WebhookPayloadError(str(exc)) from None


def _journal_delivery(journal: Any) -> str | None:
    if isinstance(journal, Mapping) and isinstance(journal.get("id"), int) and not isinstance(journal.get("id"), bool):
        return f"redmine:journal:{journal['id']}"
    return None


def _plugin_events(payload: Any) -> list[TicketEvent]:
    """suer/redmine_webhook: `opened` (no journal) and `updated` (with the journal); it never says deleted."""
    payload = _object(payload, "payload")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise WebhookPayloadError("payload.action missing")
    issue_id = _webhook_issue_id(_object(payload.get("issue"), "payload.issue"), "payload.issue")
    if action == "opened":
        return [TicketEvent(issue_id, EventAction.UPSERT, f"redmine:issue.created:{issue_id}")]
    # "updated", or an action a newer plugin adds: re-fetching is always safe.
    return [TicketEvent(issue_id, EventAction.UPSERT, _journal_delivery(payload.get("journal")))]


def _native_events(payload: Mapping[str, Any]) -> list[TicketEvent]:
    """Redmine 7: `issue.created|updated|deleted`; wiki, time entry, news and version events are ignored."""
    kind = payload.get("type")
    if not isinstance(kind, str) or "." not in kind:
        raise WebhookPayloadError(f"type must look like 'issue.updated', not {kind!r}")
    subject, _, action = kind.partition(".")
    if subject != "issue":
        return []
    data = _object(payload.get("data"), "data")
    issue_id = _webhook_issue_id(_object(data.get("issue"), "data.issue"), "data.issue")
    if action == "deleted":
        return [TicketEvent(issue_id, EventAction.DELETE, f"redmine:issue.deleted:{issue_id}")]
    if action == "created":
        return [TicketEvent(issue_id, EventAction.UPSERT, f"redmine:issue.created:{issue_id}")]
    return [TicketEvent(issue_id, EventAction.UPSERT, _journal_delivery(data.get("journal")))]

"""Bugzilla (upstream 5.0/5.2 and bugzilla.mozilla.org-style) as a ticket source and a `TicketBackend`.

Reading: bugs come in batches (`GET /rest/bug?id=..`) with the comments of the whole batch in one more
request, so listing and fetching cost a few requests per hundred bugs; the listing pages by bug id and
hands each bug over complete. Writing: create, read, update (summary, assignee, status through the
server's workflow with `resolution` when closing, `cf_*` custom fields), add_comment. Push: upstream has
no webhooks (poll with a short `resync.interval_minutes`); bugzilla.mozilla.org's Webhooks extension
posts JSON carrying one admin-configured header, checked against `webhook_secret` in constant time.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validate, validates_schema

from data_manager.collectors.tickets.errors import (
    ConfigError,
    PermanentError,
    TicketGone,
    TicketNotFound,
    UnknownFieldError,
    WebhookAuthError,
    WebhookPayloadError,
)
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
)
from data_manager.collectors.tickets.integrations.bugzilla import mapping
from data_manager.collectors.tickets.integrations.bugzilla.client import (
    API_KEY_PLACES,
    BugzillaClient,
    BugzillaNotFound,
)
from data_manager.collectors.tickets.model import Comment, Status, TicketData, parse_datetime

log = logging.getLogger(__name__)

_WRITABLE = frozenset({"title", "assignee", "status", "custom_fields"})
_NOT_WRITABLE = {
    "description": "Bugzilla cannot change a bug's description (comment 0 is immutable upstream); add a comment",
    "requester": "Bugzilla cannot change a bug's reporter",
    "communication": "Bugzilla has no field for 'communication'",
}


def _status_map(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ValidationError("must map Bugzilla status names to open, in_progress, resolved or closed")
    for name, status in value.items():
        try:
            Status.parse(status)
        except ValueError as exc:
            raise ValidationError(f"{name}: {exc}") from None


@dataclass(frozen=True, eq=False, kw_only=True)
class BugzillaSettings(IntegrationSettings):
    """Validated `data_manager.sources.tickets.<name>` of a Bugzilla instance."""

    base_url: str | None = None
    api_key: str | None = None
    api_key_in: str = "query"
    products: list[str] = field(default_factory=list)
    include_private_comments: bool = False
    product: str | None = None
    component: str | None = None
    version: str = "unspecified"
    op_sys: str = "All"
    rep_platform: str = "All"
    resolution: str = "FIXED"
    status_map: Mapping[str, str] = field(default_factory=dict)
    page_size: int = 500
    webhook_header: str = "Authorization"


class BugzillaConfigSchema(IntegrationConfigSchema):
    """`data_manager.sources.tickets.bugzilla`."""

    settings_class = BugzillaSettings

    base_url = fields.Url(load_default=None, allow_none=True, require_tld=False, schemes={"http", "https"})
    api_key = fields.String(load_default=None, allow_none=True)
    # upstream 5.0/5.2 read the key only from the query string / JSON body; "header" is for bmo-style servers
    api_key_in = fields.String(load_default="query", validate=validate.OneOf(API_KEY_PLACES))
    products = fields.List(fields.String(), load_default=list)  # empty: every product the key can see
    include_private_comments = fields.Boolean(load_default=False)  # the key's user must be an insider
    product = fields.String(load_default=None, allow_none=True)  # where `create` files new bugs
    component = fields.String(load_default=None, allow_none=True)
    version = fields.String(load_default="unspecified")
    op_sys = fields.String(load_default="All")  # upstream refuses a create without op_sys / rep_platform
    rep_platform = fields.String(load_default="All")
    resolution = fields.String(load_default="FIXED")  # set when a bug is resolved or closed
    status_map = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict, validate=_status_map)
    page_size = fields.Integer(load_default=500, validate=validate.Range(min=1, max=10000))
    webhook_header = fields.String(load_default="Authorization")  # the bmo webhook's api_key_header

    @validates_schema
    def _required_when_enabled(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if not data.get("enabled"):
            return
        missing = {
            name: ["required when bugzilla is enabled"] for name in ("base_url", "api_key") if not data.get(name)
        }
        if missing:
            raise ValidationError(missing)


class BugzillaBackend(TicketIntegration, system="bugzilla"):
    """Bugzilla through its REST API; `BugzillaBackend(base_url=..., api_key=...)` needs nothing else to read.

    Ticket id = the bug id as a string. Comments written through `add_comment` are by the key's user at
    the server's time (`Comment.author` / `Comment.at` are not sent); new bugs are reported by that user.
    """

    config_schema = BugzillaConfigSchema
    secret_keys: ClassVar[frozenset[str]] = frozenset({"api_key", "webhook_secret"})
    ticket_id_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[1-9][0-9]{0,17}")  # bug ids are positive integers

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        products: Iterable[str] = (),
        include_private_comments: bool = False,
        product: str | None = None,
        component: str | None = None,
        version: str = "unspecified",
        op_sys: str = "All",
        rep_platform: str = "All",
        resolution: str = "FIXED",
        status_map: Mapping[str, str] | None = None,
        api_key_in: str = "query",
        page_size: int = 500,
        webhook_secret: str | None = None,
        webhook_header: str = "Authorization",
        timeout: float = 30.0,
        max_retries: int = 4,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not base_url or not str(base_url).startswith(("http://", "https://")):
            raise ConfigError("must be an http(s) URL", self.config_key("base_url"))
        if not api_key:
            raise ConfigError("is required", self.config_key("api_key"))
        if api_key_in not in API_KEY_PLACES:
            raise ConfigError(f"must be one of {', '.join(API_KEY_PLACES)}", self.config_key("api_key_in"))
        try:
            self.status_table = mapping.status_table(status_map)
        except ValueError as exc:
            raise ConfigError(str(exc), self.config_key("status_map")) from None
        self.base_url = str(base_url).rstrip("/")
        self.api_key = api_key  # the seed's attribute; never shown by repr
        self.products = tuple(products)
        self.include_private_comments = include_private_comments
        self.product, self.component, self.version = product, component, version
        self.op_sys, self.rep_platform, self.resolution = op_sys, rep_platform, resolution
        self.webhook_secret = webhook_secret
        self.webhook_header = webhook_header
        self.client = BugzillaClient(
            self.base_url,
            api_key,
            api_key_in=api_key_in,
            timeout=timeout,
            max_retries=max_retries,
            page_size=page_size,
            client_options=client_options,
        )
        self.api = self.client.api  # held directly too: the credential proof listens to its 401s
        self._workflow: dict[str | None, tuple[bool, tuple[str, ...]]] | None = None
        self._workflow_lock = threading.Lock()

    @classmethod
    def settings_warnings(cls, settings: Any, key_path: str) -> list[str]:
        if not settings.include_private_comments:
            return []
        return [
            f"{key_path}.include_private_comments: the API key's user must be in Bugzilla's insider group "
            f"(the `insidergroup` parameter); otherwise Bugzilla never shows it private comments and none are stored"
        ]

    @classmethod
    def from_settings(
        cls, settings: BugzillaSettings, *, name: str, shared: SharedResources | None = None
    ) -> BugzillaBackend:
        integration = cls(
            settings.base_url or "",
            settings.api_key or "",
            products=settings.products or (),
            include_private_comments=settings.include_private_comments,
            product=settings.product,
            component=settings.component,
            version=settings.version or "unspecified",
            op_sys=settings.op_sys or "All",
            rep_platform=settings.rep_platform or "All",
            resolution=settings.resolution or "FIXED",
            status_map=settings.status_map or {},
            api_key_in=settings.api_key_in or "query",
            page_size=settings.page_size,
            webhook_header=settings.webhook_header or "Authorization",
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
        )
        integration.apply_settings(settings, name=name)
        return integration

    @property
    def request_count(self) -> int:
        return self.client.request_count

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"<BugzillaBackend {self.base_url} products={list(self.products)}>"

    # -- credentials ----------------------------------------------------------------------------------------
    def verify_credentials(self) -> None:
        """One cheap call that fails (`CredentialsRefused`) for a refused key or one read as anonymous."""
        self.client.verify()

    # -- reading -----------------------------------------------------------------------------------------------
    def fetch(self, ticket_id: str) -> TicketSnapshot:
        result = self.fetch_many([ticket_id])[str(ticket_id).strip()]
        if isinstance(result, TicketGone):
            raise result
        return result

    def fetch_many(self, ticket_ids: Sequence[str]) -> dict[str, TicketSnapshot | TicketGone]:
        """Every requested id → its snapshot, or `TicketGone` (no such bug, invisible to the key, or outside
        `products`); two requests per hundred bugs."""
        wanted = [str(ticket_id).strip() for ticket_id in ticket_ids]
        valid = [ticket_id for ticket_id in wanted if self.ticket_id_pattern.fullmatch(ticket_id)]
        bugs = self.client.bugs(valid) if valid else {}
        in_scope = {bug_id: bug for bug_id, bug in bugs.items() if self._in_products(bug)}
        comments = self.client.comments(list(in_scope)) if in_scope else {}
        result: dict[str, TicketSnapshot | TicketGone] = {}
        for ticket_id in wanted:
            bug = bugs.get(ticket_id)
            if bug is None:
                result[ticket_id] = TicketGone(ticket_id, "Bugzilla (no such bug, or the key cannot see it)")
            elif ticket_id not in in_scope:
                result[ticket_id] = TicketGone(
                    ticket_id, f"Bugzilla (product {bug.get('product')!r} is not in products)"
                )
            elif ticket_id not in comments:
                result[ticket_id] = TicketGone(ticket_id, "Bugzilla (it vanished while being fetched)")
            else:
                result[ticket_id] = self._snapshot(bug, comments[ticket_id])
        return result

    def iter_changed(self, since: datetime | None) -> Iterator[TicketRef]:
        """Bugs changed at or after `since` by ascending id, each complete (bug + comments: two requests per page)."""
        for bug_id, updated_at, snapshot in self.changed_snapshots(since):
            yield self._ref(bug_id, updated_at, snapshot)

    def changed_snapshots(self, since: datetime | None) -> Iterator[tuple[str, datetime | None, TicketSnapshot | None]]:
        """(bug id, last change, snapshot) of every bug changed at or after `since`; the snapshot is None
        when the bug vanished between its page and its comments (the resync then fetches it and finds it gone)."""
        seen: set[str] = set()
        for page in self.client.changed_pages(since, self.products):
            page = [bug for bug in page if str(bug["id"]) not in seen and self._in_products(bug)]
            comments = self.client.comments([str(bug["id"]) for bug in page]) if page else {}
            for bug in page:
                bug_id = str(bug["id"])
                seen.add(bug_id)
                snapshot = self._snapshot(bug, comments[bug_id]) if bug_id in comments else None
                yield bug_id, parse_datetime(bug.get("last_change_time")), snapshot

    @staticmethod
    def _ref(ticket_id: str, updated_at: datetime | None, snapshot: TicketSnapshot | None) -> TicketRef:
        return TicketRef(ticket_id, updated_at, snapshot)

    def in_scope(self, ticket_id: str) -> bool | None:
        if not self.products:
            return None
        bug = self.client.bugs([ticket_id]).get(str(ticket_id))
        return None if bug is None else self._in_products(bug)

    def _in_products(self, bug: Mapping[str, Any]) -> bool:
        return not self.products or bug.get("product") in self.products

    def _snapshot(self, bug: Mapping[str, Any], comments: list[dict[str, Any]]) -> TicketSnapshot:
        return mapping.snapshot(
            bug,
            comments,
            base_url=self.base_url,
            include_private=self.include_private_comments,
            table=self.status_table,
        )

    # -- webhooks (bugzilla.mozilla.org's Webhooks extension) ------------------------------------------------
    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        """bmo sends no signature: only the admin-configured header, compared with the secret in constant time."""
        given = request.headers.get(self.webhook_header)
        if not given:
            raise WebhookAuthError(f"missing {self.webhook_header} header")
        if not constant_time_equal(given.strip(), secret):
            raise WebhookAuthError(f"{self.webhook_header} does not carry the webhook secret")

    def parse_webhook(self, request: WebhookRequest) -> list[TicketEvent]:
        """Any bug/comment/attachment event → the bug to re-fetch; bugs outside `products` are acknowledged as []."""
        payload = json_object(request.body)
        bug = payload.get("bug")
        if not isinstance(bug, dict):
            raise WebhookPayloadError("payload has no 'bug' object (not a Bugzilla Webhooks extension delivery?)")
        bug_id = bug.get("id")
        text = str(bug_id).strip() if isinstance(bug_id, (int, str)) and not isinstance(bug_id, bool) else ""
        if not self.ticket_id_pattern.fullmatch(text):
            raise WebhookPayloadError("payload has no bug id ('bug.id' must be a positive integer)")
        product = bug.get("product")
        if self.products and isinstance(product, str) and product not in self.products:
            return []  # another product's bug: nothing of ours (a private bug has no product: fetch decides)
        return [TicketEvent(text, EventAction.UPSERT)]

    # -- TicketBackend -----------------------------------------------------------------------------------------
    def create(self, data: TicketData) -> str:
        """A new bug in `product`/`component` (with `version`, `op_sys`, `rep_platform` from config)."""
        if data.communication:
            raise UnknownFieldError(f"communication: {_NOT_WRITABLE['communication']}")
        for name in ("product", "component"):
            if not getattr(self, name):
                raise ConfigError("is required to create bugs", self.config_key(name))
        custom = self._custom(data.custom_fields)
        status = self._choose_status(None, data.status)
        body: dict[str, Any] = {
            "product": self.product,
            "component": self.component,
            "version": self.version,
            "op_sys": self.op_sys,
            "rep_platform": self.rep_platform,
            "summary": data.title,
            "description": data.description,
            "status": status,
            **custom,
        }
        if data.assignee:
            body["assigned_to"] = data.assignee
        created = self.client.call("POST", "rest/bug", body=body)
        bug_id = created.get("id") if isinstance(created, Mapping) else None
        if not bug_id:
            raise PermanentError("Bugzilla created a bug but did not say its id")
        return str(bug_id)

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        try:
            snapshot = self.fetch(ticket_id)
        except TicketGone:
            raise TicketNotFound(str(ticket_id), "Bugzilla") from None
        return snapshot.data, list(snapshot.comments)

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        """One PUT with every change, validated first: Bugzilla applies all of it or none."""
        refused = sorted(set(fields) & set(_NOT_WRITABLE))
        if refused:
            raise UnknownFieldError("; ".join(f"{name}: {_NOT_WRITABLE[name]}" for name in refused))
        unknown = sorted(set(fields) - _WRITABLE)
        if unknown:
            raise UnknownFieldError(
                f"unknown ticket field(s): {', '.join(unknown)} (writable: {', '.join(sorted(_WRITABLE))})"
            )
        body: dict[str, Any] = {}
        if "custom_fields" in fields:
            body.update(self._custom(fields["custom_fields"] or {}))
        if "title" in fields:
            if not str(fields["title"] or "").strip():
                raise UnknownFieldError("title: Bugzilla requires a summary")
            body["summary"] = str(fields["title"])
        if "assignee" in fields:
            if not fields["assignee"]:
                raise UnknownFieldError("assignee: Bugzilla bugs always have an assignee; name one")
            body["assigned_to"] = str(fields["assignee"])
        if "status" in fields:
            wanted = Status.parse(fields["status"])
            current = self._current(ticket_id)
            current_status = str(current.get("status") or "")
            already = mapping.map_status(current_status, current.get("is_open"), self.status_table) is wanted
            if not already and current_status not in mapping.write_candidates(wanted, self.status_table):
                target = self._choose_status(current_status, wanted)
                body["status"] = target
                is_open = self._statuses().get(target, (True, ()))[0]
                if not is_open and not current.get("resolution"):
                    body["resolution"] = self.resolution
        if not body:
            return
        try:
            self.client.call("PUT", f"rest/bug/{self._bug_id(ticket_id)}", body=body)
        except BugzillaNotFound:
            raise TicketNotFound(str(ticket_id), "Bugzilla") from None
        except PermanentError as exc:
            changed = ", ".join(sorted(body))
            raise PermanentError(
                f"Bugzilla refused the change of {changed} on bug {ticket_id}: {exc}", status=exc.status
            ) from None

    def add_comment(self, ticket_id: str, comment: Comment) -> None:
        try:
            self.client.call("POST", f"rest/bug/{self._bug_id(ticket_id)}/comment", body={"comment": comment.text})
        except BugzillaNotFound:
            raise TicketNotFound(str(ticket_id), "Bugzilla") from None

    # -- write helpers -------------------------------------------------------------------------------------------
    def _bug_id(self, ticket_id: str) -> str:
        value = str(ticket_id).strip()
        if not self.ticket_id_pattern.fullmatch(value):
            raise TicketNotFound(value, "Bugzilla (a bug id is a number)")
        return value

    def _current(self, ticket_id: str) -> Mapping[str, Any]:
        bug = self.client.bugs([self._bug_id(ticket_id)]).get(str(ticket_id).strip())
        if bug is None:
            raise TicketNotFound(str(ticket_id), "Bugzilla")
        return bug

    def _statuses(self) -> dict[str | None, tuple[bool, tuple[str, ...]]]:
        with self._workflow_lock:
            if self._workflow is None:
                self._workflow = self.client.statuses()
            return self._workflow

    def _choose_status(self, current: str | None, wanted: Status) -> str:
        """The Bugzilla status `wanted` is written as: one the workflow allows from `current` (None: a new bug)."""
        workflow = self._statuses()
        allowed = workflow.get(current, (True, ()))[1]
        candidates = [name for name in mapping.write_candidates(wanted, self.status_table) if name in workflow]
        for name in candidates:
            if name in allowed:
                return name
        where = "a new bug" if current is None else f"a bug in {current}"
        raise UnknownFieldError(
            f"status: Bugzilla's workflow does not let {where} become {wanted.value} "
            f"(tried {', '.join(candidates) or 'no matching status'}; allowed: {', '.join(allowed) or 'none'})"
        )

    @staticmethod
    def _custom(values: Mapping[str, Any]) -> dict[str, Any]:
        wrong = sorted(name for name in values if not str(name).startswith("cf_"))
        if wrong:
            raise UnknownFieldError(f"custom_fields: Bugzilla custom fields are named cf_*, not {', '.join(wrong)}")
        return dict(values)

"""Salesforce Service Cloud: Cases with their CaseComments, read, listed, written, and pushed by Outbound Messages.

Reading is SOQL with a `CaseComments` subquery, so one query page brings cases with their comments
(a resync costs about one request per page of cases); child relationships that are not `done` and the
outer query are both followed by `nextRecordsUrl`, children first (moving the parent cursor on
invalidates the previous page's child cursors). Incremental listing is by `SystemModstamp`; because a
new CaseComment is not documented to touch its Case, the comments changed since are listed too, and
`getDeleted` (the last ~15 days) reports deleted Cases, which the resync then confirms gone by fetching
them (the pipeline proves the session before removing anything). Older deletions are reconciled by a
full resync.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote as url_quote

from data_manager.collectors.tickets.errors import (
    ConfigError,
    CredentialsRefused,
    PermanentError,
    TicketGone,
    TransientError,
    WebhookAuthError,
)
from data_manager.collectors.tickets.http import NotFoundError
from data_manager.collectors.tickets.integration import (
    EventAction,
    SharedResources,
    TicketEvent,
    TicketIntegration,
    TicketRef,
    TicketSnapshot,
    WebhookReply,
    WebhookRequest,
    constant_time_equal,
)
from data_manager.collectors.tickets.integrations.salesforce import _mapping, _soql
from data_manager.collectors.tickets.integrations.salesforce._client import (
    OAuthTokenSource,
    SalesforceClient,
    TokenSource,
)
from data_manager.collectors.tickets.integrations.salesforce._ids import ID_PATTERN, to_18
from data_manager.collectors.tickets.integrations.salesforce._outbound import (
    ACK_CONTENT_TYPE,
    ACK_ENVELOPE,
    parse_outbound_message,
)
from data_manager.collectors.tickets.integrations.salesforce.config import (
    COMMENT_VISIBILITIES,
    DEFAULT_API_VERSION,
    SalesforceConfigSchema,
    SalesforceSettings,
    auth_problem,
    split_api_version,
)
from data_manager.collectors.tickets.model import Comment, Status, TicketData

log = logging.getLogger(__name__)

GET_DELETED_REACH = timedelta(days=15)  # "Results are returned for no more than 15 days previous"
GET_DELETED_MARGIN = timedelta(minutes=30)  # our clock and the org's may differ a little
GET_DELETED_MIN_SPAN = timedelta(minutes=2)  # start must precede end by more than a minute
KEY_PATH = "data_manager.sources.tickets.salesforce"


class CommentTooLong(PermanentError, ValueError):
    """CaseComment.CommentBody holds at most 4,000 bytes; we refuse longer comments rather than split them."""


class SalesforceBackend(TicketIntegration, system="salesforce"):
    """Salesforce Cases as a ticket source and a `TicketBackend`.

    `SalesforceBackend(instance_url=..., access_token=...)` makes no network call; OAuth flows obtain
    their first token on the first request.
    """

    config_schema = SalesforceConfigSchema
    secret_keys: ClassVar[frozenset[str]] = frozenset(
        {"access_token", "client_secret", "refresh_token", "webhook_secret"}
    )
    webhook_content_types: ClassVar[tuple[str, ...]] = ("text/xml", "application/xml")
    ticket_id_pattern: ClassVar[re.Pattern[str]] = ID_PATTERN

    def __init__(
        self,
        instance_url: str,
        access_token: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        soql_where: str | None = None,
        include_private_comments: bool = False,
        comment_visibility: str = "public",
        organization_id: str | None = None,
        origin: str | None = None,
        record_type_id: str | None = None,
        status_map: Mapping[str, Any] | None = None,
        page_size: int = 2000,
        webhook_secret: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        api_limit_threshold: float = 0.9,
        api_limit_max_delay_seconds: float = 5.0,
        request_limit_backoff_seconds: float = 900.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        # No URL check here: the seed constructs `SalesforceBackend(instance_url="...", access_token="...")` with a
        # placeholder. Config is checked by the schema; a constructed backend whose instance_url is no http(s) URL
        # fails its first request permanently, naming the setting, and sends nothing.
        problem = auth_problem(
            {
                "access_token": access_token,
                "client_id": client_id,
                "client_secret": client_secret,
                "refresh_token": refresh_token,
            }
        )
        if problem:
            raise ConfigError(problem[1], f"{KEY_PATH}.{problem[0]}")
        try:
            self.api_version = split_api_version(api_version)
        except ValueError as exc:
            raise ConfigError(str(exc), f"{KEY_PATH}.api_version") from None
        self.instance_url = str(instance_url).rstrip("/")
        self.base_url = self.instance_url
        self.soql_where = _soql.validate_where(soql_where, f"{KEY_PATH}.soql_where")
        self.include_private_comments = bool(include_private_comments)
        if comment_visibility not in COMMENT_VISIBILITIES:
            raise ConfigError(
                f"must be one of {', '.join(COMMENT_VISIBILITIES)}, not {comment_visibility!r}",
                f"{KEY_PATH}.comment_visibility",
            )
        self.comment_visibility = comment_visibility
        self.organization_id = to_18(organization_id) if organization_id else None
        self.origin = origin or None
        self.record_type_id = to_18(record_type_id) if record_type_id else None
        try:
            self.status_map = {str(k): Status.parse(v) for k, v in dict(status_map or {}).items()}
        except ValueError as exc:
            raise ConfigError(str(exc), f"{KEY_PATH}.status_map") from None
        self.page_size = max(200, min(2000, int(page_size)))
        self.webhook_secret = webhook_secret or None
        tokens: TokenSource = (
            TokenSource(access_token)
            if access_token
            else OAuthTokenSource(str(client_id), str(client_secret), refresh_token)
        )
        self.client = SalesforceClient(
            self.instance_url,
            tokens,
            timeout=timeout,
            max_retries=max_retries,
            limit_threshold=api_limit_threshold,
            limit_max_delay=api_limit_max_delay_seconds,
            limit_backoff=request_limit_backoff_seconds,
            secrets=(access_token, client_secret, refresh_token),
            base_url_setting=f"{KEY_PATH}.instance_url",
            **dict(client_options or {}),
        )

    @classmethod
    def settings_warnings(cls, settings: Any, key_path: str) -> list[str]:
        if settings.comment_visibility == "internal" and not settings.include_private_comments:
            return [
                f"{key_path}.comment_visibility is internal but include_private_comments is false: comments "
                f"written through Ticket.comment are not read back (Ticket.read) nor stored"
            ]
        return []

    @classmethod
    def from_settings(
        cls, settings: SalesforceSettings, *, name: str, shared: SharedResources | None = None
    ) -> SalesforceBackend:
        integration = cls(
            settings.instance_url or "",
            settings.access_token,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            refresh_token=settings.refresh_token,
            api_version=settings.api_version or DEFAULT_API_VERSION,
            soql_where=settings.soql_where,
            include_private_comments=settings.include_private_comments,
            comment_visibility=settings.comment_visibility,
            organization_id=settings.organization_id,
            origin=settings.origin,
            record_type_id=settings.record_type_id,
            status_map=settings.status_map or {},
            page_size=settings.page_size,
            webhook_secret=settings.webhook_secret,
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
            api_limit_threshold=settings.api_limit_threshold,
            api_limit_max_delay_seconds=settings.api_limit_max_delay_seconds,
            request_limit_backoff_seconds=settings.request_limit_backoff_seconds,
        )
        integration.apply_settings(settings, name=name)
        return integration

    # -- plumbing --------------------------------------------------------------------------------------
    @property
    def request_count(self) -> int:
        return self.client.request_count

    def _path(self, *parts: str) -> str:
        return "/".join([f"services/data/v{self.api_version}", *(url_quote(str(p), safe="") for p in parts)])

    def _get(self, path: str, **kwargs: Any) -> Any:
        return self.client.request_json("GET", path, **kwargs)

    @staticmethod
    def case_id(ticket_id: str) -> str:
        """The 18-character Case id, or `PermanentError` for something that is not an id (never sent to SOQL)."""
        try:
            return to_18(str(ticket_id))
        except ValueError as exc:
            raise PermanentError(str(exc), status=400) from None

    def _case_query(self, *conditions: str) -> str:
        where = [c for c in conditions if c]
        if self.soql_where:
            where.append(f"({self.soql_where})")
        comments = f"(SELECT {', '.join(_mapping.COMMENT_FIELDS)} FROM CaseComments ORDER BY CreatedDate ASC, Id ASC)"
        soql = f"SELECT {', '.join(_mapping.CASE_FIELDS)}, {comments} FROM Case"
        if where:
            soql += " WHERE " + " AND ".join(where)
        return soql + " ORDER BY SystemModstamp ASC, Id ASC"

    def _query_pages(self, soql: str) -> Iterator[dict[str, Any]]:
        """Every page of a query, following `nextRecordsUrl` until `done`."""
        page = self._get(
            self._path("query"),
            params={"q": _soql.check_length(soql)},
            headers={"Sforce-Query-Options": f"batchSize={self.page_size}"},
        )
        seen: set[str] = set()
        while True:
            if not isinstance(page, dict):
                raise TransientError("Salesforce answered a query with something other than a JSON object")
            yield page
            next_url = page.get("nextRecordsUrl")
            if page.get("done") is not False or not next_url:
                return
            if next_url in seen:
                raise TransientError("Salesforce returned the same nextRecordsUrl twice; stopping rather than looping")
            seen.add(next_url)
            page = self._get(str(next_url))

    def _all_comments(self, case: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The case's comments, following the child relationship's own `nextRecordsUrl` when it is not done."""
        records = _mapping.comment_records(case)
        result = case.get("CaseComments")
        seen: set[str] = set()
        while isinstance(result, Mapping) and result.get("done") is False and result.get("nextRecordsUrl"):
            next_url = str(result["nextRecordsUrl"])
            if next_url in seen:
                raise TransientError("Salesforce returned the same child nextRecordsUrl twice")
            seen.add(next_url)
            result = self._get(next_url)
            if not isinstance(result, Mapping):
                raise TransientError("Salesforce answered a child query page with something other than an object")
            records += [r for r in result.get("records") or [] if isinstance(r, Mapping)]
        return records

    def _snapshot_pages(self, soql: str) -> Iterator[list[TicketSnapshot]]:
        """Snapshots page by page; each page's child cursors are drained before the next page is asked for."""
        for page in self._query_pages(soql):
            records = [r for r in page.get("records") or [] if isinstance(r, Mapping) and r.get("Id")]
            yield [self._snapshot(r, self._all_comments(r)) for r in records]

    def _snapshot(self, case: Mapping[str, Any], comments: list[Mapping[str, Any]]) -> TicketSnapshot:
        return _mapping.case_snapshot(
            case,
            comments,
            instance_url=self.instance_url,
            include_private_comments=self.include_private_comments,
            status_map=self.status_map,
        )

    def display_name(self, snapshot: TicketSnapshot) -> str | None:
        """`Case 00001026: <Subject>`: people know Cases by their CaseNumber, not by the 18-character Id."""
        return _mapping.display_name(snapshot)

    @staticmethod
    def _ref(snapshot: TicketSnapshot) -> TicketRef:
        """A listed case with the complete snapshot the listing already brought (the resync does not fetch it again)."""
        return TicketRef(snapshot.ticket_id, snapshot.updated_at, snapshot)

    # -- reading ---------------------------------------------------------------------------------------
    def verify_credentials(self) -> None:
        """One cheap call that fails for refused credentials: the OpenID Connect UserInfo endpoint."""
        try:
            self.client.request_json("GET", "services/oauth2/userinfo")
        except PermanentError as exc:
            if exc.status in (401, 403):
                raise self._refused(str(exc)) from None
            raise

    @staticmethod
    def _refused(detail: str) -> CredentialsRefused:
        return CredentialsRefused(f"Salesforce refused the credentials: {detail}", status=401)

    def fetch(self, ticket_id: str) -> TicketSnapshot:
        """The Case with every comment; `TicketGone` when it does not exist (deleted) or is outside `soql_where`."""
        case_id = self.case_id(ticket_id)
        for snapshots in self._snapshot_pages(self._case_query(f"Id = {_soql.quote(case_id)}")):
            for snapshot in snapshots:
                if snapshot.ticket_id == case_id:
                    return snapshot
        raise TicketGone(case_id, "Salesforce")

    def fetch_many(self, ticket_ids: Sequence[str]) -> dict[str, TicketSnapshot | TicketGone]:
        """Several cases in as few queries as the length limits allow (`Id IN (...)`)."""
        wanted = {str(t): self.case_id(t) for t in ticket_ids}
        found: dict[str, TicketSnapshot] = {}
        unique = list(dict.fromkeys(wanted.values()))

        def render(run: list[str]) -> str:
            return self._case_query(f"Id IN {_soql.in_list(run)}")

        for run in _soql.chunk_for_in(unique, render):
            for snapshots in self._snapshot_pages(render(run)):
                found.update({s.ticket_id: s for s in snapshots})
        return {given: found.get(case_id) or TicketGone(case_id, "Salesforce") for given, case_id in wanted.items()}

    def iter_changed(self, since: datetime | None) -> Iterator[TicketRef]:
        """Cases changed at or after `since` (with their comments), then cases whose comments changed, then
        cases deleted since (as refs without a snapshot: the resync fetches them and finds them gone)."""
        condition = f"SystemModstamp >= {_soql.datetime_literal(since)}" if since is not None else ""
        listed: set[str] = set()
        for snapshots in self._snapshot_pages(self._case_query(condition)):
            for snapshot in snapshots:
                listed.add(snapshot.ticket_id)
                yield self._ref(snapshot)
        if since is None:
            return
        parents = [p for p in self._comment_parents_since(since) if p not in listed]
        for case_id, result in self.fetch_many(parents).items() if parents else ():
            if isinstance(result, TicketSnapshot):
                listed.add(case_id)
                yield self._ref(result)
        for case_id, deleted_at in self._deleted_since(since):
            if case_id not in listed:
                yield TicketRef(case_id, deleted_at)

    def _comment_parents_since(self, since: datetime) -> list[str]:
        soql = (
            f"SELECT ParentId FROM CaseComment WHERE SystemModstamp >= {_soql.datetime_literal(since)} "
            f"ORDER BY SystemModstamp ASC, Id ASC"
        )
        parents: list[str] = []
        for page in self._query_pages(soql):
            for record in page.get("records") or []:
                parent = record.get("ParentId") if isinstance(record, Mapping) else None
                if isinstance(parent, str) and ID_PATTERN.fullmatch(parent):
                    parents.append(to_18(parent))
        return list(dict.fromkeys(parents))

    def _deleted_since(self, since: datetime, now: datetime | None = None) -> list[tuple[str, datetime | None]]:
        """getDeleted from `since` (clamped to its ~15-day reach) to now; [] with a warning when it cannot answer."""
        end = (now or datetime.now(UTC)).replace(microsecond=0)
        earliest = end - GET_DELETED_REACH + GET_DELETED_MARGIN
        start = max(since if since.tzinfo else since.replace(tzinfo=UTC), earliest)
        if since.replace(tzinfo=since.tzinfo or UTC) < earliest:
            log.warning(
                "Salesforce getDeleted reaches back only ~15 days; deletions before %s are removed by a full resync",
                earliest.isoformat(),
            )
        if end - start < GET_DELETED_MIN_SPAN:
            start = end - GET_DELETED_MIN_SPAN
        params = {"start": _soql.datetime_literal(start), "end": _soql.datetime_literal(end)}
        try:
            answer = self._get(self._path("sobjects", "Case", "deleted") + "/", params=params)
        except PermanentError as exc:
            log.warning("Salesforce getDeleted failed (%s); a full resync removes deleted cases instead", exc)
            return []
        records = answer.get("deletedRecords") if isinstance(answer, Mapping) else None
        deleted = []
        for record in records or []:
            record_id = record.get("id") if isinstance(record, Mapping) else None
            if isinstance(record_id, str) and ID_PATTERN.fullmatch(record_id):
                deleted.append((to_18(record_id), _mapping.parse_time(record.get("deletedDate"))))
        return deleted

    # -- webhooks (Outbound Messages) ------------------------------------------------------------------
    def verify_webhook(self, request: WebhookRequest, secret: str) -> None:
        """Outbound Messages are unsigned: the endpoint URL carries `?token=<webhook_secret>` (compared in constant time)."""
        if not constant_time_equal(request.query.get("token"), secret):
            raise WebhookAuthError("missing or wrong ?token= in the outbound message endpoint URL")

    def parse_webhook(self, request: WebhookRequest) -> list[TicketEvent]:
        """Each notification about a Case (or a CaseComment's parent Case) → one upsert event."""
        message = parse_outbound_message(request.body)
        if self.organization_id and to_18(message.organization_id) != self.organization_id:
            raise WebhookAuthError("the outbound message comes from another organization (OrganizationId)")
        return [
            TicketEvent(n.case_id, EventAction.UPSERT, n.notification_id)
            for n in message.notifications
            if n.case_id is not None
        ]

    def webhook_reply(self, events: list[TicketEvent]) -> WebhookReply:
        """Salesforce counts a delivery only when answered with its SOAP acknowledgement."""
        return WebhookReply(status=200, body=ACK_ENVELOPE, content_type=ACK_CONTENT_TYPE)

    # -- writing (TicketBackend) -----------------------------------------------------------------------
    def create(self, data: TicketData) -> str:
        """A new Case (Subject, Description, Status, Origin, OwnerId = assignee, ContactId = requester, custom fields)."""
        fields: dict[str, Any] = {"title": data.title, "description": data.description, "status": data.status}
        if data.assignee:
            fields["assignee"] = data.assignee
        if data.requester:
            fields["requester"] = data.requester
        if data.communication:
            fields["communication"] = data.communication
        if data.custom_fields:
            fields["custom_fields"] = data.custom_fields
        body = _mapping.case_fields_for(fields, self.status_map, origin=self.origin)
        if self.record_type_id:
            body.setdefault("RecordTypeId", self.record_type_id)
        answer = self.client.request_json("POST", self._path("sobjects", "Case"), json=body)
        case_id = answer.get("id") if isinstance(answer, Mapping) else None
        if not isinstance(case_id, str) or not ID_PATTERN.fullmatch(case_id):
            raise TransientError("Salesforce created a Case but did not say its id")
        return to_18(case_id)

    def read(self, ticket_id: str) -> tuple[TicketData, list[Comment]]:
        snapshot = self.fetch(ticket_id)
        return snapshot.data, list(snapshot.comments)

    def update(self, ticket_id: str, fields: Mapping[str, Any]) -> None:
        """PATCH the Case (Salesforce answers 204); unknown fields raise before anything is sent."""
        case_id = self.case_id(ticket_id)
        body = _mapping.case_fields_for(fields, self.status_map)
        if not body:
            return
        try:
            self.client.request("PATCH", self._path("sobjects", "Case", case_id), json=body)
        except NotFoundError:
            raise TicketGone(case_id, "Salesforce") from None

    def add_comment(self, ticket_id: str, comment: Comment, *, public: bool | None = None) -> None:
        """A CaseComment on the Case; over 4,000 bytes is refused and nothing is sent.

        The model's `Comment` has no visibility, so `Ticket.comment(...)` posts what `comment_visibility`
        says (public by default: `IsPublished`, seen by customers in portals and possibly emailed to the
        contact; `internal`: agents only). Code that holds the backend chooses per comment with `public=`.
        Salesforce records the API user as the author (`CreatedBy`); `comment.author` is not sent.
        """
        case_id = self.case_id(ticket_id)
        size = _mapping.comment_body_bytes(comment.text)
        if size > _mapping.COMMENT_BODY_LIMIT_BYTES:
            raise CommentTooLong(
                f"Salesforce CaseComment bodies hold at most {_mapping.COMMENT_BODY_LIMIT_BYTES} bytes; this comment "
                f"is {size} bytes (UTF-8). Shorten it or split it into several comments; nothing was sent.",
                status=400,
            )
        published = self.comment_visibility == "public" if public is None else bool(public)
        body = {"ParentId": case_id, "CommentBody": comment.text, "IsPublished": published}
        try:
            self.client.request("POST", self._path("sobjects", "CaseComment"), json=body)
        except PermanentError as exc:
            codes = getattr(exc, "codes", ())
            if {"FIELD_INTEGRITY_EXCEPTION", "INVALID_CROSS_REFERENCE_KEY"} & set(codes):
                raise TicketGone(case_id, "Salesforce") from None
            raise

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"<SalesforceBackend system='salesforce' instance_url={self.instance_url!r} auth={self.client.tokens.flow!r}>"


__all__ = ["CommentTooLong", "SalesforceBackend"]

"""A stateful fake Jira over real HTTP: Cloud (REST v3 + /search/jql) or Data Center (REST v2 + /search).

It keeps issues, comments, users and a small workflow in memory and answers with the documented
response shapes (see tests/integrations/jira/fixtures/ and the shape tests), including pagination, rate limiting
(429 with Retry-After / X-RateLimit-Reset, injected on demand), 503, 404 and 400 with errorMessages.

Use it three ways:

* in-process: ``with start_fake_jira(deployment="cloud", issues=50) as server: server.url, server.fake``
  and change state through ``server.fake`` (``update_issue``, ``add_comment``, ``delete_issue``, ``inject``);
* standalone: ``python -m tests.integrations.jira.fake_server --port 8089 --issues 1000 --deployment cloud`` prints
  ``JIRA_URL=...`` and serves until interrupted;
* from another process: the admin endpoints under ``/_fake/`` (stats, issues, comments, faults, webhooks, lag).
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import json
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.faults import Fault, Faults
from tests.fakes.serving import FakeApp, RunningFake, serve
from tests.integrations.jira import _jql

DEPLOYMENTS = ("cloud", "datacenter")
DEFAULT_USERNAME = "bot@example.com"
DEFAULT_TOKEN = "fake-jira-token-0123456789"
GENERATED_START = datetime(2024, 1, 1, tzinfo=UTC)
_KEY_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[0-9]+")  # what JQL takes for an issue key (any case)


# -- the data the fake knows -----------------------------------------------------------------------
@dataclass(frozen=True)
class FakeUser:
    handle: str  # our own short name, used by the fake's helpers
    account_id: str  # Cloud identifies users by accountId only
    name: str  # Data Center identifies users by name (and key)
    key: str
    display_name: str
    email: str
    time_zone: str = "UTC"


@dataclass(frozen=True)
class FakeStatus:
    id: str
    name: str
    category: str  # new | indeterminate | done


@dataclass(frozen=True)
class FakeTransition:
    id: str
    name: str
    to: str  # status id
    sources: frozenset[str]  # status ids it is available from
    needs_resolution: bool = False


USERS = [
    FakeUser("bot", "557058:0b07-bot", "bot", "JIRAUSER10000", "Sync Bot", DEFAULT_USERNAME),
    FakeUser("ann", "557058:1a2b-ann", "ann", "JIRAUSER10100", "Ann Example", "ann@example.com", "Europe/London"),
    FakeUser(
        "bob", "557058:3c4d-bob", "bob.mueller", "JIRAUSER10101", "Bob Müller", "bob@example.com", "Europe/Berlin"
    ),
    FakeUser("chen", "557058:5e6f-chen", "chen.wei", "JIRAUSER10102", "陈伟", "chen@example.com", "Asia/Shanghai"),
    FakeUser(
        "customer",
        "qm:7a8b-customer",
        "customer",
        "JIRAUSER10103",
        "Customer Zoë",
        "zoe@customer.example",
        "America/New_York",
    ),
]
STATUSES = {
    s.id: s
    for s in (
        FakeStatus("10000", "To Do", "new"),
        FakeStatus("3", "In Progress", "indeterminate"),
        FakeStatus("10001", "Waiting for customer", "indeterminate"),
        FakeStatus("5", "Resolved", "done"),
        FakeStatus("10002", "Done", "done"),
    )
}
_OPEN_STATES = frozenset({"10000", "3", "10001"})
TRANSITIONS = [
    FakeTransition("11", "Back to To Do", "10000", frozenset({"3", "10001"})),
    FakeTransition("21", "Start progress", "3", frozenset({"10000", "10001"})),
    FakeTransition("25", "Wait for customer", "10001", frozenset({"3"})),
    FakeTransition("31", "Done", "10002", _OPEN_STATES),
    FakeTransition("41", "Resolve issue", "5", frozenset({"3", "10001"}), needs_resolution=True),
    FakeTransition("51", "Reopen", "10000", frozenset({"5", "10002"})),
]
CATEGORIES = {
    "new": (2, "To Do", "blue-gray"),
    "indeterminate": (4, "In Progress", "yellow"),
    "done": (3, "Done", "green"),
}
RESOLUTIONS = {"10000": "Done", "10001": "Won't Do", "10002": "Fixed", "10003": "Duplicate"}
ISSUE_TYPES = {"10002": "Task", "10004": "Bug", "10001": "Story"}
PRIORITIES = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
NAVIGABLE_FIELDS = (
    "summary", "status", "description", "created", "updated", "issuetype", "priority", "reporter", "assignee",
    "creator", "labels", "components", "project", "resolution", "resolutiondate", "environment", "comment",
)  # fmt: skip


@dataclass
class FakeComment:
    id: str
    author: str  # user handle
    body: str | dict[str, Any]
    created: datetime
    updated: datetime
    visibility: dict[str, str] | None = None
    jsd_public: bool | None = None


@dataclass
class FakeIssue:
    id: str
    key: str
    project: str
    summary: str
    description: str | dict[str, Any] | None
    status: str  # status id
    issue_type: str = "10002"
    priority: str = "3"
    reporter: str | None = "ann"
    assignee: str | None = None
    labels: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    resolution: str | None = None  # resolution id
    resolution_date: datetime | None = None
    created: datetime = GENERATED_START
    updated: datetime = GENERATED_START
    comments: list[FakeComment] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return int(self.key.rsplit("-", 1)[1])


def _ms(value: datetime) -> datetime:
    """Jira keeps milliseconds."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def jira_time(value: datetime, zone: ZoneInfo) -> str:
    """Jira's timestamp form: `2024-05-01T10:00:00.000+0000` (no colon in the offset)."""
    local = value.astimezone(zone)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" + local.strftime("%z")


def flatten_adf(value: Any) -> str:
    """The fake's own crude ADF → text (for serving ADF-stored text on v2); independent of the client's walker."""
    if value is None or isinstance(value, str):
        return value or ""
    blocks: list[str] = []

    def inline(node: Any) -> str:
        if not isinstance(node, dict):
            return ""
        if node.get("type") == "hardBreak":
            return "\n"
        children = [c for c in node.get("content") or [] if isinstance(c, dict)]
        joiner = "\n" if any(c.get("content") for c in children) else ""  # block children go on their own lines
        return str(node.get("text") or (node.get("attrs") or {}).get("text") or "") + joiner.join(
            inline(c) for c in children
        )

    for block in value.get("content") or []:
        blocks.append(inline(block))
    return "\n\n".join(blocks)


def text_as_adf(text: str) -> dict[str, Any]:
    paragraphs = [p for p in text.split("\n\n")] if text else []
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": p}]} if p else {"type": "paragraph"}
            for p in paragraphs
        ],
    }


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and isinstance(value.get("content"), list)


class JiraRequestError(Exception):
    """An answer with Jira's error body: `{"errorMessages": [...], "errors": {...}}`."""

    def __init__(self, status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None) -> None:
        self.status = status
        self.messages = messages or []
        self.errors = errors or {}
        super().__init__(f"{status}: {self.messages} {self.errors}")


# -- the fake ----------------------------------------------------------------------------------------
class FakeJira(FakeApp, _jql.FieldAccess):
    """The state and the WSGI app. Every public method is safe to call from tests while serving."""

    def __init__(
        self,
        deployment: str = "cloud",
        *,
        username: str = DEFAULT_USERNAME,
        token: str = DEFAULT_TOKEN,
        timezone_name: str = "UTC",
        search_page_cap: int = 100,
        comment_page_cap: int = 100,
        embedded_comment_limit: int = 20,
        omit_is_last: bool = False,
        refused_as_anonymous: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if deployment not in DEPLOYMENTS:
            raise ValueError(f"deployment must be one of {DEPLOYMENTS}, not {deployment!r}")
        self.deployment = deployment
        self.username = username
        self.token = token
        self.zone = ZoneInfo(timezone_name)
        self.search_page_cap = search_page_cap
        self.comment_page_cap = comment_page_cap
        self.embedded_comment_limit = embedded_comment_limit
        self.omit_is_last = omit_is_last  # JRACLOUD-92184-style: the end shows only by a missing nextPageToken
        # Jira Cloud with an expired or revoked API token: the request is served as the anonymous user
        # (search 200 with no issues, issue lookups 404); only /myself answers 401.
        self.refused_as_anonymous = refused_as_anonymous
        self.clock = clock or (lambda: datetime.now(UTC))
        self.base_url = "http://fake-jira.invalid"
        self.users = {u.handle: u for u in USERS}
        self.issues: dict[str, FakeIssue] = {}
        self.deleted: dict[str, FakeIssue] = {}
        self.moved: dict[str, str] = {}  # old key -> new key (Jira keeps old keys resolvable)
        self.faults = Faults(
            {
                429: {"errorMessages": ["Rate limit exceeded."]},
                503: "Service Unavailable",
                500: {"errorMessages": ["Internal server error"]},
            }
        )
        self.requests: list[tuple[str, str, str]] = []  # (method, path, query string)
        self.after_request: list[Callable[[FakeJira, Request], None]] = []
        self.latency = 0.0  # seconds every API request takes, like a remote server (lets concurrency show)
        self.in_flight = 0
        # Per API request, in order of arrival: [requests in flight when it arrived (itself included), its status].
        self.arrivals: list[list[int]] = []
        self.lock = threading.RLock()
        self._next_issue_id = 10000
        self._next_comment_id = 100000
        self._project_counters: dict[str, int] = {}
        self._last_change = datetime.min.replace(tzinfo=UTC)
        # A lagging read replica (Jira Cloud reads are eventually consistent, its search index more so): with
        # this probability an issue GET or a search hit shows the issue as it was before its last admin update.
        self.stale_probability = 0.0
        self.stale_searches_only = False  # Cloud: reading one issue is current, the search index lags
        self.previous: dict[str, FakeIssue] = {}
        self._stale_rng = random.Random(0)
        self.url_map = self._routes()

    # -- state: reading ----------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock()

    @property
    def api_version(self) -> str:
        return "3" if self.deployment == "cloud" else "2"

    @property
    def request_count(self) -> int:
        with self.lock:
            return len(self.requests)

    def issue(self, key: str) -> FakeIssue:
        with self.lock:
            if key.isdigit():  # Jira resolves an issue's numeric id as well as its key
                key = next((issue.key for issue in self.issues.values() if issue.id == key), key)
            key = self.moved.get(key.upper(), key.upper())
            if key not in self.issues:
                raise KeyError(key)
            return self.issues[key]

    def comment_visible(self, comment: FakeComment) -> bool:
        """What a client should keep by default: no role/group restriction, not a JSM internal note."""
        return comment.visibility is None and comment.jsd_public is not False

    def stats(self) -> dict[str, int]:
        with self.lock:
            comments = [c for issue in self.issues.values() for c in issue.comments]
            return {
                "issues": len(self.issues),
                "comments": len(comments),
                "visible_comments": sum(1 for c in comments if self.comment_visible(c)),
                "requests": len(self.requests),
            }

    # -- state: changing ---------------------------------------------------------------------------
    def _touch(self) -> datetime:
        """A fresh `updated` time: the clock (at Jira's millisecond precision), strictly after the previous change."""
        now = _ms(self.now())
        if now <= self._last_change:
            now = self._last_change + timedelta(milliseconds=1)
        self._last_change = now
        return now

    def add_issue(
        self,
        summary: str,
        *,
        project: str = "PROJ",
        description: str | dict[str, Any] | None = None,
        status: str = "To Do",
        issue_type: str = "Task",
        priority: str = "Medium",
        reporter: str | None = "ann",
        assignee: str | None = None,
        labels: list[str] | None = None,
        components: list[str] | None = None,
        created: datetime | None = None,
        updated: datetime | None = None,
        custom: dict[str, Any] | None = None,
    ) -> str:
        with self.lock:
            number = self._project_counters.get(project, 0) + 1
            self._project_counters[project] = number
            key = f"{project}-{number}"
            status_id = self._status_id(status)
            when = _ms(created) if created else self._touch()
            issue = FakeIssue(
                id=str(self._next_issue_id),
                key=key,
                project=project,
                summary=summary,
                description=description,
                status=status_id,
                issue_type=self._lookup(ISSUE_TYPES, issue_type, "issue type"),
                priority=self._lookup(PRIORITIES, priority, "priority"),
                reporter=reporter,
                assignee=assignee,
                labels=list(labels or []),
                components=list(components or []),
                created=when,
                updated=_ms(updated) if updated else when,
                custom=dict(custom or {}),
            )
            if STATUSES[status_id].category == "done":
                issue.resolution = "10002" if STATUSES[status_id].name == "Resolved" else "10000"
                issue.resolution_date = issue.updated
            self._next_issue_id += 1
            self.issues[key] = issue
            return key

    def lag_reads(self, probability: float, seed: int = 0, *, searches_only: bool = False) -> None:
        """From now on, an issue GET or search hit serves the issue's previous version with `probability` (0: never);
        with `searches_only`, only search hits do (Atlassian's "Search After Write": the search index lags writes)."""
        with self.lock:
            self.stale_probability = probability
            self.stale_searches_only = searches_only
            self._stale_rng = random.Random(seed)

    def update_issue(self, key: str, **changes: Any) -> None:
        """Change fields as a user would (summary, description, status name, assignee handle, labels, ...)."""
        with self.lock:
            issue = self.issue(key)
            self.previous[issue.key] = copy.deepcopy(issue)
            for name, value in changes.items():
                if name == "status":
                    issue.status = self._status_id(value)
                    done = STATUSES[issue.status].category == "done"
                    issue.resolution = (
                        ("10002" if STATUSES[issue.status].name == "Resolved" else "10000") if done else None
                    )
                elif name in {"issue_type", "priority"}:
                    setattr(issue, name, self._lookup(ISSUE_TYPES if name == "issue_type" else PRIORITIES, value, name))
                elif hasattr(issue, name) and name not in {"id", "key", "comments", "created", "updated"}:
                    setattr(issue, name, value)
                else:
                    raise ValueError(f"the fake cannot change {name!r}")
            issue.updated = self._touch()
            if issue.resolution and not issue.resolution_date:
                issue.resolution_date = issue.updated
            elif not issue.resolution:
                issue.resolution_date = None

    def add_comment(
        self,
        key: str,
        body: str | dict[str, Any],
        *,
        author: str = "ann",
        visibility: dict[str, str] | None = None,
        jsd_public: bool | None = None,
        created: datetime | None = None,
        touch: bool = True,
    ) -> str:
        with self.lock:
            issue = self.issue(key)
            when = _ms(created) if created else self._touch()
            comment = FakeComment(str(self._next_comment_id), author, body, when, when, visibility, jsd_public)
            self._next_comment_id += 1
            issue.comments.append(comment)
            if touch:
                issue.updated = max(issue.updated, when) if created else when
            return comment.id

    def update_comment(self, key: str, comment_id: str, body: str | dict[str, Any]) -> None:
        with self.lock:
            issue = self.issue(key)
            comment = self._comment(issue, comment_id)
            comment.body = body
            comment.updated = issue.updated = self._touch()

    def delete_comment(self, key: str, comment_id: str) -> None:
        with self.lock:
            issue = self.issue(key)
            issue.comments.remove(self._comment(issue, comment_id))
            issue.updated = self._touch()

    def delete_issue(self, key: str) -> None:
        with self.lock:
            issue = self.issue(key)
            del self.issues[issue.key]
            self.deleted[issue.key] = issue

    def move_issue(self, key: str, project: str) -> str:
        """Move to another project: a new key; the old one keeps resolving to the issue (as in Jira)."""
        with self.lock:
            issue = self.issue(key)
            number = self._project_counters.get(project, 0) + 1
            self._project_counters[project] = number
            del self.issues[issue.key]
            old_key, issue.key, issue.project = issue.key, f"{project}-{number}", project
            self.issues[issue.key] = issue
            self.moved[old_key] = issue.key
            issue.updated = self._touch()
            return issue.key

    def clear_faults(self) -> None:
        self.faults.clear()

    def seed(
        self,
        count: int,
        *,
        project: str = "PROJ",
        comments: Callable[[int], int] = lambda i: i % 5,
        start: datetime = GENERATED_START,
    ) -> list[str]:
        """`count` deterministic issues with varied statuses, users, ADF text and some restricted comments.

        `updated` is a permutation of 20-second steps, so several issues share a minute and the
        update order differs from the key order (both matter for search paging).
        """
        keys: list[str] = []
        handles = [u.handle for u in USERS if u.handle != "bot"]
        statuses = ["To Do", "In Progress", "Done", "Resolved", "Waiting for customer"]
        step = 37 if count % 37 else 41
        for i in range(1, count + 1):
            created = start - timedelta(days=2) + timedelta(seconds=i)
            updated = start + timedelta(seconds=20 * ((i * step) % count))
            wiki = f"Generated issue number {i}.\n\n* step one\n* step two"
            description: str | dict[str, Any] = wiki if self.deployment == "datacenter" else {
                "type": "doc",
                "version": 1,
                "content": [
                    {"type": "paragraph", "content": [{"type": "text", "text": f"Generated issue number {i}."}]},
                    {"type": "bulletList", "content": [
                        {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "step one"}]}]},
                        {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "step two"}]}]},
                    ]},
                ],
            }  # fmt: skip
            key = self.add_issue(
                f"Generated issue {i}: {'Grüße' if i % 3 == 0 else 'login fails'}",
                project=project,
                description=description,
                status=statuses[i % len(statuses)],
                issue_type=["Task", "Bug", "Story"][i % 3],
                priority=list(PRIORITIES.values())[i % 5],
                reporter=handles[i % len(handles)],
                assignee=handles[(i + 1) % len(handles)] if i % 4 else None,
                labels=["generated"] + (["backend"] if i % 2 else []),
                created=created,
                updated=updated,
            )
            for j in range(comments(i)):
                visibility = (
                    {"type": "role", "value": "Developers", "identifier": "Developers"} if (i + j) % 7 == 6 else None
                )
                self.add_comment(
                    key,
                    self._native_text(f"Comment {j + 1} on {key} — ünïcödé ✓"),
                    author=handles[(i + j) % len(handles)],
                    visibility=visibility,
                    jsd_public=False if (i + j) % 11 == 10 else None,
                    created=created + timedelta(minutes=j + 1),
                    touch=False,
                )
            keys.append(key)
        return keys

    def _native_text(self, text: str) -> str | dict[str, Any]:
        """Text as this deployment stores it: ADF on Cloud, wiki markup on Data Center."""
        return text_as_adf(text) if self.deployment == "cloud" else text

    def _status_id(self, name_or_id: str) -> str:
        for status in STATUSES.values():
            if name_or_id in (status.id, status.name):
                return status.id
        raise ValueError(f"unknown status {name_or_id!r} (known: {', '.join(s.name for s in STATUSES.values())})")

    @staticmethod
    def _lookup(table: dict[str, str], name_or_id: str, what: str) -> str:
        for id_, name in table.items():
            if name_or_id in (id_, name):
                return id_
        raise ValueError(f"unknown {what} {name_or_id!r}")

    @staticmethod
    def _comment(issue: FakeIssue, comment_id: str) -> FakeComment:
        for comment in issue.comments:
            if comment.id == str(comment_id):
                return comment
        raise KeyError(comment_id)

    # -- webhooks the real Jira would send -----------------------------------------------------------
    def webhook_payload(
        self, event: str, key: str, *, comment_id: str | None = None, actor: str = "ann"
    ) -> dict[str, Any]:
        """A webhook body in Jira's shape for `event` about issue `key` (deleted issues keep their last state)."""
        with self.lock:
            issue = self.issues.get(key) or self.deleted.get(key) or self.issue(key)
            payload: dict[str, Any] = {
                "timestamp": int(self.now().timestamp() * 1000),
                "webhookEvent": event,
                "user": self._user_json(self.users[actor], "2"),
            }
            trimmed = {
                "id": issue.id,
                "self": f"{self.base_url}/rest/api/2/issue/{issue.id}",
                "key": issue.key,
                "fields": {
                    k: v
                    for k, v in self._fields_json(
                        issue, "2", ["summary", "issuetype", "project", "assignee", "priority", "status"]
                    ).items()
                },
            }
            if event.startswith("jira:issue_"):
                payload["issue_event_type_name"] = {
                    "jira:issue_created": "issue_created",
                    "jira:issue_deleted": "issue_deleted",
                }.get(event, "issue_generic")
                payload["issue"] = self._issue_json(issue, "2", list(NAVIGABLE_FIELDS))
                if event == "jira:issue_updated":
                    payload["changelog"] = {"id": str(uuid.uuid4().int % 10**6), "items": [
                        {"field": "summary", "fieldtype": "jira", "fieldId": "summary", "from": None, "fromString": "old", "to": None, "toString": issue.summary},
                    ]}  # fmt: skip
            elif event.startswith("comment_"):
                comments = [c for c in issue.comments if comment_id is None or c.id == comment_id]
                comment = (
                    comments[-1] if comments else FakeComment(comment_id or "0", actor, "", self.now(), self.now())
                )
                payload["comment"] = self._comment_json(issue, comment, "2")
                payload["issue"] = trimmed
            else:
                payload["issue"] = trimmed
            return payload

    def signed_webhook(self, event: str, key: str, secret: str, **kwargs: Any) -> tuple[bytes, dict[str, str]]:
        """Body bytes and headers (signature, delivery id) as Jira Cloud sends an admin webhook."""
        body = json.dumps(self.webhook_payload(event, key, **kwargs), ensure_ascii=False).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Hub-Signature": f"sha256={signature}",
            "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
            "X-Atlassian-Webhook-Flow": "Primary",
            "X-Atlassian-Webhook-Retry": "0",
            "User-Agent": "Atlassian Webhook HTTP Client",
        }
        return body, headers

    # -- rendering (the documented shapes) -----------------------------------------------------------
    def _user_json(self, user: FakeUser | None, version: str) -> dict[str, Any] | None:
        if user is None:
            return None
        avatars = {
            size: f"https://avatar.example/{user.handle}?s={size.split('x')[0]}"
            for size in ("48x48", "24x24", "16x16", "32x32")
        }
        if self.deployment == "cloud":
            return {
                "self": f"{self.base_url}/rest/api/{version}/user?accountId={user.account_id}",
                "accountId": user.account_id,
                "emailAddress": user.email,
                "avatarUrls": avatars,
                "displayName": user.display_name,
                "active": True,
                "timeZone": user.time_zone,
                "accountType": "customer" if user.account_id.startswith("qm:") else "atlassian",
            }
        return {
            "self": f"{self.base_url}/rest/api/2/user?username={user.name}",
            "name": user.name,
            "key": user.key,
            "emailAddress": user.email,
            "avatarUrls": avatars,
            "displayName": user.display_name,
            "active": True,
            "timeZone": user.time_zone,
        }

    def _status_json(self, status_id: str, version: str) -> dict[str, Any]:
        status = STATUSES[status_id]
        category_id, category_name, colour = CATEGORIES[status.category]
        return {
            "self": f"{self.base_url}/rest/api/{version}/status/{status.id}",
            "description": "",
            "iconUrl": f"{self.base_url}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": {
                "self": f"{self.base_url}/rest/api/{version}/statuscategory/{category_id}",
                "id": category_id,
                "key": status.category,
                "colorName": colour,
                "name": category_name,
            },
        }

    def _text(self, value: str | dict[str, Any] | None, version: str) -> Any:
        if value is None:
            return None
        if version == "3":
            return value if isinstance(value, dict) else text_as_adf(value)
        return flatten_adf(value) if isinstance(value, dict) else value

    def _comment_json(self, issue: FakeIssue, comment: FakeComment, version: str) -> dict[str, Any]:
        author = self._user_json(self.users.get(comment.author), version)
        data: dict[str, Any] = {
            "self": f"{self.base_url}/rest/api/{version}/issue/{issue.id}/comment/{comment.id}",
            "id": comment.id,
            "author": author,
            "body": self._text(comment.body, version),
            "updateAuthor": author,
            "created": jira_time(comment.created, self.zone),
            "updated": jira_time(comment.updated, self.zone),
        }
        if comment.visibility:
            data["visibility"] = dict(comment.visibility)
        if comment.jsd_public is not None:
            data["jsdPublic"] = comment.jsd_public
        return data

    def _fields_json(self, issue: FakeIssue, version: str, wanted: list[str]) -> dict[str, Any]:
        base = self.base_url
        all_fields: dict[str, Callable[[], Any]] = {
            "summary": lambda: issue.summary,
            "status": lambda: self._status_json(issue.status, version),
            "description": lambda: self._text(issue.description, version),
            "environment": lambda: None,
            "created": lambda: jira_time(issue.created, self.zone),
            "updated": lambda: jira_time(issue.updated, self.zone),
            "issuetype": lambda: {
                "self": f"{base}/rest/api/{version}/issuetype/{issue.issue_type}",
                "id": issue.issue_type,
                "description": "",
                "iconUrl": f"{base}/images/icons/issuetypes/task.svg",
                "name": ISSUE_TYPES[issue.issue_type],
                "subtask": False,
                "avatarId": 10318,
                **({"hierarchyLevel": 0} if self.deployment == "cloud" else {}),
            },
            "priority": lambda: {
                "self": f"{base}/rest/api/{version}/priority/{issue.priority}",
                "iconUrl": f"{base}/images/icons/priorities/{PRIORITIES[issue.priority].lower()}.svg",
                "name": PRIORITIES[issue.priority],
                "id": issue.priority,
            },
            "reporter": lambda: self._user_json(self.users.get(issue.reporter or ""), version),
            "creator": lambda: self._user_json(self.users.get(issue.reporter or ""), version),
            "assignee": lambda: self._user_json(self.users.get(issue.assignee or ""), version),
            "labels": lambda: list(issue.labels),
            "components": lambda: [
                {"self": f"{base}/rest/api/{version}/component/{10000 + i}", "id": str(10000 + i), "name": name}
                for i, name in enumerate(issue.components)
            ],
            "project": lambda: {
                "self": f"{base}/rest/api/{version}/project/{issue.project}",
                "id": str(10000 + sum(map(ord, issue.project))),
                "key": issue.project,
                "name": f"{issue.project.title()} project",
                "projectTypeKey": "software",
                "simplified": False,
                "avatarUrls": {"48x48": f"{base}/secure/projectavatar?pid=10000"},
            },
            "resolution": lambda: (
                None
                if issue.resolution is None
                else {
                    "self": f"{base}/rest/api/{version}/resolution/{issue.resolution}",
                    "id": issue.resolution,
                    "description": "",
                    "name": RESOLUTIONS[issue.resolution],
                }
            ),
            "resolutiondate": lambda: jira_time(issue.resolution_date, self.zone) if issue.resolution_date else None,
            "comment": lambda: {
                "comments": [
                    self._comment_json(issue, c, version) for c in issue.comments[: self.embedded_comment_limit]
                ],
                "self": f"{base}/rest/api/{version}/issue/{issue.id}/comment",
                "maxResults": min(len(issue.comments), self.embedded_comment_limit),
                "total": len(issue.comments),
                "startAt": 0,
            },
        }
        result: dict[str, Any] = {}
        for name in wanted:
            if name in all_fields:
                result[name] = all_fields[name]()
            elif name.startswith("customfield_"):
                value = issue.custom.get(name)
                result[name] = self._text(value, version) if isinstance(value, str) or _is_adf(value) else value
        return result

    def _issue_json(self, issue: FakeIssue, version: str, wanted: list[str]) -> dict[str, Any]:
        return {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue.id,
            "self": f"{self.base_url}/rest/api/{version}/issue/{issue.id}",
            "key": issue.key,
            "fields": self._fields_json(issue, version, wanted),
        }

    @staticmethod
    def _wanted_fields(raw: Any, default: list[str]) -> list[str]:
        """Jira's `fields` parameter: a list or comma-separated names, `*all`, `*navigable`, `-name` to exclude."""
        if raw is None or raw == "" or raw == []:
            return default
        names = raw if isinstance(raw, list) else str(raw).split(",")
        names = [str(n).strip() for n in names if str(n).strip()]
        wanted: list[str] = []
        for name in names:
            if name in {"*all", "*navigable"}:
                wanted.extend(NAVIGABLE_FIELDS)
            elif not name.startswith("-"):
                wanted.append(name)
        excluded = {n[1:] for n in names if n.startswith("-")}
        return [n for n in dict.fromkeys(wanted) if n not in excluded]

    # -- JQL field access ----------------------------------------------------------------------------
    _JQL_FIELDS = {
        "project", "key", "issuekey", "id", "status", "statuscategory", "labels", "issuetype", "type", "priority",
        "assignee", "reporter", "updated", "updateddate", "created", "createddate", "resolution", "summary", "text",
        "description", "comment",
    }  # fmt: skip

    def known(self, field: str) -> bool:
        return field in self._JQL_FIELDS or field.startswith("cf[")

    def is_date(self, field: str) -> bool:
        return field in {"updated", "updateddate", "created", "createddate"}

    def values(self, issue: FakeIssue, field: str) -> list[Any]:
        def user(handle: str | None) -> list[str]:
            u = self.users.get(handle or "")
            return [u.account_id, u.name, u.display_name, u.email] if u else []

        status = STATUSES[issue.status]
        table: dict[str, Callable[[], list[Any]]] = {
            "project": lambda: [issue.project],
            "key": lambda: [issue.key] + [old for old, new in self.moved.items() if new == issue.key],
            "issuekey": lambda: [issue.key],
            "id": lambda: [issue.id],
            "status": lambda: [status.name, status.id],
            "statuscategory": lambda: [
                status.category,
                CATEGORIES[status.category][1],
                str(CATEGORIES[status.category][0]),
            ],
            "labels": lambda: list(issue.labels),
            "issuetype": lambda: [ISSUE_TYPES[issue.issue_type], issue.issue_type],
            "type": lambda: [ISSUE_TYPES[issue.issue_type], issue.issue_type],
            "priority": lambda: [PRIORITIES[issue.priority], issue.priority],
            "assignee": lambda: user(issue.assignee),
            "reporter": lambda: user(issue.reporter),
            "updated": lambda: [issue.updated],
            "updateddate": lambda: [issue.updated],
            "created": lambda: [issue.created],
            "createddate": lambda: [issue.created],
            "resolution": lambda: [RESOLUTIONS[issue.resolution], issue.resolution] if issue.resolution else [],
            "summary": lambda: [issue.summary],
            "description": lambda: [flatten_adf(issue.description)],
            "text": lambda: (
                [issue.summary, flatten_adf(issue.description)] + [flatten_adf(c.body) for c in issue.comments]
            ),
            "comment": lambda: [flatten_adf(c.body) for c in issue.comments],
        }
        return table.get(field, lambda: [])()

    def sort_key(self, issue: FakeIssue, field: str) -> Any:
        if field in {"key", "issuekey", "id"}:
            return self.key_rank(issue.key)
        if field in {"updated", "updateddate"}:
            return issue.updated
        if field in {"created", "createddate"}:
            return issue.created
        values = self.values(issue, field)
        return str(values[0]).lower() if values else ""

    def key_rank(self, key: str) -> Any:
        project, _, number = key.upper().rpartition("-")
        return (project, int(number) if number.isdigit() else 0)

    def key_errors(self, field: str, values: list[Any]) -> list[str]:
        """Jira's wording for each key it cannot resolve (a numeric value names an issue id; a moved issue's
        old key still resolves): "An issue with key 'X' does not exist for field 'key'." for a well-formed key
        (deleted, never existed, or not visible), "The issue key 'X' for field 'key' is invalid." otherwise."""
        errors = []
        with self.lock:
            for value in values:
                text = str(value)
                if not text.isdigit() and not _KEY_SHAPE.fullmatch(text):
                    errors.append(f"The issue key '{text}' for field '{field}' is invalid.")
                    continue
                try:
                    self.issue(text)
                except KeyError:
                    errors.append(f"An issue with key '{text}' does not exist for field '{field}'.")
        return errors

    def search(self, jql: str) -> list[FakeIssue]:
        """Every issue matching `jql`, in its ORDER BY (Jira's default: key descending)."""
        with self.lock:
            query = _jql.parse(jql, self, self.zone, self.now())
            if query.where is None and self.deployment == "cloud":
                raise JiraRequestError(
                    400, ["Unbounded JQL queries are not allowed here. Please add a search restriction to your query."]
                )
            hits = [issue for issue in self.issues.values() if query.where is None or query.where(issue)]
            return _jql.sort(hits, query.order_by or [("key", True)], self)

    # -- HTTP --------------------------------------------------------------------------------------
    def _routes(self) -> Map:
        api = "/rest/api/<version>"
        return Map(
            [
                Rule(f"{api}/issue", endpoint="create_issue", methods=["POST"]),
                Rule(f"{api}/issue/<key>", endpoint="issue", methods=["GET", "PUT", "DELETE"]),
                Rule(f"{api}/issue/<key>/comment", endpoint="comments", methods=["GET", "POST"]),
                Rule(f"{api}/issue/<key>/comment/<comment_id>", endpoint="comment", methods=["GET", "PUT", "DELETE"]),
                Rule(f"{api}/issue/<key>/transitions", endpoint="transitions", methods=["GET", "POST"]),
                Rule(f"{api}/issue/<key>/assignee", endpoint="assign", methods=["PUT"]),
                Rule(f"{api}/search", endpoint="search_offset", methods=["GET", "POST"]),
                Rule(f"{api}/search/jql", endpoint="search_token", methods=["GET", "POST"]),
                Rule(f"{api}/myself", endpoint="myself", methods=["GET"]),
                Rule("/_fake/stats", endpoint="admin_stats", methods=["GET"]),
                Rule("/_fake/issues", endpoint="admin_issues", methods=["GET", "POST"]),
                Rule("/_fake/issues/<key>", endpoint="admin_issue", methods=["POST", "DELETE"]),
                Rule("/_fake/issues/<key>/comments", endpoint="admin_comments", methods=["POST"]),
                Rule("/_fake/faults", endpoint="admin_faults", methods=["POST", "DELETE"]),
                Rule("/_fake/webhooks", endpoint="admin_webhooks", methods=["POST"]),
                Rule("/_fake/lag", endpoint="admin_lag", methods=["POST"]),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serve one request; API requests take `latency` and are counted in flight (`arrivals`)."""
        if str(environ.get("PATH_INFO", "")).startswith("/_fake/"):
            return super().__call__(environ, start_response)
        with self.lock:
            self.in_flight += 1
            arrival = [self.in_flight, 0]
            self.arrivals.append(arrival)

        def noting_status(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            arrival[1] = int(status.split()[0])
            return start_response(status, headers, *args)

        try:
            if self.latency:
                time.sleep(self.latency)
            return super().__call__(environ, noting_status)
        finally:
            with self.lock:
                self.in_flight -= 1

    def handle(self, request: Request) -> Response:
        is_admin = request.path.startswith("/_fake/")
        if not is_admin:
            with self.lock:
                self.requests.append((request.method, request.path, request.query_string.decode()))
            fault = self.faults.take(request.method, request.path)
            if fault is not None:
                return self._fault_response(fault)
            if not self._authenticated(request) and self.refused_as_anonymous:
                return self._anonymous(request)
            if not self._authenticated(request):
                return self._json(
                    401,
                    {
                        "errorMessages": [
                            "You are not authenticated. Authentication required to perform this operation."
                        ],
                        "errors": {},
                    },
                )
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
            if not is_admin:
                version = args.pop("version")
                supported = {"2", "3", "latest"} if self.deployment == "cloud" else {"2", "latest"}
                if version not in supported:
                    raise NotFound()
                args["version"] = "2" if version == "latest" else version
            return getattr(self, f"_on_{endpoint}")(request, **args)
        except JiraRequestError as exc:
            return self._json(exc.status, {"errorMessages": exc.messages, "errors": exc.errors})
        except _jql.JqlError as exc:
            return self._json(400, {"errorMessages": exc.messages or [str(exc)], "errors": {}, "warningMessages": []})
        except MethodNotAllowed:
            return self._json(405, {"errorMessages": [f"Method {request.method} not allowed"], "errors": {}})
        except HTTPException as exc:
            return Response(f"<html><body>{exc.name}</body></html>", status=exc.code or 500, content_type="text/html")

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.deployment == "cloud":
            expected = "Basic " + base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        else:
            expected = f"Bearer {self.token}"
        return hmac.compare_digest(header.encode(), expected.encode())

    def _anonymous(self, request: Request) -> Response:
        """What Jira answers the anonymous user, who may browse nothing: only /myself admits the 401."""
        path = request.path.rstrip("/")
        if path.endswith("/myself"):
            return self._json(
                401,
                {"errorMessages": ["You are not authenticated. Authentication required to perform this operation."]},
            )
        if path.endswith("/search/jql"):
            return self._json(200, {"issues": [], "isLast": True})
        if path.endswith("/search"):
            return self._json(200, {"startAt": 0, "maxResults": 50, "total": 0, "issues": []})
        return self._json(404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."]})

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        if body is None:
            return Response(status=status, headers=headers)
        return Response(
            json.dumps(body, ensure_ascii=False),
            status=status,
            headers=headers,
            content_type="application/json;charset=UTF-8",
        )

    def _fault_response(self, fault: Fault) -> Response:
        if isinstance(fault.body, (dict, list)):
            return self._json(fault.status, fault.body, fault.headers)
        return Response(fault.body or "", status=fault.status, headers=fault.headers, content_type="text/plain")

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            raise JiraRequestError(400, ["Unexpected character: was expecting a JSON value"]) from None
        if not isinstance(body, dict):
            raise JiraRequestError(400, ["Can not deserialize instance out of START_ARRAY token"])
        return body

    def _as_read(self, issue: FakeIssue, *, search: bool = False) -> FakeIssue:
        """`issue` as the (maybe lagging, see `lag_reads`) replica or search index serves it."""
        if self.stale_searches_only and not search:
            return issue
        if self.stale_probability and issue.key in self.previous:
            if self._stale_rng.random() < self.stale_probability:
                return self.previous[issue.key]
        return issue

    def _find(self, key: str) -> FakeIssue:
        try:
            return self.issue(key)
        except KeyError:
            raise JiraRequestError(404, ["Issue does not exist or you do not have permission to see it."]) from None

    # -- endpoints: issues -------------------------------------------------------------------------
    def _on_issue(self, request: Request, key: str, version: str) -> Response:
        with self.lock:
            issue = self._find(key)
            if request.method == "GET":
                wanted = self._wanted_fields(request.args.get("fields"), list(NAVIGABLE_FIELDS))
                return self._json(200, self._issue_json(self._as_read(issue), version, wanted))
            if request.method == "DELETE":
                self.delete_issue(issue.key)
                return self._json(204, None)
            body = self._body(request)
            self._apply_fields(issue, body.get("fields") or {}, version)
            issue.updated = self._touch()
            return self._json(204, None)

    def _on_create_issue(self, request: Request, version: str) -> Response:
        body = self._body(request)
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise JiraRequestError(400, ["Issue must have 'fields' set."])
        errors: dict[str, str] = {}
        project = fields.get("project") or {}
        project_key = project.get("key") if isinstance(project, dict) else None
        if not project_key or not re.fullmatch(r"[A-Z][A-Z0-9_]+", str(project_key)):
            errors["project"] = "Specify a valid project ID or key"
        issuetype = fields.get("issuetype") or {}
        type_name = issuetype.get("name") or issuetype.get("id") if isinstance(issuetype, dict) else None
        if not type_name or type_name not in set(ISSUE_TYPES) | set(ISSUE_TYPES.values()):
            errors["issuetype"] = "Specify an issue type"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if errors:
            raise JiraRequestError(400, [], errors)
        with self.lock:
            key = self.add_issue(
                str(fields["summary"]), project=str(project_key), issue_type=str(type_name), reporter="bot"
            )
            issue = self.issues[key]
            try:
                self._apply_fields(
                    issue, {k: v for k, v in fields.items() if k not in {"project", "issuetype", "summary"}}, version
                )
            except JiraRequestError:
                del self.issues[key]
                raise
            return self._json(
                201, {"id": issue.id, "key": issue.key, "self": f"{self.base_url}/rest/api/{version}/issue/{issue.id}"}
            )

    def _user_from(self, value: Any, field_name: str) -> str | None:
        """Cloud takes `{"accountId"}`, Data Center `{"name"}`; null unassigns."""
        if value is None:
            return None
        id_key = "accountId" if self.deployment == "cloud" else "name"
        if not isinstance(value, dict) or id_key not in value:
            raise JiraRequestError(400, [], {field_name: f"Specify the user by '{id_key}'."})
        if value[id_key] is None:
            return None
        for user in self.users.values():
            if value[id_key] == (user.account_id if self.deployment == "cloud" else user.name):
                return user.handle
        raise JiraRequestError(400, [], {field_name: f"User '{value[id_key]}' does not exist."})

    def _apply_fields(self, issue: FakeIssue, fields: dict[str, Any], version: str) -> None:
        errors: dict[str, str] = {}
        updates: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "summary":
                if not isinstance(value, str) or not value.strip():
                    errors[name] = "You must specify a summary of the issue."
                updates[name] = value
            elif name in {"description", "environment"}:
                if version == "3" and value is not None and not _is_adf(value):
                    errors[name] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
                elif version == "2" and value is not None and not isinstance(value, str):
                    errors[name] = "Operation value must be a string"
                updates[name] = value
            elif name in {"assignee", "reporter"}:
                updates[name] = self._user_from(value, name)
            elif name == "labels":
                updates[name] = list(value or [])
            elif name == "priority":
                updates[name] = self._lookup(
                    PRIORITIES, (value or {}).get("name") or (value or {}).get("id"), "priority"
                )
            elif name.startswith("customfield_"):
                issue.custom[name] = value
            else:
                errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
        if errors:
            raise JiraRequestError(400, [], errors)
        for name, value in updates.items():
            if name == "environment":
                continue
            setattr(issue, name, value)

    def _on_assign(self, request: Request, key: str, version: str) -> Response:
        with self.lock:
            issue = self._find(key)
            issue.assignee = self._user_from(self._body(request), "assignee")
            issue.updated = self._touch()
            return self._json(204, None)

    # -- endpoints: comments -------------------------------------------------------------------------
    def _on_comments(self, request: Request, key: str, version: str) -> Response:
        with self.lock:
            issue = self._find(key)
            if request.method == "POST":
                body = self._body(request)
                text = body.get("body")
                if version == "3" and not _is_adf(text):
                    raise JiraRequestError(
                        400,
                        ["INVALID_INPUT"],
                        {
                            "comment": "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
                        },
                    )
                if version == "2" and (not isinstance(text, str) or not text.strip()):
                    raise JiraRequestError(400, [], {"comment": "Comment body can not be empty!"})
                comment_id = self.add_comment(issue.key, text, author="bot", visibility=body.get("visibility"))
                return self._json(201, self._comment_json(issue, self._comment(issue, comment_id), version))
            start = self._int_arg(request, "startAt", 0)
            wanted = self._int_arg(request, "maxResults", 50)
            size = max(0, min(wanted, self.comment_page_cap))
            order = request.args.get("orderBy", "created")
            comments = sorted(issue.comments, key=lambda c: (c.created, int(c.id)), reverse=order.startswith("-"))
            page = comments[start : start + size]
            return self._json(
                200,
                {
                    "startAt": start,
                    "maxResults": size,
                    "total": len(comments),
                    "comments": [self._comment_json(issue, c, version) for c in page],
                },
            )

    def _on_comment(self, request: Request, key: str, comment_id: str, version: str) -> Response:
        with self.lock:
            issue = self._find(key)
            try:
                comment = self._comment(issue, comment_id)
            except KeyError:
                raise JiraRequestError(404, [f"Can not find a comment for the id: {comment_id}."]) from None
            if request.method == "GET":
                return self._json(200, self._comment_json(issue, comment, version))
            if request.method == "DELETE":
                self.delete_comment(issue.key, comment_id)
                return self._json(204, None)
            self.update_comment(issue.key, comment_id, self._body(request).get("body"))
            return self._json(200, self._comment_json(issue, comment, version))

    @staticmethod
    def _int_arg(request: Request, name: str, default: int) -> int:
        raw = request.args.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise JiraRequestError(400, [f"The value '{raw}' is invalid for the '{name}' parameter."]) from None
        if value < 0:
            raise JiraRequestError(400, [f"The '{name}' parameter must not be negative."])
        return value

    # -- endpoints: transitions ------------------------------------------------------------------------
    def _on_transitions(self, request: Request, key: str, version: str) -> Response:
        with self.lock:
            issue = self._find(key)
            available = [t for t in TRANSITIONS if issue.status in t.sources]
            if request.method == "GET":
                with_fields = "transitions.fields" in (request.args.get("expand") or "")
                return self._json(
                    200,
                    {
                        "expand": "transitions",
                        "transitions": [self._transition_json(t, version, with_fields) for t in available],
                    },
                )
            body = self._body(request)
            transition_id = str((body.get("transition") or {}).get("id") or "")
            chosen = next((t for t in available if t.id == transition_id), None)
            if chosen is None:
                raise JiraRequestError(400, [f"Transition id '{transition_id}' is not valid for this issue."])
            fields = body.get("fields") or {}
            resolution = fields.get("resolution") if isinstance(fields, dict) else None
            if chosen.needs_resolution and not resolution:
                raise JiraRequestError(400, [], {"resolution": "Resolution is required."})
            issue.status = chosen.to
            if STATUSES[chosen.to].category == "done":
                name = (resolution or {}).get("name") or (resolution or {}).get("id") or "Done"
                issue.resolution = self._lookup(RESOLUTIONS, name, "resolution")
                issue.resolution_date = self._touch()
            else:
                issue.resolution = issue.resolution_date = None
            issue.updated = self._touch()
            return self._json(204, None)

    def _transition_json(self, transition: FakeTransition, version: str, with_fields: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": transition.id,
            "name": transition.name,
            "to": self._status_json(transition.to, version),
            "hasScreen": transition.needs_resolution,
            "isGlobal": False,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
            "isLooped": False,
        }
        if with_fields:
            data["fields"] = (
                {
                    "resolution": {
                        "required": True,
                        "schema": {"type": "resolution", "system": "resolution"},
                        "name": "Resolution",
                        "key": "resolution",
                        "hasDefaultValue": False,
                        "operations": ["set"],
                        "allowedValues": [
                            {"self": f"{self.base_url}/rest/api/{version}/resolution/{id_}", "id": id_, "name": name}
                            for id_, name in sorted(RESOLUTIONS.items(), key=lambda kv: kv[1] != "Fixed")
                        ],
                    }
                }
                if transition.needs_resolution
                else {}
            )
        return data

    # -- endpoints: search -----------------------------------------------------------------------------
    def _search_params(self, request: Request) -> dict[str, Any]:
        if request.method == "POST":
            return self._body(request)
        params: dict[str, Any] = dict(request.args.items())
        for name in ("maxResults", "startAt"):
            if name in params:
                params[name] = self._int_arg(request, name, 0)
        return params

    def _on_search_offset(self, request: Request, version: str) -> Response:
        """`/rest/api/2/search`: Data Center's startAt/total paging; removed on Cloud (CHANGE-2046)."""
        if self.deployment == "cloud":
            raise JiraRequestError(
                410,
                ["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
                 "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"],
            )  # fmt: skip
        params = self._search_params(request)
        start = int(params.get("startAt") or 0)
        size = max(0, min(int(params.get("maxResults", 50)), self.search_page_cap))
        with self.lock:
            hits = self.search(str(params.get("jql") or ""))
            wanted = self._wanted_fields(params.get("fields"), list(NAVIGABLE_FIELDS))
            page = [
                self._issue_json(self._as_read(issue, search=True), version, wanted)
                for issue in hits[start : start + size]
            ]
        return self._json(
            200, {"expand": "schema,names", "startAt": start, "maxResults": size, "total": len(hits), "issues": page}
        )

    def _on_search_token(self, request: Request, version: str) -> Response:
        """Cloud's enhanced search: `nextPageToken` paging, no total; only ids unless `fields` is given."""
        if self.deployment != "cloud":
            raise NotFound()
        params = self._search_params(request)
        jql = str(params.get("jql") or "")
        size = max(1, min(int(params.get("maxResults") or 50), self.search_page_cap))
        offset = self._decode_token(params.get("nextPageToken"), jql)
        with self.lock:
            hits = self.search(jql)
            wanted = self._wanted_fields(params.get("fields"), [])
            page = hits[offset : offset + size]
            issues = []
            for issue in page:
                data = self._issue_json(self._as_read(issue, search=True), version, wanted)
                if not wanted:
                    data = {"id": issue.id}
                issues.append(data)
        result: dict[str, Any] = {"issues": issues}
        is_last = offset + len(page) >= len(hits)
        if not is_last:
            result["nextPageToken"] = self._encode_token(jql, offset + len(page))
        if not self.omit_is_last:
            result["isLast"] = is_last
        return self._json(200, result)

    @staticmethod
    def _encode_token(jql: str, offset: int) -> str:
        raw = json.dumps({"q": hashlib.sha1(jql.encode()).hexdigest()[:12], "o": offset}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_token(token: Any, jql: str) -> int:
        if not token:
            return 0
        try:
            data = json.loads(base64.urlsafe_b64decode(str(token) + "=" * (-len(str(token)) % 4)))
            if data["q"] != hashlib.sha1(jql.encode()).hexdigest()[:12]:
                raise ValueError("token for another query")
            return int(data["o"])
        except (ValueError, KeyError, TypeError):
            raise JiraRequestError(400, ["The provided next page token is invalid or expired."]) from None

    def _on_myself(self, request: Request, version: str) -> Response:
        return self._json(200, self._user_json(self.users["bot"], version))

    # -- admin endpoints (for tests in other processes) ------------------------------------------------
    def _on_admin_stats(self, request: Request) -> Response:
        return self._json(200, self.stats())

    def _on_admin_issues(self, request: Request) -> Response:
        if request.method == "GET":
            with self.lock:
                return self._json(200, {"keys": list(self.issues)})
        body = self._body(request)
        summary = body.pop("summary", "New issue")
        try:
            key = self.add_issue(summary, **body)
        except (TypeError, ValueError) as exc:
            raise JiraRequestError(400, [str(exc)]) from None
        return self._json(201, {"key": key})

    def _on_admin_issue(self, request: Request, key: str) -> Response:
        try:
            if request.method == "DELETE":
                self.delete_issue(key)
            else:
                self.update_issue(key, **self._body(request))
        except KeyError:
            raise JiraRequestError(404, [f"no issue {key}"]) from None
        except (TypeError, ValueError) as exc:
            raise JiraRequestError(400, [str(exc)]) from None
        return self._json(204, None)

    def _on_admin_comments(self, request: Request, key: str) -> Response:
        body = self._body(request)
        try:
            comment_id = self.add_comment(
                key,
                body.get("body", ""),
                author=body.get("author", "ann"),
                visibility=body.get("visibility"),
                jsd_public=body.get("jsdPublic"),
            )
        except KeyError:
            raise JiraRequestError(404, [f"no issue {key}"]) from None
        return self._json(201, {"id": comment_id})

    def _on_admin_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
            return self._json(204, None)
        body = self._body(request)
        self.inject(
            int(body["status"]),
            path=body.get("path"),
            method=body.get("method"),
            times=body.get("times", 1),
            headers=body.get("headers"),
            body=body.get("body"),
        )
        return self._json(201, {})

    def _on_admin_lag(self, request: Request) -> Response:
        body = self._body(request)
        probability, seed = float(body.get("probability", 0.0)), int(body.get("seed", 0))
        self.lag_reads(probability, seed, searches_only=bool(body.get("searches_only", False)))
        return self._json(204, None)

    def _on_admin_webhooks(self, request: Request) -> Response:
        body = self._body(request)
        payload_body, headers = self.signed_webhook(
            str(body["event"]), str(body["key"]), str(body.get("secret", "")), comment_id=body.get("comment_id")
        )
        return self._json(200, {"body": payload_body.decode(), "headers": headers})


# -- serving ------------------------------------------------------------------------------------------
RunningFakeJira = RunningFake[FakeJira]


def start_fake_jira(
    fake: FakeJira | None = None, *, host: str = "127.0.0.1", port: int = 0, issues: int = 0, **options: Any
) -> RunningFakeJira:
    """Serve `fake` (or a new one with `options`, seeded with `issues` issues) in a daemon thread."""
    fake = fake or FakeJira(**options)
    if issues:
        fake.seed(issues)
    return serve(fake, host=host, port=port, name="fake-jira")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a fake Jira (Cloud v3 or Data Center v2) with generated issues."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as JIRA_URL=...)")
    parser.add_argument("--deployment", choices=DEPLOYMENTS, default="cloud")
    parser.add_argument("--issues", type=int, default=0, help="generate this many issues (with comments)")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--timezone", default="UTC", help="the API user's time zone (timestamps and JQL dates)")
    parser.add_argument("--search-page-cap", type=int, default=100)
    parser.add_argument("--comment-page-cap", type=int, default=100)
    args = parser.parse_args(argv)
    running = start_fake_jira(
        host=args.host,
        port=args.port,
        issues=args.issues,
        deployment=args.deployment,
        username=args.username,
        token=args.token,
        timezone_name=args.timezone,
        search_page_cap=args.search_page_cap,
        comment_page_cap=args.comment_page_cap,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"JIRA_URL={running.url}", flush=True)
    print(f"JIRA_DEPLOYMENT={args.deployment}", flush=True)
    stop.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "STATUSES",
    "TRANSITIONS",
    "USERS",
    "FakeJira",
    "RunningFakeJira",
    "jira_time",
    "start_fake_jira",
    "text_as_adf",
]

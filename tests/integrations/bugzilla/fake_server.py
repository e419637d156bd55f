"""A stateful fake Bugzilla 5.0 REST server over real HTTP, built from the recorded samples.

Recorded from a real Bugzilla 5.0.4.1 (see `samples/` and ../shared/reference/bugzilla/README.md); the
shape test (`test_fake_shapes.py`) keeps the fake's answers in those shapes. Quirks it reproduces:

* auth: `api_key` / `Bugzilla_api_key` in the query string or `"api_key"` in a JSON body. Upstream ignores
  the `X-BUGZILLA-API-KEY` header and Basic auth (the request reads as anonymous); the `bmo` flavour
  honours the header and has `/rest/whoami`. A key it does not know is 400, code 306.
* errors are `{"error":true,"code":N,"message":..,"documentation":..}` with the recorded HTTP statuses.
* search: `last_change_time` inclusive, no default order (ids come back in descending order unless
  `order` says otherwise), no total, `offset` needs `limit`, repeated parameters OR-ed, `fN/oN/vN` charts.
* comments: count 0 is the description, private comments only for insiders (gaps in `count`), one
  request for many bugs with `GET /rest/bug/N/comment?ids=M&ids=K`.
* writes: create needs `op_sys`/`rep_platform`, the 5.0 workflow with resolutions, 410 when anonymous.
* faults: `inject(429, ...)` (bugzilla.mozilla.org answers an HTML 429 without Retry-After), 503, ...
* the bugzilla.mozilla.org Webhooks extension payload (`webhook_payload`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.faults import Faults
from tests.fakes.serving import FakeApp, RunningFake, serve

ADMIN_KEY = "fake-bugzilla-admin-key-0123456789abcdef"
DEV_KEY = "fake-bugzilla-dev-key-0123456789abcdef"
DOCUMENTATION = "https://bugzilla.readthedocs.org/en/5.0/api/"
GENERATED_START = datetime(2024, 1, 1, tzinfo=UTC)
INSIDER_GROUP = "admin"  # the recorded server's `insidergroup`
DEFAULT_PRODUCT = "TestProduct"
DEFAULT_COMPONENT = "TestComponent"
OP_SYSES = ("All", "Windows", "Mac OS", "Linux", "Other")
PLATFORMS = ("All", "PC", "Macintosh", "Other")

# The default 5.0 workflow (recorded `/rest/field/bug/bug_status`): status -> statuses it may change to.
WORKFLOW: dict[str | None, tuple[str, ...]] = {
    None: ("UNCONFIRMED", "CONFIRMED", "IN_PROGRESS"),  # what a new bug may start as
    "UNCONFIRMED": ("CONFIRMED", "IN_PROGRESS", "RESOLVED"),
    "CONFIRMED": ("IN_PROGRESS", "RESOLVED"),
    "IN_PROGRESS": ("CONFIRMED", "RESOLVED"),
    "RESOLVED": ("UNCONFIRMED", "CONFIRMED", "VERIFIED"),
    "VERIFIED": ("UNCONFIRMED", "CONFIRMED"),
}
OPEN_STATUSES = frozenset({"UNCONFIRMED", "CONFIRMED", "IN_PROGRESS"})
RESOLUTIONS = ("FIXED", "INVALID", "WONTFIX", "DUPLICATE", "WORKSFORME")
CUSTOM_FIELDS = ("cf_customer", "cf_severity_score")
_RELATIVE_TIME = re.compile(r"^[+-]?\d+[smhdwMy]$")

# HTTP status per Bugzilla error code, as recorded (and the documented 102 -> 401).
STATUS_OF_CODE = {
    32614: 404, 50: 400, 51: 404, 54: 400, 56: 400, 101: 404, 102: 401, 106: 403, 108: 400,
    113: 401, 121: 400, 122: 400, 123: 400, 306: 400, 410: 401, 505: 401,
}  # fmt: skip


def bz_time(value: datetime) -> str:
    """Bugzilla's REST time format: UTC, whole seconds, `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hook_time(value: datetime) -> str:
    """The Webhooks extension's time format: UTC without a zone suffix."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def stored_text(text: str) -> str:
    """How Bugzilla stores comment text: CRLF -> LF, trailing whitespace trimmed."""
    return str(text).replace("\r\n", "\n").rstrip()


class BugzillaError(Exception):
    def __init__(self, code: int, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_OF_CODE.get(code, 400)


@dataclass
class FakeUser:
    id: int
    login: str
    real_name: str
    api_key: str | None
    groups: set[str] = field(default_factory=set)

    @property
    def insider(self) -> bool:
        return INSIDER_GROUP in self.groups


@dataclass
class FakeComment:
    id: int
    bug_id: int
    count: int
    text: str
    creator: str
    time: datetime
    is_private: bool = False


@dataclass
class FakeBug:
    id: int
    summary: str
    product: str
    component: str
    creator: str
    assigned_to: str
    creation_time: datetime
    last_change_time: datetime
    status: str = "CONFIRMED"
    resolution: str = ""
    version: str = "unspecified"
    op_sys: str = "All"
    platform: str = "All"
    priority: str = "---"
    severity: str = "enhancement"
    alias: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # security groups: only their members see the bug
    custom: dict[str, Any] = field(default_factory=dict)
    comments: list[FakeComment] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    dupe_of: int | None = None


@dataclass
class SeenRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    user: str | None  # the login the request was served as (None: anonymous)


class FakeBugzilla(FakeApp):
    """The server's state (users, products, bugs, comments) and its REST API as a WSGI app."""

    def __init__(
        self,
        *,
        flavor: str = "upstream",
        clock: Callable[[], datetime] | None = None,
        max_search_results: int = 10000,
    ) -> None:
        if flavor not in ("upstream", "bmo"):
            raise ValueError("flavor is 'upstream' or 'bmo'")
        self.flavor = flavor
        self.base_url = ""
        self.lock = threading.RLock()
        self.max_search_results = max_search_results
        self._clock = clock or (lambda: datetime.now(UTC))
        self.users: dict[str, FakeUser] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.bugs: dict[int, FakeBug] = {}
        self.next_bug_id = 1
        self.next_comment_id = 1
        self.faults = Faults(
            {
                429: "<html><body><h1>Too Many Requests</h1></body></html>",
                503: "<html><body><h1>Service Unavailable</h1></body></html>",
                500: "<html><body><h1>Internal Server Error</h1></body></html>",
            }
        )
        self.requests: list[SeenRequest] = []
        self.after_request: list[Callable[[FakeBugzilla, Request], None]] = []
        self.add_user("admin@example.com", "Probe Admin", ADMIN_KEY, groups={"admin", "editbugs", "canconfirm"})
        self.add_user("dev@example.com", "Dev Example", DEV_KEY, groups={"editbugs"})
        self.add_product(DEFAULT_PRODUCT, [DEFAULT_COMPONENT])
        self.add_product("OtherProduct", ["General"])
        self.url_map = self._routes()

    # -- state helpers (for tests) -------------------------------------------------------------------------
    def now(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def add_user(
        self, login: str, real_name: str = "", api_key: str | None = None, groups: Iterable[str] = ()
    ) -> FakeUser:
        with self.lock:
            user = FakeUser(len(self.users) + 1, login, real_name or login, api_key, set(groups))
            self.users[login] = user
            return user

    def add_product(self, name: str, components: Iterable[str], versions: Iterable[str] = ("unspecified",)) -> None:
        with self.lock:
            self.products[name] = {
                "id": len(self.products) + 1,
                "components": list(components),
                "versions": list(versions),
            }

    def add_bug(
        self,
        summary: str,
        *,
        description: str = "",
        product: str = DEFAULT_PRODUCT,
        component: str | None = None,
        creator: str = "admin@example.com",
        assigned_to: str | None = None,
        status: str = "CONFIRMED",
        resolution: str = "",
        description_private: bool = False,
        at: datetime | None = None,
        groups: Iterable[str] = (),
        **custom: Any,
    ) -> int:
        with self.lock:
            when = (at or self.now()).replace(microsecond=0)
            bug = FakeBug(
                id=self.next_bug_id,
                summary=summary.strip(),
                product=product,
                component=component or self.products[product]["components"][0],
                creator=creator,
                assigned_to=assigned_to or creator,
                creation_time=when,
                last_change_time=when,
                status=status,
                resolution=resolution,
                groups=list(groups),
                custom={name: custom.get(name, "") for name in CUSTOM_FIELDS},
            )
            self.next_bug_id += 1
            self.bugs[bug.id] = bug
            self._append_comment(bug, description, creator, when, description_private)
            return bug.id

    def add_comment(
        self,
        bug_id: int,
        text: str,
        *,
        author: str = "admin@example.com",
        private: bool = False,
        at: datetime | None = None,
    ) -> int:
        with self.lock:
            bug = self.bugs[bug_id]
            when = (at or self.now()).replace(microsecond=0)
            comment = self._append_comment(bug, text, author, when, private)
            bug.last_change_time = max(bug.last_change_time, when)
            return comment.id

    def update_bug(self, bug_id: int, **changes: Any) -> None:
        """Change fields directly (no workflow checks) and bump `last_change_time`."""
        with self.lock:
            bug = self.bugs[bug_id]
            for name, value in changes.items():
                if name in CUSTOM_FIELDS:
                    bug.custom[name] = value
                else:
                    setattr(bug, name, value)
            bug.last_change_time = self.now()

    def hide_bug(self, bug_id: int, group: str = "security") -> None:
        """Put the bug in a security group nobody but its members sees (like a bug made private)."""
        self.update_bug(bug_id, groups=[group])

    def delete_bug(self, bug_id: int) -> None:
        with self.lock:
            del self.bugs[bug_id]

    def seed(self, count: int, *, comments: int = 2, products: Iterable[str] = (DEFAULT_PRODUCT,)) -> list[int]:
        """`count` bugs spread over `products`, each with a description and `comments` comments."""
        names = list(products)
        ids = []
        for index in range(count):
            at = GENERATED_START + timedelta(minutes=index)
            bug_id = self.add_bug(
                f"Generated bug {index + 1}",
                description=f"Description of generated bug {index + 1}",
                product=names[index % len(names)],
                at=at,
                status=("UNCONFIRMED", "CONFIRMED", "IN_PROGRESS")[index % 3],
            )
            for number in range(comments):
                self.add_comment(bug_id, f"Comment {number + 1} on bug {bug_id}", at=at + timedelta(seconds=number + 1))
            ids.append(bug_id)
        return ids

    def request_count(self, path_pattern: str = "") -> int:
        with self.lock:
            return sum(1 for seen in self.requests if re.search(path_pattern, seen.path))

    def _append_comment(self, bug: FakeBug, text: str, author: str, when: datetime, private: bool) -> FakeComment:
        text = stored_text(text)
        comment = FakeComment(self.next_comment_id, bug.id, len(bug.comments), text, author, when, private)
        self.next_comment_id += 1
        bug.comments.append(comment)
        return comment

    # -- visibility --------------------------------------------------------------------------------------
    @staticmethod
    def can_see(user: FakeUser | None, bug: FakeBug) -> bool:
        return not bug.groups or (user is not None and bool(user.groups & set(bug.groups)))

    def _visible_bug(self, user: FakeUser | None, id_or_alias: str) -> FakeBug:
        bug = self._bug_by_id_or_alias(id_or_alias)
        if not self.can_see(user, bug):
            raise BugzillaError(102, f"You are not authorized to access bug #{bug.id}.")
        return bug

    def _bug_by_id_or_alias(self, id_or_alias: str) -> FakeBug:
        value = str(id_or_alias).strip()
        if value.isdigit():
            bug = self.bugs.get(int(value))
            if bug is None:
                raise BugzillaError(101, f"Bug #{value} does not exist.")
            return bug
        for bug in self.bugs.values():
            if value in bug.alias:
                return bug
        raise BugzillaError(100, f"'{value}' is not a valid bug number nor an alias to a bug.", 400)

    # -- JSON shapes ------------------------------------------------------------------------------------------
    def _user_detail(self, login: str) -> dict[str, Any]:
        user = self.users.get(login)
        return {
            "email": login,
            "id": user.id if user else 0,
            "name": login,
            "real_name": user.real_name if user else "",
        }

    def bug_json(self, bug: FakeBug, user: FakeUser | None, *, token: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "alias": list(bug.alias),
            "assigned_to": bug.assigned_to,
            "assigned_to_detail": self._user_detail(bug.assigned_to),
            "blocks": [],
            "cc": [],
            "cc_detail": [],
            "classification": "Unclassified",
            "component": bug.component,
            "creation_time": bz_time(bug.creation_time),
            "creator": bug.creator,
            "creator_detail": self._user_detail(bug.creator),
            "deadline": None,
            "depends_on": [],
            "dupe_of": bug.dupe_of,
            "flags": [],
            "groups": list(bug.groups),
            "id": bug.id,
            "is_cc_accessible": True,
            "is_confirmed": bug.status != "UNCONFIRMED",
            "is_creator_accessible": True,
            "is_open": bug.status in OPEN_STATUSES,
            "keywords": [],
            "last_change_time": bz_time(bug.last_change_time),
            "op_sys": bug.op_sys,
            "platform": bug.platform,
            "priority": bug.priority,
            "product": bug.product,
            "qa_contact": "",
            "resolution": bug.resolution,
            "see_also": [],
            "severity": bug.severity,
            "status": bug.status,
            "summary": bug.summary,
            "target_milestone": "---",
            "url": "",
            "version": bug.version,
            "whiteboard": "",
            **bug.custom,
        }
        if user is not None:  # time tracking is for logged-in users; the update token only on GET /bug/N
            body.update(actual_time=0, estimated_time=0, remaining_time=0)
            if token:
                body["update_token"] = "REDACTED"
        return body

    @staticmethod
    def comment_json(comment: FakeComment) -> dict[str, Any]:
        return {
            "attachment_id": None,
            "bug_id": comment.bug_id,
            "count": comment.count,
            "creation_time": bz_time(comment.time),
            "creator": comment.creator,
            "id": comment.id,
            "is_private": comment.is_private,
            "tags": [],
            "text": comment.text,
            "time": bz_time(comment.time),
        }

    @staticmethod
    def _filter_fields(item: dict[str, Any], request: Request) -> dict[str, Any]:
        include = _split(request.args.getlist("include_fields"))
        exclude = set(_split(request.args.getlist("exclude_fields")))
        if include and "_default" not in include and "_all" not in include:
            item = {k: v for k, v in item.items() if k in include}
        return {k: v for k, v in item.items() if k not in exclude}

    # -- webhooks (bugzilla.mozilla.org's Webhooks extension) ---------------------------------------------
    def webhook_payload(
        self,
        bug_id: int,
        *,
        target: str = "bug",
        action: str = "modify",
        changes: list[dict[str, str]] | None = None,
        comment_id: int | None = None,
        webhook_name: str = "collector",
        webhook_id: int = 1,
        by: str = "admin@example.com",
    ) -> dict[str, Any]:
        """What the Webhooks extension POSTs for an event on `bug_id` (trimmed to ids for private things)."""
        with self.lock:
            bug = self.bugs[bug_id]
            user = self.users.get(by)
            event: dict[str, Any] = {
                "action": action,
                "target": target,
                "routing_key": (
                    f"{target}.{action}"
                    + (":" + ",".join(c["field"] for c in changes) if action == "modify" and changes else "")
                ),
                "time": hook_time(self.now()),
                "user": {"id": user.id if user else 0, "login": by, "real_name": user.real_name if user else ""},
            }
            if action == "modify":
                event["changes"] = list(changes or [])
            comment = next((c for c in bug.comments if c.id == comment_id), None) if comment_id else None
            if target == "comment" and comment is None and bug.comments:
                comment = bug.comments[-1]
            if bug.groups:
                bug_body: dict[str, Any] = {"id": bug.id, "is_private": True}
                event.pop("changes", None)
            elif comment is not None and comment.is_private:
                bug_body = {"id": bug.id, "is_private": False, "comment": {"id": comment.id, "is_private": True}}
                event.pop("changes", None)
            else:
                bug_body = {
                    "id": bug.id,
                    "alias": bug.alias[0] if bug.alias else None,
                    "assigned_to": bug.assigned_to,
                    "assigned_to_detail": {
                        k: v for k, v in self._user_detail(bug.assigned_to).items() if k in ("id", "real_name")
                    }
                    | {"login": bug.assigned_to},
                    "classification": "Unclassified",
                    "component": bug.component,
                    "creation_time": hook_time(bug.creation_time),
                    "creator": bug.creator,
                    "flags": [],
                    "is_private": False,
                    "keywords": [],
                    "last_change_time": hook_time(bug.last_change_time),
                    "operating_system": bug.op_sys,
                    "platform": bug.platform,
                    "priority": "" if bug.priority == "---" else bug.priority,
                    "product": bug.product,
                    "resolution": bug.resolution,
                    "see_also": [],
                    "severity": bug.severity,
                    "status": bug.status,
                    "summary": bug.summary,
                    "target_milestone": "---",
                    "type": "defect",
                    "url": "",
                    "version": bug.version,
                    "whiteboard": "",
                }
                if target == "comment" and comment is not None:
                    bug_body["comment"] = {
                        "id": comment.id,
                        "number": comment.count,
                        "body": comment.text,
                        "creation_time": hook_time(comment.time),
                        "is_private": False,
                    }
            return {"webhook_name": webhook_name, "webhook_id": webhook_id, "event": event, "bug": bug_body}

    def webhook_request(
        self, bug_id: int, *, header: str = "Authorization", value: str = "", **kwargs: Any
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one delivery: JSON plus the one admin-configured header, no signature."""
        body = json.dumps(self.webhook_payload(bug_id, **kwargs)).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if value:
            headers[header] = value
        return body, headers

    # -- HTTP -------------------------------------------------------------------------------------------
    def _routes(self) -> Map:
        return Map(
            [
                Rule("/rest/version", endpoint="version", methods=["GET"]),
                Rule("/rest/extensions", endpoint="extensions", methods=["GET"]),
                Rule("/rest/time", endpoint="time", methods=["GET"]),
                Rule("/rest/timezone", endpoint="timezone", methods=["GET"]),
                Rule("/rest/whoami", endpoint="whoami", methods=["GET"]),
                Rule("/rest/valid_login", endpoint="valid_login", methods=["GET"]),
                Rule("/rest/user", endpoint="users", methods=["GET"]),
                Rule("/rest/product_accessible", endpoint="product_accessible", methods=["GET"]),
                Rule("/rest/product", endpoint="products", methods=["GET"]),
                Rule("/rest/field/bug/bug_status", endpoint="field_status", methods=["GET"]),
                Rule("/rest/bug", endpoint="bugs", methods=["GET", "POST"]),
                Rule("/rest/bug/comment/<int:comment_id>", endpoint="comment_by_id", methods=["GET"]),
                Rule("/rest/bug/<bug>", endpoint="bug", methods=["GET", "PUT"]),
                Rule("/rest/bug/<bug>/comment", endpoint="comments", methods=["GET", "POST"]),
                Rule("/rest/bug/<bug>/history", endpoint="history", methods=["GET"]),
            ]
        )

    def handle(self, request: Request) -> Response:
        fault = self.faults.take(request.method, request.path)
        try:
            body = self._body(request) if request.method in ("POST", "PUT") else {}
            user = self._authenticate(request, body)
        except BugzillaError as exc:
            user, body = None, {}
            error = exc
        else:
            error = None
        with self.lock:
            self.requests.append(
                SeenRequest(
                    request.method,
                    request.path,
                    {k: request.args.getlist(k) for k in request.args},
                    dict(request.headers),
                    user.login if user else None,
                )
            )
        if fault is not None:
            if isinstance(fault.body, (dict, list)):
                return self._json(fault.status, fault.body, fault.headers)
            return Response(fault.body or "", status=fault.status, headers=fault.headers, content_type="text/html")
        try:
            if error is not None:
                raise error
            endpoint, args = self.url_map.bind_to_environ(request.environ).match()
            with self.lock:
                return getattr(self, f"_on_{endpoint}")(request, user, body, **args)
        except BugzillaError as exc:
            return self._error(exc)
        except MethodNotAllowed:
            return self._error(
                BugzillaError(
                    32614, f"A REST API resource was not found for '{request.method} {request.path[5:]}'.", 404
                )
            )
        except HTTPException:
            return self._error(
                BugzillaError(
                    32614, f"A REST API resource was not found for '{request.method} {request.path[5:]}'.", 404
                )
            )

    def _authenticate(self, request: Request, body: dict[str, Any]) -> FakeUser | None:
        key = request.args.get("api_key") or request.args.get("Bugzilla_api_key") or body.get("api_key")
        if not key and self.flavor == "bmo":
            key = request.headers.get("X-BUGZILLA-API-KEY")
        if not key:
            return None  # upstream ignores the header and Basic auth: anonymous
        with self.lock:
            user = next((u for u in self.users.values() if u.api_key and u.api_key == key), None)
        if user is None:
            raise BugzillaError(306, "The API key you specified is invalid. Please check that you typed it correctly.")
        return user

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        raw = request.get_data()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise BugzillaError(32700, "The JSON body could not be parsed.", 400) from None
        if not isinstance(body, dict):
            raise BugzillaError(32600, "The request body must be a JSON object.", 400)
        return body

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(
            json.dumps(body, ensure_ascii=False),
            status=status,
            headers=headers,
            content_type="application/json; charset=UTF-8",
        )

    def _error(self, exc: BugzillaError) -> Response:
        return self._json(
            exc.status, {"code": exc.code, "documentation": DOCUMENTATION, "error": True, "message": exc.message}
        )

    @staticmethod
    def _require_login(user: FakeUser | None) -> FakeUser:
        if user is None:
            raise BugzillaError(410, "You must log in before using this part of Bugzilla.")
        return user

    # -- endpoints: server, users, products ----------------------------------------------------------------
    def _on_version(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        return self._json(200, {"version": "5.0.4.1" if self.flavor == "upstream" else "20240101.1"})

    def _on_extensions(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        extensions = {"Webhooks": {"version": "1.0"}, "Push": {"version": "1.0"}} if self.flavor == "bmo" else {}
        return self._json(200, {"extensions": extensions})

    def _on_time(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        now = bz_time(self.now())
        return self._json(
            200,
            {
                "db_time": now,
                "tz_name": "UTC",
                "tz_offset": "+0000",
                "tz_short_name": "UTC",
                "web_time": now,
                "web_time_utc": now,
            },
        )

    def _on_timezone(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        return self._json(200, {"timezone": "+0000"})

    def _on_whoami(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        if self.flavor == "upstream":
            raise BugzillaError(32614, "A REST API resource was not found for 'GET /whoami'.", 404)
        user = self._require_login(user)
        return self._json(200, {"id": user.id, "login": user.login, "name": user.login, "real_name": user.real_name})

    def _on_valid_login(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        login = request.args.get("login")
        if not login:
            raise BugzillaError(
                50, "The function User.valid_login requires a login argument, and that argument was not set."
            )
        return self._json(200, {"result": user is not None and user.login == login})

    def _on_users(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        names = _split(request.args.getlist("names"))
        ids = _split(request.args.getlist("ids"))
        match = request.args.getlist("match")
        if not (names or ids or match):
            raise BugzillaError(50, "The function User.get requires a names, ids or match argument.")
        if user is None and ids:
            raise BugzillaError(
                505, 'Logged-out users cannot use the "ids" argument to this function to access any user information.'
            )
        if user is None and match:
            raise BugzillaError(
                505, 'Logged-out users cannot use the "match" argument to this function to access any user information.'
            )
        found = [u for u in self.users.values() if u.login in names or str(u.id) in ids]
        for pattern in match:
            found += [u for u in self.users.values() if pattern.lower() in (u.login + u.real_name).lower()]
        limit = int(request.args.get("limit") or 0)
        result, seen = [], set()
        for other in found:
            if other.id in seen:
                continue
            seen.add(other.id)
            item: dict[str, Any] = {"id": other.id, "name": other.login, "real_name": other.real_name}
            if user is not None:
                item.update(can_login=True, email=other.login, email_enabled=True, login_denied_text="")
            if user is not None and (user.id == other.id or user.insider):
                item["groups"] = [
                    {"description": name, "id": index + 1, "name": name}
                    for index, name in enumerate(sorted(other.groups))
                ]
                item["saved_searches"], item["saved_reports"] = [], []
            result.append(self._filter_fields(item, request))
        return self._json(200, {"users": result[:limit] if limit else result})

    def _on_product_accessible(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        return self._json(200, {"ids": sorted((p["id"] for p in self.products.values()), reverse=True)})

    def _on_products(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        names = set(_split(request.args.getlist("names")))
        ids = set(_split(request.args.getlist("ids")))
        chosen = [
            (name, product)
            for name, product in self.products.items()
            if name in names or str(product["id"]) in ids or request.args.get("type") == "accessible"
        ]
        return self._json(
            200,
            {
                "products": [
                    {
                        "classification": "Unclassified",
                        "components": [
                            {
                                "default_assigned_to": "admin@example.com",
                                "default_qa_contact": "",
                                "description": f"{component} of {name}",
                                "flag_types": {"attachment": [], "bug": []},
                                "id": product["id"] * 100 + index,
                                "is_active": True,
                                "name": component,
                                "sort_key": 0,
                            }
                            for index, component in enumerate(product["components"])
                        ],
                        "default_milestone": "---",
                        "description": f"The {name} product",
                        "has_unconfirmed": True,
                        "id": product["id"],
                        "is_active": True,
                        "milestones": [{"id": 1, "is_active": True, "name": "---", "sort_key": 0}],
                        "name": name,
                        "versions": [
                            {"id": index + 1, "is_active": True, "name": version, "sort_key": 0}
                            for index, version in enumerate(product["versions"])
                        ],
                    }
                    for name, product in chosen
                ]
            },
        )

    def _on_field_status(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        order = [None, "UNCONFIRMED", "CONFIRMED", "IN_PROGRESS", "RESOLVED", "VERIFIED"]
        values = [
            {
                "can_change_to": [{"comment_required": False, "name": target} for target in WORKFLOW[name]],
                "is_open": name is None or name in OPEN_STATUSES,
                "name": name,
                "sort_key": index * 100,
                "sortkey": index * 100,
                "visibility_values": [],
            }
            for index, name in enumerate(order)
        ]
        return self._json(
            200,
            {
                "fields": [
                    {
                        "display_name": "Status",
                        "id": 9,
                        "is_custom": False,
                        "is_mandatory": False,
                        "is_on_bug_entry": False,
                        "name": "bug_status",
                        "type": 2,
                        "value_field": None,
                        "values": values,
                        "visibility_field": None,
                        "visibility_values": [],
                    }
                ]
            },
        )

    # -- endpoints: bugs ------------------------------------------------------------------------------------
    def _on_bug(self, request: Request, user: FakeUser | None, body: dict[str, Any], bug: str) -> Response:
        if request.method == "PUT":
            return self._update(user, body, bug)
        found = self._visible_bug(user, bug)
        return self._json(
            200, {"bugs": [self._filter_fields(self.bug_json(found, user, token=True), request)], "faults": []}
        )

    def _on_bugs(self, request: Request, user: FakeUser | None, body: dict[str, Any]) -> Response:
        if request.method == "POST":
            return self._create(user, body)
        return self._json(
            200, {"bugs": [self._filter_fields(self.bug_json(b, user), request) for b in self._search(request, user)]}
        )

    def _search(self, request: Request, user: FakeUser | None) -> list[FakeBug]:
        args = request.args
        hits = [bug for bug in self.bugs.values() if self.can_see(user, bug)]
        ids = _split(args.getlist("id")) + _split(args.getlist("bug_id"))
        if ids:
            hits = [bug for bug in hits if str(bug.id) in ids]
        for name, attribute in (("product", "product"), ("component", "component"), ("status", "status")):
            wanted = args.getlist(name)
            if wanted:
                hits = [bug for bug in hits if getattr(bug, attribute) in wanted]
        if args.get("last_change_time"):
            since = parse_search_time(args["last_change_time"])
            hits = [bug for bug in hits if bug.last_change_time >= since]  # inclusive
        if args.get("creation_time"):
            since = parse_search_time(args["creation_time"])
            hits = [bug for bug in hits if bug.creation_time >= since]
        index = 1
        while f"f{index}" in args:
            hits = [
                bug
                for bug in hits
                if self._chart(bug, args[f"f{index}"], args.get(f"o{index}", "equals"), args.get(f"v{index}", ""))
            ]
            index += 1
        hits = self._order(hits, args.get("order"))
        limit_raw, offset_raw = args.get("limit"), args.get("offset")
        if offset_raw is not None and limit_raw is None:
            raise BugzillaError(
                50, "The function Bug.search() requires a limit argument, and that argument was not set."
            )
        offset = int(offset_raw or 0)
        limit = self.max_search_results if limit_raw is None else int(limit_raw)
        if limit == 0:
            return hits[offset:]
        return hits[offset : offset + min(limit, self.max_search_results)]

    @staticmethod
    def _chart(bug: FakeBug, field_name: str, operator: str, value: str) -> bool:
        getters: dict[str, Callable[[FakeBug], Any]] = {
            "bug_id": lambda b: b.id,
            "delta_ts": lambda b: b.last_change_time,
            "last_change_time": lambda b: b.last_change_time,
            "product": lambda b: b.product,
            "bug_status": lambda b: b.status,
        }
        if field_name not in getters:
            raise BugzillaError(108, f"Can't use {field_name} as a field name.")
        actual = getters[field_name](bug)
        expected: Any = value
        if field_name == "bug_id":
            expected = int(value)
        elif field_name in ("delta_ts", "last_change_time"):
            expected = parse_search_time(value)
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "equals": lambda a, b: a == b,
            "notequals": lambda a, b: a != b,
            "greaterthan": lambda a, b: a > b,
            "greaterthaneq": lambda a, b: a >= b,
            "lessthan": lambda a, b: a < b,
            "lessthaneq": lambda a, b: a <= b,
        }
        if operator == "anyexact":
            return str(actual) in _split([value])
        if operator not in comparisons:
            raise BugzillaError(108, f"Can't use {operator} as an operator.")
        return comparisons[operator](actual, expected)

    @staticmethod
    def _order(hits: list[FakeBug], order: str | None) -> list[FakeBug]:
        columns = {"bug_id": lambda b: b.id, "changeddate": lambda b: b.last_change_time}
        keys = []
        for part in (order or "").split(","):
            words = part.split()
            if words and words[0] in columns:  # unknown columns are dropped silently
                keys.append((columns[words[0]], len(words) > 1 and words[1].upper() == "DESC"))
        if not keys:
            return sorted(hits, key=lambda b: b.id, reverse=True)  # no default order: never rely on one
        for key, descending in reversed(keys):
            hits = sorted(hits, key=key, reverse=descending)
        return hits

    def _on_comments(self, request: Request, user: FakeUser | None, body: dict[str, Any], bug: str) -> Response:
        if request.method == "POST":
            return self._add_comment(user, body, bug)
        wanted = [bug, *_split(request.args.getlist("ids"))]
        new_since = parse_search_time(request.args["new_since"]) if request.args.get("new_since") else None
        answer: dict[str, Any] = {}
        for id_or_alias in wanted:
            found = self._visible_bug(user, id_or_alias)
            comments = [
                self.comment_json(c)
                for c in found.comments
                if (not c.is_private or (user is not None and user.insider))
                and (new_since is None or c.time > new_since)
            ]
            answer[str(found.id)] = {"comments": comments}
        return self._json(200, {"bugs": answer, "comments": {}})

    def _on_comment_by_id(
        self, request: Request, user: FakeUser | None, body: dict[str, Any], comment_id: int
    ) -> Response:
        for bug in self.bugs.values():
            for comment in bug.comments:
                if comment.id == comment_id:
                    self._visible_bug(user, str(bug.id))
                    if comment.is_private and not (user is not None and user.insider):
                        raise BugzillaError(110, f"Comment {comment_id} is private.", 401)
                    return self._json(200, {"bugs": {}, "comments": {str(comment_id): self.comment_json(comment)}})
        raise BugzillaError(111, f"There is no comment with the id {comment_id}.", 404)

    def _on_history(self, request: Request, user: FakeUser | None, body: dict[str, Any], bug: str) -> Response:
        found = self._visible_bug(user, bug)
        return self._json(200, {"bugs": [{"alias": list(found.alias), "history": list(found.history), "id": found.id}]})

    # -- writes ---------------------------------------------------------------------------------------------
    def _create(self, user: FakeUser | None, body: dict[str, Any]) -> Response:
        user = self._require_login(user)
        product = body.get("product")
        if not product:
            raise BugzillaError(50, "You must select/enter a product.")
        if product not in self.products:
            raise BugzillaError(106, f"Product '{product}' does not exist or you don't have access to it.")
        for name, message in (
            ("component", "You must select/enter a component."),
            ("version", "You must select/enter a version."),
            ("summary", "You must enter a summary for this bug."),
            ("op_sys", "You must select/enter a OS."),
            ("rep_platform", "You must select/enter a Hardware."),
        ):
            if not str(body.get(name) or "").strip():
                raise BugzillaError(50, message)
        if body["component"] not in self.products[product]["components"]:
            raise BugzillaError(51, f"There is no component named '{body['component']}' in the '{product}' product.")
        if body["version"] not in self.products[product]["versions"]:
            raise BugzillaError(51, f"There is no version named '{body['version']}' in the '{product}' product.")
        if body["op_sys"] not in OP_SYSES:
            raise BugzillaError(51, f"There is no OS named '{body['op_sys']}'.")
        if body["rep_platform"] not in PLATFORMS:
            raise BugzillaError(51, f"There is no Hardware named '{body['rep_platform']}'.")
        status = body.get("status") or "CONFIRMED"
        if status not in WORKFLOW:
            raise BugzillaError(51, f"There is no status named '{status}'.")
        if status not in WORKFLOW[None]:
            raise BugzillaError(123, f"A new bug cannot start as {status}.")
        assignee = body.get("assigned_to") or "admin@example.com"
        self._check_user(assignee)
        custom = self._custom_changes(body)
        if body.get("comment_is_private") and not user.insider:
            raise BugzillaError(113, "Sorry, but you are not allowed to (un)mark comments or attachments as private.")
        bug_id = self.add_bug(
            str(body["summary"]),
            description=str(body.get("description") or ""),
            product=product,
            component=body["component"],
            creator=user.login,
            assigned_to=assignee,
            status=status,
            description_private=bool(body.get("comment_is_private")),
            **custom,
        )
        created = self.bugs[bug_id]
        created.version, created.op_sys, created.platform = body["version"], body["op_sys"], body["rep_platform"]
        created.alias = list(body.get("alias") or [])
        return self._json(200, {"id": bug_id})

    def _check_user(self, login: str) -> None:
        if login not in self.users:
            raise BugzillaError(
                51,
                f"There is no user named '{login}'. Either you mis-typed the name or that user has not yet registered for a Bugzilla account.",
            )

    @staticmethod
    def _custom_changes(body: dict[str, Any]) -> dict[str, Any]:
        custom = {k: v for k, v in body.items() if k.startswith("cf_")}
        for name in custom:
            if name not in CUSTOM_FIELDS:
                raise BugzillaError(51, f"There is no field named '{name}'.")
        return custom

    def _update(self, user: FakeUser | None, body: dict[str, Any], bug: str) -> Response:
        user = self._require_login(user)
        targets = [self._visible_bug(user, bug)] + [
            self._visible_bug(user, str(i)) for i in body.get("ids") or [] if str(i) != bug
        ]
        custom = self._custom_changes(body)
        comment = body.get("comment")
        privacy = body.get("comment_is_private") or {}
        if (privacy or (isinstance(comment, dict) and comment.get("is_private"))) and not user.insider:
            raise BugzillaError(113, "Sorry, but you are not allowed to (un)mark comments or attachments as private.")
        if "summary" in body and not str(body["summary"]).strip():
            raise BugzillaError(50, "You must enter a summary for this bug.")
        if "assigned_to" in body:
            self._check_user(str(body["assigned_to"]))
        plans = []
        for target in targets:  # validate everything first: nothing is half-applied
            status, resolution = target.status, target.resolution
            if "status" in body and body["status"] != target.status:
                status = str(body["status"])
                if status not in WORKFLOW:
                    raise BugzillaError(51, f"There is no status named '{status}'.")
                if status not in WORKFLOW[target.status]:
                    raise BugzillaError(
                        123, f"You are not allowed to change the bug status from {target.status} to {status}."
                    )
                if status in OPEN_STATUSES:
                    resolution = ""
            if "resolution" in body and body["resolution"] != resolution:
                if status in OPEN_STATUSES:
                    raise BugzillaError(122, "You cannot set a resolution for open bugs.")
                if body["resolution"] not in RESOLUTIONS:
                    raise BugzillaError(51, f"There is no resolution named '{body['resolution']}'.")
                resolution = str(body["resolution"])
            if status not in OPEN_STATUSES and not resolution:
                raise BugzillaError(121, f"You must specify a resolution when changing the status to {status}.")
            plans.append((target, status, resolution))
        now = self.now()
        answer = []
        for target, status, resolution in plans:
            changes: dict[str, dict[str, str]] = {}

            def change(name: str, old: Any, new: Any, changes: dict[str, dict[str, str]] = changes) -> None:
                if str(old) != str(new):
                    changes[name] = {"added": str(new), "removed": str(old)}

            change("status", target.status, status)
            change("resolution", target.resolution, resolution)
            target.status, target.resolution = status, resolution
            if "summary" in body:
                change("summary", target.summary, str(body["summary"]).strip())
                target.summary = str(body["summary"]).strip()
            if "assigned_to" in body:
                change("assigned_to", target.assigned_to, body["assigned_to"])
                target.assigned_to = str(body["assigned_to"])
            for name, value in custom.items():
                change(name, target.custom.get(name, ""), value)
                target.custom[name] = value
            touched = bool(changes)
            if isinstance(comment, dict) and str(comment.get("body") or "").strip():
                self._append_comment(target, str(comment["body"]), user.login, now, bool(comment.get("is_private")))
                touched = True
            for comment_id, private in privacy.items():
                for existing in target.comments:
                    if str(existing.id) == str(comment_id) and existing.is_private != bool(private):
                        existing.is_private = bool(private)
                        touched = True
            if changes:
                target.history.append(
                    {
                        "changes": [
                            {"added": v["added"], "field_name": k, "removed": v["removed"]} for k, v in changes.items()
                        ],
                        "when": bz_time(now),
                        "who": user.login,
                    }
                )
            if touched:
                target.last_change_time = now
            answer.append(
                {
                    "alias": list(target.alias),
                    "changes": changes,
                    "id": target.id,
                    "last_change_time": bz_time(target.last_change_time),
                }
            )
        return self._json(200, {"bugs": answer})

    def _add_comment(self, user: FakeUser | None, body: dict[str, Any], bug: str) -> Response:
        user = self._require_login(user)
        target = self._visible_bug(user, bug)
        text = str(body.get("comment") or "")
        if not text.strip():
            raise BugzillaError(54, "You must provide a comment.")
        if body.get("is_private") and not user.insider:
            raise BugzillaError(113, "Sorry, but you are not allowed to (un)mark comments or attachments as private.")
        comment = self.add_comment(target.id, text, author=user.login, private=bool(body.get("is_private")))
        return self._json(201, {"id": comment})


def _split(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated parameter values as one flat list."""
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def parse_search_time(value: str) -> datetime:
    """`last_change_time` as Bugzilla's search accepts it (`...Z`, `YYYY-MM-DD HH:MM:SS`, a date, an offset)."""
    text = str(value).strip()
    if _RELATIVE_TIME.match(text):
        raise BugzillaError(56, f"'{text}' is not a legal date.")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BugzillaError(56, f"'{text}' is not a legal date.") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# -- serving ------------------------------------------------------------------------------------------
RunningFakeBugzilla = RunningFake[FakeBugzilla]


def start_fake_bugzilla(
    fake: FakeBugzilla | None = None, *, host: str = "127.0.0.1", port: int = 0, bugs: int = 0, **options: Any
) -> RunningFakeBugzilla:
    """Serve `fake` (or a new one with `options`, seeded with `bugs` bugs) from a daemon thread."""
    fake = fake or FakeBugzilla(**options)
    if bugs:
        fake.seed(bugs)
    return serve(fake, host=host, port=port, name="fake-bugzilla")

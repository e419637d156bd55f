"""A stateful fake Salesforce (REST API + OAuth) over real HTTP on loopback, for Cases and CaseComments.

It answers as Salesforce documents (fixtures/README.md lists the sources), including where that
is surprising:

* OAuth: `POST /services/oauth2/token` with `grant_type=client_credentials` or `refresh_token`
  (form-encoded); the answer has no `expires_in`: a session simply stops working, which shows as
  401 `[{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]`;
* every REST answer carries `Sforce-Limit-Info: api-usage=N/M`; past M requests the org answers
  **403** `REQUEST_LIMIT_EXCEEDED` (not 429, and with no Retry-After);
* SOQL (`GET /query?q=`, fake_soql.py) pages with `nextRecordsUrl` (`/query/<locator>-<n>`);
  **child records count toward the batch size** (Sforce-Query-Options, default and maximum 2,000), so
  a page of cases with many comments holds fewer cases; a child relationship holding more than
  `child_inline_cap` records comes back `done: false` with its own `nextRecordsUrl` (SOQL and SOSL
  Reference "Understanding Query Results": subquery results page like queries); following the
  parent's `nextRecordsUrl` **invalidates the child cursors of the previous page** (SOAP API
  "QueryResult": "A queryMore() call on a parent object invalidates all child cursors in the previous
  result set"), answered 400 `INVALID_QUERY_LOCATOR`. Not documented, so configurable: the inline cap
  (`child_inline_cap`, 200 by default: the Salesforce CLI's fix for sub-query paging, jsforce PR #1752,
  shows 199 of 257 children inline; 499/500 has been seen too, jsforce issue #577 and
  simple-salesforce issue #311) and the shape of an empty child relationship (`empty_children`:
  `null`, as clients commonly meet it, or an empty `{"totalSize": 0, "done": true, "records": []}`);
* the identity service refuses a bad or expired token unlike the REST API: `GET /services/oauth2/userinfo`
  answers **403** with the plain-text body `Bad_OAuth_Token` (Salesforce's own Mobile SDK, PR #2430
  of forcedotcom/SalesforceMobileSDK-Android: "It returns a 403 for an invalid access token", citing
  Help "Query for User Information"; jsforce PR #736 and the nforce client read the same one-word
  body from the identity URL), where `/services/data` answers 401 `INVALID_SESSION_ID`;
* URI + headers over 16,384 bytes: 414 (URI alone) or 431;
* `GET /sobjects/Case/deleted/?start=&end=`: seconds are ignored, start must precede end by more
  than a minute, and only the last 15 days are available (`INVALID_REPLICATION_DATE` otherwise);
* `PATCH /sobjects/Case/<id>` answers 204 with no body; `POST` answers 201 `{"id", "success", "errors"}`;
  `CaseComment.CommentBody` over 4,000 bytes is 400 `STRING_TOO_LONG`;
* a new CaseComment does not change the Case's `SystemModstamp` unless `comment_touches_case` is set
  (Salesforce does not document that it does).

Use in-process: ``with start_fake_salesforce(cases=50) as server: server.url, server.fake``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from tests.fakes.faults import Faults
from tests.fakes.serving import FakeApp, RunningFake, serve
from tests.integrations.salesforce import fake_soql
from tests.integrations.salesforce.fake_soql import SoqlError

API_VERSION = "62.0"
ORG_ID = "00D5e000000KQ2eEAG"
STATIC_TOKEN = "00D5e000000KQ2e!fake-static-session-token"
CLIENT_ID = "3MVG9fakeConsumerKeyForTests"
CLIENT_SECRET = "fake-consumer-secret-0123456789"
REFRESH_TOKEN = "5Aep861fakeRefreshToken0123456789"
GENERATED_START = datetime(2024, 1, 1, tzinfo=UTC)
MAX_URI_AND_HEADERS = 16_384
COMMENT_BODY_LIMIT = 4000
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id18(id15: str) -> str:
    """Salesforce's case-insensitive checksum suffix (the fake's own copy, independent of the client's)."""
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        suffix += _SUFFIX[sum(1 << i for i, c in enumerate(chunk) if c.isupper() and c.isascii())]
    return id15 + suffix


def sf_time(value: datetime) -> str:
    """`2024-05-01T10:00:00.000+0000`."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


@dataclass
class FakeUser:
    id: str
    name: str


USERS = {
    "integration": FakeUser(id18("0055e000001X8Uz"), "Integration User"),
    "ann": FakeUser(id18("0055e000001AnnA"), "Ann Agent"),
    "bob": FakeUser(id18("0055e000001BobB"), "Bob Müller"),
    "chen": FakeUser(id18("0055e000001ChnC"), "陈伟"),
}
CONTACTS = {"zoe": (id18("0035e000002ZoeZ"), "Zoë Customer"), "max": (id18("0035e000002MaxM"), "Max Mustermann")}
STATUSES = ("New", "Working", "Escalated", "On Hold", "Closed")
CLOSED_STATUSES = frozenset({"Closed"})


@dataclass
class FakeComment:
    id: str
    parent_id: str
    body: str
    published: bool
    author: str  # user key
    created: datetime
    modified: datetime


@dataclass
class FakeCase:
    id: str
    number: str
    subject: str
    description: str | None
    status: str
    priority: str = "Medium"
    origin: str | None = "Web"
    type: str | None = None
    owner: str = "ann"
    contact: str | None = "zoe"
    created: datetime = GENERATED_START
    modified: datetime = GENERATED_START
    systemmod: datetime = GENERATED_START
    closed: datetime | None = None
    record_type_id: str | None = None
    comments: list[FakeComment] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class FakeError(Exception):
    """An answer with Salesforce's error body `[{"message", "errorCode", "fields"}]`."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        self.status, self.code, self.message, self.fields = status, code, message, fields or []
        super().__init__(f"{status} {code}: {message}")


@dataclass
class _Cursor:
    rows: list[dict[str, Any]]  # rendered records
    position: int = 0
    generation: int = 0  # bumped when the parent cursor moves on (invalidates its children)
    parent: str | None = None
    parent_generation: int = 0
    batch_size: int = 2000


class FakeSalesforce(FakeApp):
    """State and WSGI app; public methods are safe to call from tests while serving."""

    def __init__(
        self,
        *,
        api_limit: int = 1_000_000,
        child_inline_cap: int = 200,
        empty_children: str = "null",
        default_batch_size: int = 2000,
        comment_touches_case: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.api_limit = api_limit
        self.api_used = 0
        self.child_inline_cap = child_inline_cap
        if empty_children not in ("null", "empty"):
            raise ValueError("empty_children is 'null' or 'empty'")
        self.empty_children = empty_children
        self.default_batch_size = default_batch_size
        self.comment_touches_case = comment_touches_case
        self.clock = clock or (lambda: datetime.now(UTC))
        self.base_url = "http://fake-salesforce.invalid"
        self.cases: dict[str, FakeCase] = {}
        self.deleted: list[tuple[str, datetime]] = []  # (id, deletedDate) for getDeleted
        self.sessions: set[str] = {STATIC_TOKEN}
        self.clients = {CLIENT_ID: CLIENT_SECRET}
        self.refresh_tokens = {REFRESH_TOKEN}
        self.tokens_issued = 0
        self.faults = Faults()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, query string)
        self.after_request: list[Callable[[FakeSalesforce, Request], None]] = []
        self.lock = threading.RLock()
        self._cursors: dict[str, _Cursor] = {}
        self._case_counter = 0
        self._comment_counter = 0
        self._number = 1000
        self._last_change = datetime.min.replace(tzinfo=UTC)

    # -- state ------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock()

    def _touch(self) -> datetime:
        now = self.now().replace(microsecond=self.now().microsecond // 1000 * 1000)
        if now <= self._last_change:
            now = self._last_change + timedelta(milliseconds=1)
        self._last_change = now
        return now

    def _new_id(self, prefix: str) -> str:
        if prefix == "500":
            self._case_counter += 1
            number = self._case_counter
        else:
            self._comment_counter += 1
            number = self._comment_counter
        # Mixed case in the 15-character part, so the checksum suffix matters.
        body = f"{number:010d}".translate(str.maketrans("0123456789", "0a2B4c6D8e"))
        return id18(f"{prefix}5e{body}")

    @property
    def request_count(self) -> int:
        with self.lock:
            return len(self.requests)

    def add_case(
        self,
        subject: str,
        *,
        description: str | None = None,
        status: str = "New",
        priority: str = "Medium",
        origin: str | None = "Web",
        owner: str = "ann",
        contact: str | None = "zoe",
        created: datetime | None = None,
        modified: datetime | None = None,
    ) -> str:
        with self.lock:
            case_id = self._new_id("500")
            self._number += 1
            when = created or self._touch()
            changed = modified or when
            self.cases[case_id] = FakeCase(
                case_id, f"{self._number:08d}", subject, description, status, priority, origin, None, owner, contact,
                when, changed, changed, changed if status in CLOSED_STATUSES else None,
            )  # fmt: skip
            return case_id

    def case(self, case_id: str) -> FakeCase:
        with self.lock:
            key = id18(case_id[:15]) if len(case_id) in (15, 18) else case_id
            return self.cases[key]

    def update_case(self, case_id: str, **changes: Any) -> None:
        with self.lock:
            case = self.case(case_id)
            for name, value in changes.items():
                if not hasattr(case, name) or name in {"id", "number", "comments"}:
                    raise ValueError(f"the fake cannot change {name!r}")
                setattr(case, name, value)
            case.modified = case.systemmod = self._touch()
            case.closed = case.modified if case.status in CLOSED_STATUSES else None

    def add_comment(
        self,
        case_id: str,
        body: str,
        *,
        published: bool = True,
        author: str = "bob",
        created: datetime | None = None,
    ) -> str:
        with self.lock:
            case = self.case(case_id)
            when = created or self._touch()
            comment = FakeComment(self._new_id("00a"), case.id, body, published, author, when, when)
            case.comments.append(comment)
            if self.comment_touches_case:
                case.systemmod = max(case.systemmod, when)
            return comment.id

    def delete_case(self, case_id: str, *, when: datetime | None = None) -> None:
        with self.lock:
            case = self.case(case_id)
            del self.cases[case.id]
            self.deleted.append((case.id, when or self._touch()))

    def expire_sessions(self) -> None:
        """Every issued session stops working (as after the org's session timeout)."""
        with self.lock:
            self.sessions.clear()

    def seed(
        self,
        count: int,
        *,
        comments: Callable[[int], int] = lambda i: i % 4,
        private_every: int = 3,
        start: datetime = GENERATED_START,
    ) -> list[str]:
        """`count` cases with varied statuses and people; every `private_every`-th comment is internal."""
        ids: list[str] = []
        owners = ["ann", "bob", "chen"]
        for i in range(1, count + 1):
            created = start + timedelta(seconds=7 * i)
            case_id = self.add_case(
                f"Generated case {i}: {'Grüße' if i % 3 == 0 else 'printer offline'}",
                description=f"Generated description {i}.\nSecond line.",
                status=STATUSES[i % len(STATUSES)],
                priority=("Low", "Medium", "High")[i % 3],
                origin=("Web", "Email", "Phone")[i % 3],
                owner=owners[i % 3],
                contact=("zoe", "max", None)[i % 3],
                created=created,
            )
            for n in range(1, comments(i) + 1):
                self.add_comment(
                    case_id, f"Comment {n} on case {i}", published=(n % private_every != 0) if private_every else True,
                    author=owners[(i + n) % 3], created=created + timedelta(seconds=n),
                )  # fmt: skip
            ids.append(case_id)
        return ids

    # -- outbound messages ------------------------------------------------------------------------
    def outbound_message(
        self,
        record_ids: list[str],
        *,
        object_type: str = "Case",
        organization_id: str = ORG_ID,
        notification_ids: list[str] | None = None,
    ) -> bytes:
        """A SOAP 1.1 `notifications` message as Salesforce sends it for Case or CaseComment records."""
        parts = []
        for index, record_id in enumerate(record_ids):
            notification_id = (notification_ids or [])[index] if notification_ids else id18(f"04l5e{index:010d}")
            fields = self._outbound_fields(record_id, object_type)
            body = "".join(f"<sf:{name}>{escape(value)}</sf:{name}>" for name, value in fields)
            parts.append(
                f"<Notification><Id>{notification_id}</Id>"
                f'<sObject xsi:type="sf:{object_type}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
                f"{body}</sObject></Notification>"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body>"
            '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
            f"<OrganizationId>{organization_id}</OrganizationId>"
            f"<ActionId>{id18('04k5e000000CaRk')}</ActionId>"
            '<SessionId xsi:nil="true"/>'
            f"<EnterpriseUrl>{self.base_url}/services/Soap/c/{API_VERSION}/{ORG_ID[:15]}</EnterpriseUrl>"
            f"<PartnerUrl>{self.base_url}/services/Soap/u/{API_VERSION}/{ORG_ID[:15]}</PartnerUrl>"
            + "".join(parts)
            + "</notifications></soapenv:Body></soapenv:Envelope>"
        ).encode()

    def _outbound_fields(self, record_id: str, object_type: str) -> list[tuple[str, str]]:
        with self.lock:
            if object_type == "CaseComment":
                for case in self.cases.values():
                    for comment in case.comments:
                        if comment.id == record_id:
                            return [
                                ("Id", comment.id),
                                ("ParentId", case.id),
                                ("IsPublished", str(comment.published).lower()),
                            ]
                return []  # deleted before delivery: the notification carries no data
            try:
                case = self.case(record_id)
            except KeyError:
                return []
            return [
                ("Id", case.id),
                ("CaseNumber", case.number),
                ("Status", case.status),
                ("LastModifiedDate", sf_time(case.modified)),
            ]

    # -- records as the API shows them ------------------------------------------------------------
    def _user(self, key: str | None) -> FakeUser | None:
        return USERS.get(key) if key else None

    def case_values(self, case: FakeCase) -> dict[str, Any]:
        """Field name → Python value (relationships as dicts), for SOQL evaluation and rendering."""
        owner = self._user(case.owner)
        contact = CONTACTS.get(case.contact) if case.contact else None
        values: dict[str, Any] = {
            "Id": case.id, "CaseNumber": case.number, "Subject": case.subject, "Description": case.description,
            "Status": case.status, "IsClosed": case.status in CLOSED_STATUSES, "Priority": case.priority,
            "Origin": case.origin, "Type": case.type, "OwnerId": owner.id if owner else None,
            "ContactId": contact[0] if contact else None, "SuppliedName": None, "CreatedDate": case.created,
            "LastModifiedDate": case.modified, "SystemModstamp": case.systemmod, "ClosedDate": case.closed,
            "IsDeleted": False, "RecordTypeId": case.record_type_id, "CreatedById": USERS["integration"].id,
            "Owner": {"type": "User", "Id": owner.id, "Name": owner.name} if owner else None,
            "Contact": {"type": "Contact", "Id": contact[0], "Name": contact[1]} if contact else None,
        }  # fmt: skip
        values.update(case.extra)
        return values

    def comment_values(self, comment: FakeComment) -> dict[str, Any]:
        author = self._user(comment.author)
        return {
            "Id": comment.id, "ParentId": comment.parent_id, "CommentBody": comment.body,
            "IsPublished": comment.published, "CreatedDate": comment.created, "LastModifiedDate": comment.modified,
            "SystemModstamp": comment.modified, "IsDeleted": False, "CreatedById": author.id if author else None,
            "CreatedBy": {"type": "User", "Id": author.id, "Name": author.name} if author else None,
        }  # fmt: skip

    def _sobject_url(self, sobject: str, record_id: str) -> str:
        return f"/services/data/v{API_VERSION}/sobjects/{sobject}/{record_id}"

    @staticmethod
    def _json_value(value: Any) -> Any:
        return sf_time(value) if isinstance(value, datetime) else value

    def _render(self, sobject: str, values: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": sobject, "url": self._sobject_url(sobject, values["Id"])}}
        for name in fields:
            if "." in name:
                relation, sub = name.split(".", 1)
                related = values.get(relation)
                if relation not in values:
                    raise SoqlError("INVALID_FIELD", f"Didn't understand relationship '{relation}' in field path")
                if related is None:
                    out[relation] = None
                    continue
                target = out.setdefault(
                    relation,
                    {"attributes": {"type": related["type"], "url": self._sobject_url(related["type"], related["Id"])}},
                )
                if sub not in related:
                    raise SoqlError("INVALID_FIELD", f"No such column '{sub}' on entity '{related['type']}'")
                target[sub] = related[sub]
            else:
                if name not in values:
                    raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'")
                out[name] = self._json_value(values[name])
        return out

    # -- SOQL -----------------------------------------------------------------------------------
    @staticmethod
    def _resolver(values: dict[str, Any], sobject: str) -> Callable[[str], Any]:
        def get(name: str) -> Any:
            if "." in name:
                relation, sub = name.split(".", 1)
                related = values.get(relation)
                return related.get(sub) if isinstance(related, dict) else None
            if name not in values:
                raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'")
            return values[name]

        return get

    @staticmethod
    def _sorted(
        rows: list[dict[str, Any]], order_by: list[tuple[str, bool, bool]], sobject: str
    ) -> list[dict[str, Any]]:
        for name, descending, nulls_last in reversed(order_by):
            get = FakeSalesforce._resolver
            present = [r for r in rows if get(r, sobject)(name) is not None]
            missing = [r for r in rows if get(r, sobject)(name) is None]
            present.sort(key=lambda r: fake_soql._norm(get(r, sobject)(name)), reverse=descending)
            rows = present + missing if nulls_last else missing + present
        return rows

    def _select(self, sobject: str, query: fake_soql.Query, pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = [v for v in pool if query.where is None or query.where.test(self._resolver(v, sobject))]
        rows = self._sorted(rows, query.order_by or [("Id", False, False)], sobject)
        return rows[: query.limit] if query.limit is not None else rows

    def run_query(self, soql: str, batch_size: int) -> dict[str, Any]:
        query = fake_soql.parse(soql)
        if query.sobject == "Case":
            pool = [self.case_values(c) for c in self.cases.values()]
            child_of = {c.id: c for c in self.cases.values()}
        elif query.sobject == "CaseComment":
            if query.subqueries:
                raise SoqlError("INVALID_TYPE", "CaseComment has no child relationships here")
            pool = [self.comment_values(cm) for c in self.cases.values() for cm in c.comments]
            child_of = {}
        else:
            raise SoqlError("INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.")
        for sub in query.subqueries:
            if query.sobject != "Case" or sub.sobject != "CaseComments":
                raise SoqlError(
                    "INVALID_TYPE", f"Didn't understand relationship '{sub.sobject}' in FROM part of query call."
                )
        rows: list[dict[str, Any]] = []
        for values in self._select(query.sobject, query, pool):
            record = self._render(query.sobject, values, query.fields)
            for sub in query.subqueries:
                children = [self.comment_values(cm) for cm in child_of[values["Id"]].comments]
                selected = self._select("CaseComment", sub, children)
                record["CaseComments"] = [self._render("CaseComment", v, sub.fields) for v in selected]
            rows.append(record)
        cursor = _Cursor(rows, batch_size=batch_size)
        return self._page(self._register(cursor), cursor)

    def _register(self, cursor: _Cursor) -> str:
        locator = id18("01g5e" + secrets.token_hex(5).upper()[:10])
        self._cursors[locator] = cursor
        return locator

    def _child_result(
        self, parent_locator: str, parent: _Cursor, children: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        if not children:  # undocumented: null as commonly met, or an empty result (see the module docstring)
            return None if self.empty_children == "null" else {"totalSize": 0, "done": True, "records": []}
        if len(children) <= self.child_inline_cap:
            return {"totalSize": len(children), "done": True, "records": children}
        cursor = _Cursor(
            children, position=self.child_inline_cap, parent=parent_locator, parent_generation=parent.generation,
            batch_size=self.child_inline_cap,
        )  # fmt: skip
        locator = self._register(cursor)
        return {
            "totalSize": len(children), "done": False,
            "nextRecordsUrl": f"/services/data/v{API_VERSION}/query/{locator}-{cursor.position}",
            "records": children[: self.child_inline_cap],
        }  # fmt: skip

    def _page(self, locator: str, cursor: _Cursor) -> dict[str, Any]:
        """The next batch: child records count toward the batch size (at least one parent per page)."""
        records: list[dict[str, Any]] = []
        budget = cursor.batch_size
        while cursor.position < len(cursor.rows):
            row = cursor.rows[cursor.position]
            children = row.get("CaseComments") if isinstance(row.get("CaseComments"), list) else None
            cost = 1 + (min(len(children), self.child_inline_cap) if children else 0)
            if records and cost > budget:
                break
            out = dict(row)
            if children is not None:
                out["CaseComments"] = self._child_result(locator, cursor, children)
            records.append(out)
            budget -= cost
            cursor.position += 1
        page: dict[str, Any] = {
            "totalSize": len(cursor.rows),
            "done": cursor.position >= len(cursor.rows),
            "records": records,
        }
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v{API_VERSION}/query/{locator}-{cursor.position}"
        return page

    def query_more(self, locator_and_offset: str) -> dict[str, Any]:
        locator, _, offset = locator_and_offset.rpartition("-")
        cursor = self._cursors.get(locator)
        if cursor is None or not offset.isdigit() or int(offset) != cursor.position:
            raise FakeError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        if cursor.parent is not None:
            parent = self._cursors.get(cursor.parent)
            if parent is None or parent.generation != cursor.parent_generation:
                raise FakeError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            end = min(len(cursor.rows), cursor.position + cursor.batch_size)
            records = cursor.rows[cursor.position : end]
            cursor.position = end
            page: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows), "records": records}
            if not page["done"]:
                page["nextRecordsUrl"] = f"/services/data/v{API_VERSION}/query/{locator}-{end}"
            return page
        cursor.generation += 1  # the previous page's child cursors are no longer valid
        return self._page(locator, cursor)

    # -- HTTP -------------------------------------------------------------------------------------
    @staticmethod
    def error(status: int, code: str, message: str, fields: list[str] | None = None) -> Response:
        body: list[dict[str, Any]] = [{"message": message, "errorCode": code}]
        if fields:  # only errors about fields name them ("The response body contains the message and errorCode")
            body[0]["fields"] = fields
        return Response(json.dumps(body), status=status, content_type="application/json;charset=UTF-8")

    def _json(self, status: int, body: Any) -> Response:
        if body is None:
            return Response(status=status)
        return Response(
            json.dumps(body, ensure_ascii=False), status=status, content_type="application/json;charset=UTF-8"
        )

    def handle(self, request: Request) -> Response:
        path = request.path
        with self.lock:
            self.requests.append((request.method, path, request.query_string.decode("latin-1")))
        fault = self.faults.take(request.method, path)
        if fault is not None:
            body = fault.body
            text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
            return Response(text, status=fault.status, headers=fault.headers, content_type="application/json")
        uri = request.full_path.rstrip("?") if request.query_string else path
        header_bytes = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
        if len(uri) > MAX_URI_AND_HEADERS:
            return Response("URI Too Long", status=414)
        if len(uri) + header_bytes > MAX_URI_AND_HEADERS:
            return Response("Request Header Fields Too Large", status=431)
        try:
            if path == "/services/oauth2/token":
                return self._on_token(request)
            if path == "/services/oauth2/userinfo":
                if self._authenticated(request) is not None:  # the identity service's refusal (module docstring)
                    return Response("Bad_OAuth_Token", status=403, content_type="text/plain;charset=UTF-8")
                return self._on_userinfo()
            prefix = f"/services/data/v{API_VERSION}/"
            if not path.startswith(prefix):
                return self.error(404, "NOT_FOUND", "The requested resource does not exist")
            refused = self._authenticated(request)
            if refused is not None:
                return refused
            with self.lock:
                if self.api_used >= self.api_limit:
                    response = self.error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                else:
                    self.api_used += 1
                    response = self._route(request, path[len(prefix) :])
                response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_used}/{self.api_limit}"
                return response
        except FakeError as exc:
            return self.error(exc.status, exc.code, exc.message, exc.fields)
        except SoqlError as exc:
            return self.error(400, exc.code, exc.message)

    def _authenticated(self, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            if token and token in self.sessions:
                return None
        return self.error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def _on_token(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(status=405)
        form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        grant = form.get("grant_type")

        def oauth_error(code: str, description: str, status: int = 400) -> Response:
            return self._json(status, {"error": code, "error_description": description})

        if client_id not in self.clients:
            return oauth_error("invalid_client_id", "client identifier invalid")
        if grant == "client_credentials":
            if not secrets.compare_digest(client_secret, self.clients[client_id]):
                return oauth_error("invalid_client", "invalid client credentials")
        elif grant == "refresh_token":
            if client_secret and not secrets.compare_digest(client_secret, self.clients[client_id]):
                return oauth_error("invalid_client", "invalid client credentials")
            if form.get("refresh_token") not in self.refresh_tokens:
                return oauth_error("invalid_grant", "expired access/refresh token")
        else:
            return oauth_error("unsupported_grant_type", "grant type not supported")
        with self.lock:
            self.tokens_issued += 1
            token = f"{ORG_ID[:15]}!fake-session-{self.tokens_issued}-{secrets.token_hex(8)}"
            self.sessions.add(token)
        issued = str(int(self.now().timestamp() * 1000))
        body = {
            "access_token": token,
            "signature": "fakeSignature0123456789=",
            "instance_url": self.base_url,
            "id": f"https://login.salesforce.com/id/{ORG_ID}/{USERS['integration'].id}",
            "token_type": "Bearer",
            "issued_at": issued,
        }
        if grant == "refresh_token":
            body["scope"] = "api refresh_token"
        return self._json(200, body)

    def _on_userinfo(self) -> Response:
        user = USERS["integration"]
        return self._json(
            200,
            {
                "sub": f"https://login.salesforce.com/id/{ORG_ID}/{user.id}",
                "user_id": user.id,
                "organization_id": ORG_ID,
                "preferred_username": "integration@example.com",
                "nickname": "integration",
                "name": user.name,
                "email": "integration@example.com",
                "email_verified": True,
                "zoneinfo": "Europe/Berlin",
                "active": True,
                "user_type": "STANDARD",
                "urls": {"rest": f"{self.base_url}/services/data/v{{version}}/"},
            },
        )

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            raise FakeError(400, "JSON_PARSER_ERROR", "Unexpected character in request body") from None
        if not isinstance(body, dict):
            raise FakeError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        return body

    def _route(self, request: Request, rest: str) -> Response:
        method = request.method
        if rest in ("query", "query/") and method == "GET":
            soql = request.args.get("q")
            if not soql:
                raise FakeError(400, "MALFORMED_QUERY", "A query string has to be specified")
            batch = self.default_batch_size
            options = request.headers.get("Sforce-Query-Options", "")
            match = re.search(r"batchSize=(\d+)", options)
            if match:
                batch = max(200, min(2000, int(match.group(1))))
            return self._json(200, self.run_query(soql, batch))
        if rest.startswith("query/") and method == "GET":
            return self._json(200, self.query_more(rest[len("query/") :]))
        if rest in ("sobjects/Case/deleted", "sobjects/Case/deleted/") and method == "GET":
            return self._json(200, self._get_deleted(request))
        match = re.fullmatch(r"sobjects/(Case|CaseComment)/?", rest)
        if match and method == "POST":
            return self._create(match.group(1), self._body(request))
        match = re.fullmatch(r"sobjects/Case/([A-Za-z0-9]+)", rest)
        if match:
            return self._on_case(request, match.group(1))
        raise FakeError(404, "NOT_FOUND", "The requested resource does not exist")

    def _find_case(self, record_id: str) -> FakeCase:
        try:
            if len(record_id) not in (15, 18):
                raise KeyError(record_id)
            return self.case(record_id)
        except KeyError:
            raise FakeError(404, "NOT_FOUND", "The requested resource does not exist") from None

    def _on_case(self, request: Request, record_id: str) -> Response:
        case = self._find_case(record_id)
        if request.method == "GET":
            values = self.case_values(case)
            flat = [k for k, v in values.items() if not isinstance(v, dict)]
            return self._json(200, self._render("Case", values, flat))
        if request.method == "PATCH":
            self._apply(case, self._body(request))
            case.modified = case.systemmod = self._touch()
            case.closed = case.modified if case.status in CLOSED_STATUSES else None
            return self._json(204, None)
        raise FakeError(
            405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are GET,PATCH,DELETE"
        )

    _CASE_WRITABLE = {
        "Subject",
        "Description",
        "Status",
        "Priority",
        "Origin",
        "Type",
        "OwnerId",
        "ContactId",
        "RecordTypeId",
    }

    def _apply(self, case: FakeCase, body: dict[str, Any]) -> None:
        for name in body:
            if name not in self._CASE_WRITABLE:
                raise FakeError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type Case", [name])
        if "Status" in body and body["Status"] not in STATUSES:
            raise FakeError(
                400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"Status: bad value for restricted picklist field: {body['Status']}", ["Status"],
            )  # fmt: skip
        if "OwnerId" in body:
            owner = next(
                (key for key, user in USERS.items() if user.id == body["OwnerId"] or user.id[:15] == body["OwnerId"]),
                None,
            )
            if owner is None:
                raise FakeError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["OwnerId"])
            case.owner = owner
        if "ContactId" in body:
            case.contact = next((key for key, (cid, _) in CONTACTS.items() if cid == body["ContactId"]), None)
        for api, attr in (("Subject", "subject"), ("Description", "description"), ("Status", "status"),
                          ("Priority", "priority"), ("Origin", "origin"), ("Type", "type"), ("RecordTypeId", "record_type_id")):  # fmt: skip
            if api in body:
                setattr(case, attr, body[api])

    def _create(self, sobject: str, body: dict[str, Any]) -> Response:
        if sobject == "Case":
            case_id = self.add_case("", contact=None, status="New", owner="integration")
            case = self.cases[case_id]
            try:
                self._apply(case, body)
            except FakeError:
                del self.cases[case_id]
                raise
            return self._json(201, {"id": case_id, "success": True, "errors": []})
        allowed = {"ParentId", "CommentBody", "IsPublished"}
        for name in body:
            if name not in allowed:
                raise FakeError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type CaseComment", [name])
        text = str(body.get("CommentBody") or "")
        if len(text.encode("utf-8")) > COMMENT_BODY_LIMIT:
            raise FakeError(
                400, "STRING_TOO_LONG",
                f"Body: data value too large: {text[:40]}... (max length={COMMENT_BODY_LIMIT})", ["CommentBody"],
            )  # fmt: skip
        parent = str(body.get("ParentId") or "")
        try:
            case = self.case(parent)
        except KeyError:
            raise FakeError(
                400, "FIELD_INTEGRITY_EXCEPTION", "Parent ID: id value of incorrect type", ["ParentId"]
            ) from None
        comment_id = self.add_comment(
            case.id, text, published=bool(body.get("IsPublished", False)), author="integration"
        )
        return self._json(201, {"id": comment_id, "success": True, "errors": []})

    def _get_deleted(self, request: Request) -> dict[str, Any]:
        def moment(name: str) -> datetime:
            raw = request.args.get(name)
            if not raw:
                raise FakeError(400, "MISSING_ARGUMENT", f"{name} parameter is required")
            try:
                value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise FakeError(400, "INVALID_DATE_FORMAT", f"{name}: bad date/time format: {raw}") from None
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            return value.astimezone(UTC).replace(second=0, microsecond=0)  # seconds are ignored

        start, end = moment("start"), moment("end")
        now = self.now()
        earliest = (now - timedelta(days=15)).replace(second=0, microsecond=0)
        if end - start <= timedelta(minutes=1):
            raise FakeError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        if start < earliest:
            raise FakeError(
                400, "INVALID_REPLICATION_DATE", f"startDate before earliestDateAvailable {sf_time(earliest)}"
            )
        end = min(end, now.replace(second=0, microsecond=0))
        with self.lock:
            found = [{"id": rid, "deletedDate": sf_time(when)} for rid, when in self.deleted if start <= when < end]
        return {"deletedRecords": found, "earliestDateAvailable": sf_time(earliest), "latestDateCovered": sf_time(end)}


# -- serving ------------------------------------------------------------------------------------------
RunningFakeSalesforce = RunningFake[FakeSalesforce]


def start_fake_salesforce(
    fake: FakeSalesforce | None = None, *, host: str = "127.0.0.1", port: int = 0, cases: int = 0, **options: Any
) -> RunningFakeSalesforce:
    """Serve `fake` (or a new one with `options`, seeded with `cases`) from a daemon thread on a free port."""
    fake = fake or FakeSalesforce(**options)
    if cases:
        fake.seed(cases)
    return serve(fake, host=host, port=port, name="fake-salesforce")

"""Case + CaseComments (as SOQL returns them) → `TicketSnapshot`, and the model's fields → Case fields.

Pure functions over the documented JSON shapes (tests/integrations/salesforce/fixtures/), so the
mapping is tested without any server.

Status: Salesforce orgs define their own Case statuses. The defaults cover the standard picklist
(New → open; Working, Escalated → in progress; Closed → closed) and `IsClosed` marks any closed
status as closed; `status_map` (status name → open / in_progress / resolved / closed) overrides both
ways: for writes the first name mapped to a state is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from data_manager.collectors.tickets.errors import UnknownFieldError
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.integrations.salesforce._ids import to_18
from data_manager.collectors.tickets.model import Comment, Status, TicketData, parse_datetime

CASE_FIELDS = (
    "Id", "CaseNumber", "Subject", "Description", "Status", "IsClosed", "Priority", "Origin", "Type",
    "OwnerId", "Owner.Name", "ContactId", "Contact.Name", "SuppliedName", "CreatedDate", "LastModifiedDate",
    "SystemModstamp", "ClosedDate",
)  # fmt: skip
COMMENT_FIELDS = ("Id", "CommentBody", "IsPublished", "CreatedDate", "LastModifiedDate", "CreatedBy.Name")
DEFAULT_STATUS_MAP: Mapping[str, Status] = {
    "New": Status.OPEN,
    "Working": Status.IN_PROGRESS,
    "Escalated": Status.IN_PROGRESS,
    "On Hold": Status.IN_PROGRESS,
    "Closed": Status.CLOSED,
}
DEFAULT_WRITE_STATUS: Mapping[Status, str] = {
    Status.OPEN: "New",
    Status.IN_PROGRESS: "Working",
    Status.RESOLVED: "Closed",
    Status.CLOSED: "Closed",
}
# The model's fields and the Case fields they are written to.
WRITABLE = {"title": "Subject", "description": "Description", "assignee": "OwnerId", "requester": "ContactId"}
COMMENT_BODY_LIMIT_BYTES = 4000  # CaseComment.CommentBody: "The maximum size of the comment body is 4,000 bytes"


def parse_time(value: Any) -> datetime | None:
    """Salesforce's `2024-05-01T10:00:00.000+0000` (any ISO form Python reads) → aware datetime."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def map_status(name: Any, is_closed: Any, status_map: Mapping[str, Status] | None = None) -> Status:
    """A Case's status → the model's state; see the module docstring."""
    text = str(name or "").strip()
    for table in (status_map or {}, DEFAULT_STATUS_MAP):
        for key, state in table.items():
            if key.casefold() == text.casefold():
                return Status.CLOSED if is_closed is True and state is Status.OPEN else state
    return Status.CLOSED if is_closed is True else Status.OPEN


def write_status(status: Status, status_map: Mapping[str, Status] | None = None) -> str:
    """The Case status name a write uses for `status`."""
    for name, state in (status_map or {}).items():
        if state is status:
            return name
    return DEFAULT_WRITE_STATUS[status]


def related_name(record: Mapping[str, Any], relation: str) -> str | None:
    """`Owner.Name`-style values: the related record is an object or null."""
    related = record.get(relation)
    name = related.get("Name") if isinstance(related, Mapping) else None
    return name if isinstance(name, str) and name.strip() else None


def comment_records(case: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The CaseComments subquery's records; the relationship is null when a case has none."""
    result = case.get("CaseComments")
    if not isinstance(result, Mapping):
        return []
    return [r for r in result.get("records") or [] if isinstance(r, Mapping)]


def case_snapshot(
    case: Mapping[str, Any],
    comments: list[Mapping[str, Any]],
    *,
    instance_url: str,
    include_private_comments: bool = False,
    status_map: Mapping[str, Status] | None = None,
) -> TicketSnapshot:
    """One Case with every one of its comments (all pages) → a snapshot; private comments left out by default."""
    case_id = to_18(str(case.get("Id") or ""))
    created = parse_time(case.get("CreatedDate"))
    kept = [c for c in comments if include_private_comments or c.get("IsPublished") is True]
    mapped = [
        Comment(
            author=related_name(c, "CreatedBy") or "",
            text=str(c.get("CommentBody") or ""),
            at=parse_time(c.get("CreatedDate")) or created or datetime.fromtimestamp(0, UTC),
        )
        for c in kept
    ]
    # A new comment is not documented to touch the Case's timestamps, so the newest comment counts too:
    # a later state of the ticket always carries a later `updated_at`.
    moments = [parse_time(case.get(k)) for k in ("SystemModstamp", "LastModifiedDate")]
    moments += [parse_time(c.get(k)) for c in comments for k in ("LastModifiedDate", "CreatedDate")]
    known = [m for m in moments if m is not None]
    status_name = str(case.get("Status") or "") or None
    closed = parse_time(case.get("ClosedDate"))
    extra = {
        "case_number": str(case.get("CaseNumber") or ""),
        "priority": str(case.get("Priority") or ""),
        "origin": str(case.get("Origin") or ""),
        "case_type": str(case.get("Type") or ""),
        "owner": related_name(case, "Owner") or "",
        "contact": related_name(case, "Contact") or "",
        "closed": closed.astimezone(UTC).isoformat() if closed else "",
    }
    data = TicketData(
        title=str(case.get("Subject") or ""),
        description=str(case.get("Description") or ""),
        assignee=related_name(case, "Owner"),
        requester=related_name(case, "Contact") or (str(case.get("SuppliedName") or "") or None),
        status=map_status(case.get("Status"), case.get("IsClosed"), status_map),
        communication=str(case.get("Origin") or "") or None,
    )
    return TicketSnapshot(
        ticket_id=case_id,
        data=data,
        comments=tuple(mapped),
        url=f"{instance_url.rstrip('/')}/lightning/r/Case/{case_id}/view",
        created_at=created,
        updated_at=max(known) if known else None,
        status_name=status_name,
        extra={k: v for k, v in extra.items() if v},
    )


def display_name(snapshot: TicketSnapshot) -> str | None:
    """`Case <CaseNumber>: <Subject>` (`Case <CaseNumber>` without a subject); None (the standard name) without a number."""
    number = snapshot.extra.get("case_number")
    if not number:
        return None
    return f"Case {number}: {snapshot.data.title}" if snapshot.data.title.strip() else f"Case {number}"


def case_fields_for(
    fields: Mapping[str, Any], status_map: Mapping[str, Status] | None = None, *, origin: str | None = None
) -> dict[str, Any]:
    """The model's changed fields → the Case fields a POST/PATCH sends (custom_fields pass through by API name)."""
    unknown = set(fields) - set(WRITABLE) - {"status", "custom_fields", "communication"}
    if unknown:
        raise UnknownFieldError(
            f"Salesforce cannot write {', '.join(sorted(unknown))} "
            f"(supported: {', '.join(sorted([*WRITABLE, 'status', 'custom_fields', 'communication']))})"
        )
    body: dict[str, Any] = {}
    for name, api_name in WRITABLE.items():
        if name in fields:
            value = fields[name] if fields[name] != "" else None
            if value is None and api_name == "OwnerId":
                continue  # every Case has an owner; "no assignee" cannot be written, so it leaves the owner as is
            body[api_name] = value
    if "status" in fields:
        body["Status"] = write_status(Status.parse(fields["status"]), status_map)
    if fields.get("communication") or origin:
        body["Origin"] = fields.get("communication") or origin
    for api_name, value in dict(fields.get("custom_fields") or {}).items():
        body[str(api_name)] = value
    return body


def comment_body_bytes(text: str) -> int:
    return len(text.encode("utf-8"))

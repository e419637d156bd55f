"""Pure translations between Bugzilla's REST shapes and the model (no I/O, tested on recorded samples).

A bug's description is its comment with `count` 0, not a comment. Private comments (`is_private`) are
left out unless asked for; a key outside the insider group never receives them, so `count` values
have gaps and a bug whose description is private may come with no comments at all: both are normal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.model import Comment, Status, TicketData, parse_datetime

# Upstream 5.0/5.2 defaults plus the 4.x names (NEW, ASSIGNED, REOPENED, CLOSED) many deployments still use.
DEFAULT_STATUS_MAP: Mapping[str, Status] = {
    "UNCONFIRMED": Status.OPEN,
    "CONFIRMED": Status.OPEN,
    "NEW": Status.OPEN,
    "REOPENED": Status.OPEN,
    "IN_PROGRESS": Status.IN_PROGRESS,
    "ASSIGNED": Status.IN_PROGRESS,
    "RESOLVED": Status.RESOLVED,
    "VERIFIED": Status.RESOLVED,
    "CLOSED": Status.CLOSED,
}
# Which Bugzilla status a model status is written as, most preferred first (the first one the server's
# workflow has and allows from the bug's current status wins).
DEFAULT_WRITE_ORDER: Mapping[Status, tuple[str, ...]] = {
    Status.OPEN: ("CONFIRMED", "NEW", "UNCONFIRMED", "REOPENED"),
    Status.IN_PROGRESS: ("IN_PROGRESS", "ASSIGNED"),
    Status.RESOLVED: ("RESOLVED",),
    Status.CLOSED: ("CLOSED", "VERIFIED"),
}
EXTRA_FIELDS = ("component", "priority", "severity", "version", "platform", "op_sys", "resolution", "whiteboard")


def status_table(overrides: Mapping[str, Any] | None = None) -> dict[str, Status]:
    """The read mapping: defaults, then `status_map` overrides (Bugzilla name → model status)."""
    table = dict(DEFAULT_STATUS_MAP)
    for name, value in (overrides or {}).items():
        table[str(name).strip().upper()] = Status.parse(value)
    return table


def map_status(name: Any, is_open: Any = None, table: Mapping[str, Status] | None = None) -> Status:
    """A Bugzilla status → the model's; an unknown one by its `is_open` flag (open, else closed)."""
    key = str(name or "").strip().upper()
    mapped = (table or DEFAULT_STATUS_MAP).get(key)
    if mapped is not None:
        return mapped
    return Status.CLOSED if is_open is False else Status.OPEN


def write_candidates(status: Status, table: Mapping[str, Status] | None = None) -> list[str]:
    """Bugzilla statuses to write `status` as, best first: those that read back as `status` (configured ones
    first), then the usual names for it even if they read back otherwise (5.x has no CLOSED: VERIFIED)."""
    table = table or DEFAULT_STATUS_MAP
    configured = [name for name, mapped in table.items() if mapped is status and name not in DEFAULT_STATUS_MAP]
    defaults = [name for name in DEFAULT_WRITE_ORDER[status] if table.get(name) is status]
    rest = [name for name, mapped in table.items() if mapped is status and name not in configured + defaults]
    exact = configured + defaults + rest
    return exact + [name for name in DEFAULT_WRITE_ORDER[status] if name not in exact]


def bz_time(moment: datetime) -> str:
    """A time as Bugzilla's search takes it: UTC, whole seconds, `Z`."""
    utc = parse_datetime(moment)
    if utc is None:
        raise ValueError("a time is required")
    return utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def person(login: Any, detail: Any = None) -> str | None:
    """How a person is shown: the real name when Bugzilla gives one, else the login."""
    if isinstance(detail, Mapping):
        for key in ("real_name", "name", "email"):
            name = detail.get(key)
            if isinstance(name, str) and name.strip():
                return name
    return str(login) if login else None


def visible_comments(raw: Iterable[Mapping[str, Any]], include_private: bool) -> list[Mapping[str, Any]]:
    """The comments we keep, oldest first: private ones only when `include_private`."""
    kept = [c for c in raw if isinstance(c, Mapping) and (include_private or not c.get("is_private"))]
    return sorted(kept, key=lambda c: (int(c.get("count") or 0), int(c.get("id") or 0)))


def description_and_comments(raw: Iterable[Mapping[str, Any]], include_private: bool) -> tuple[str, list[Comment]]:
    """Split a bug's comments into its description (count 0) and the comments 1..n."""
    description = ""
    comments: list[Comment] = []
    for item in visible_comments(raw, include_private):
        if int(item.get("count") or 0) == 0:
            description = str(item.get("text") or "")
            continue
        comments.append(
            Comment(
                author=str(item.get("creator") or ""),
                text=str(item.get("text") or ""),
                at=item.get("creation_time") or item.get("time"),  # type: ignore[arg-type]  # Comment parses the ISO text
            )
        )
    return description, comments


def custom_fields(bug: Mapping[str, Any]) -> dict[str, Any]:
    """Bugzilla's custom fields (`cf_*`), kept as they came."""
    return {name: value for name, value in bug.items() if name.startswith("cf_")}


def snapshot(
    bug: Mapping[str, Any],
    raw_comments: Iterable[Mapping[str, Any]],
    *,
    base_url: str,
    include_private: bool = False,
    table: Mapping[str, Status] | None = None,
) -> TicketSnapshot:
    """A bug (as `GET /rest/bug` answers) and its comments → the snapshot the pipeline stores."""
    bug_id = str(bug["id"])
    description, comments = description_and_comments(raw_comments, include_private)
    status = str(bug.get("status") or "")
    resolution = str(bug.get("resolution") or "")
    extra: dict[str, Any] = {name: bug.get(name) for name in EXTRA_FIELDS if bug.get(name) not in (None, "", "---")}
    if bug.get("alias"):
        alias = bug["alias"]
        extra["alias"] = ", ".join(alias) if isinstance(alias, list) else str(alias)
    if bug.get("keywords"):
        extra["keywords"] = ", ".join(str(k) for k in bug["keywords"])
    return TicketSnapshot(
        ticket_id=bug_id,
        data=TicketData(
            title=str(bug.get("summary") or ""),
            description=description,
            assignee=person(bug.get("assigned_to"), bug.get("assigned_to_detail")),
            requester=person(bug.get("creator"), bug.get("creator_detail")),
            status=map_status(status, bug.get("is_open"), table),
            custom_fields=custom_fields(bug),
        ),
        comments=tuple(comments),
        url=f"{base_url.rstrip('/')}/show_bug.cgi?id={bug_id}",
        created_at=parse_datetime(bug.get("creation_time")),
        updated_at=parse_datetime(bug.get("last_change_time")),
        project=str(bug.get("product") or "") or None,
        status_name=f"{status} {resolution}".strip() or None,
        extra=extra,
    )

"""Turn one fetched ticket into a `TicketResource`: the single text format every system ends up in.

The format is read by downstream indexers, so it is stable (same input, byte-identical output) and
documented in the README. Text is kept verbatim; nothing is escaped or rendered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.ticket_resource import TicketResource

FORMAT_VERSION = "1"


def iso(value: datetime | None) -> str:
    """UTC ISO-8601 with seconds (and microseconds only when present); '' for None."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _field_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return iso(value)
    # Lists and mappings as compact, key-sorted JSON so the text is deterministic.
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _one_line(value: str) -> str:
    """Header values stay on one line so the header block can be parsed line by line."""
    return " ".join(value.split("\n")).replace("\r", " ")


def render_content(source_type: str, snapshot: TicketSnapshot) -> str:
    data = snapshot.data
    status = snapshot.status_name or data.status.value
    header = [
        ("Title", data.title),
        ("Ticket", f"{source_type}:{snapshot.ticket_id}"),
        ("Status", status if status == data.status.value else f"{status} ({data.status.value})"),
        ("Project", snapshot.project or ""),
        ("URL", snapshot.url or ""),
        ("Created", iso(snapshot.created_at)),
        ("Updated", iso(snapshot.updated_at)),
        ("Requester", data.requester or ""),
        ("Assignee", data.assignee or ""),
    ]
    header += [(key.replace("_", " ").capitalize(), value) for key, value in sorted(snapshot.extra.items())]
    lines = [f"{name}: {_one_line(value)}".rstrip() for name, value in header]
    lines += ["", "Description:", data.description]
    if data.custom_fields:
        lines += ["", "Fields:"]
        lines += [
            f"  {key}: {_one_line(_field_value(value))}".rstrip() for key, value in sorted(data.custom_fields.items())
        ]
    lines += ["", f"Comments ({len(snapshot.comments)}):"]
    for number, comment in enumerate(snapshot.comments, start=1):
        lines += [
            "",
            f"--- Comment {number} by {_one_line(comment.author or 'unknown')} at {iso(comment.at)} ---",
            comment.text,
        ]
    return "\n".join(lines) + "\n"


def normalise(source_type: str, snapshot: TicketSnapshot, *, display_name: str | None = None) -> TicketResource:
    """One ticket, its comments and the system's facts → the resource persistence stores.

    `display_name`: what the integration calls the ticket (`TicketIntegration.display_name`); None: the
    standard `<ticket id>: <title>`, and for an untitled ticket none, so the seed's `{source_type}:{ticket_id}`.
    """
    data = snapshot.data
    metadata: dict[str, Any] = {
        "url": snapshot.url or "",
        "title": data.title,
        "project": snapshot.project or "",
        "status": snapshot.status_name or data.status.value,
        "status_category": data.status.value,
        "assignee": data.assignee or "",
        "requester": data.requester or "",
        "updated_at": iso(snapshot.updated_at),
        "comment_count": str(len(snapshot.comments)),
        "format_version": FORMAT_VERSION,
    }
    if display_name and display_name.strip():
        metadata["display_name"] = _one_line(display_name.strip())
    elif data.title:
        metadata["display_name"] = f"{snapshot.ticket_id}: {_one_line(data.title)}"
    for key, value in snapshot.extra.items():
        metadata.setdefault(key, value)
    return TicketResource(
        ticket_id=snapshot.ticket_id,
        content=render_content(source_type, snapshot),
        source_type=source_type,
        created_at=snapshot.created_at,
        metadata=metadata,
    )

"""`TicketResource`: one ticket's normalised text, as persistence stores it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from data_manager.collectors.resource_base import BaseResource, ResourceMetadata

# Characters allowed in a hash; every run of other characters collapses to one "_".
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
# File names are limited to 255 bytes on common file systems; the longest suffix we add is
# ".txt.meta.yaml" (14) and temp files add a few more, so hashes stay well below that.
MAX_HASH_LENGTH = 200
_DIGEST_LENGTH = 16


def safe_component(text: str) -> str:
    """Replace every run of characters outside [A-Za-z0-9._-] with a single '_'.

    The result never contains a path separator or NUL, so it cannot leave its directory.
    """
    return _UNSAFE_RUN.sub("_", text)


def resource_hash(source_type: str, ticket_id: str) -> str:
    """`{source_type}_{safe ticket id}`, bounded in length.

    Ids that would make the hash longer than `MAX_HASH_LENGTH` are cut and end with a digest of the
    full id, so two long ids sharing a prefix still get different hashes.
    """
    stem = f"{safe_component(source_type)}_{safe_component(ticket_id)}"
    if len(stem) <= MAX_HASH_LENGTH:
        return stem
    digest = hashlib.sha256(f"{source_type}\0{ticket_id}".encode()).hexdigest()[:_DIGEST_LENGTH]
    return f"{stem[: MAX_HASH_LENGTH - _DIGEST_LENGTH - 1]}_{digest}"


@dataclass
class TicketResource(BaseResource):
    """A ticket's normalised content plus metadata (url, project, status, times...).

    `created_at` is the seed's `Optional[str]`, kept as given; integrations hand over a `datetime`, stored in ISO form.
    """

    ticket_id: str
    content: str
    source_type: str
    created_at: str | datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def get_hash(self) -> str:
        return resource_hash(self.source_type, str(self.ticket_id))

    def get_filename(self) -> str:
        return self.get_hash() + ".txt"

    def get_content(self) -> str:
        return self.content

    def get_metadata(self) -> ResourceMetadata:
        """The seed's contract: display_name from the metadata dict, else `{source_type}:{ticket_id}`; extra always
        holds ticket_id, source_type and created_at (empty when unknown)."""
        display_name = _text(self.metadata.get("display_name")) or f"{self.source_type}:{self.ticket_id}"
        extra = {
            str(key): _text(value)
            for key, value in self.metadata.items()
            if key != "display_name" and value is not None
        }
        extra["ticket_id"] = str(self.ticket_id)
        extra["source_type"] = self.source_type
        extra["created_at"] = _text(self.created_at)
        return ResourceMetadata(display_name=display_name, extra=extra)


def _text(value: Any) -> str:
    """Metadata values as strings: datetimes in ISO form, strings as given, None as empty."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)

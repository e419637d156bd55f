"""A metadata file's canonical form: what the catalog's metadata digests are of.

Its own module so that writing (persistence) and repairing after a crash (adoption) read a metadata
file the same way without importing each other.
"""

from __future__ import annotations

import hashlib
import json

import yaml

from data_manager.collectors.resource_base import ResourceMetadata


def canonical_metadata(metadata: ResourceMetadata | None) -> str:
    """The metadata's canonical form: compact sorted JSON ("" when none). Cheap, unlike rendering YAML."""
    if metadata is None:
        return ""
    return json.dumps(metadata.as_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def parse_metadata(text: str) -> ResourceMetadata | None:
    """A metadata file's content back as `ResourceMetadata`; None when empty or not in our shape."""
    try:
        loaded = yaml.safe_load(text) if text else None
        return ResourceMetadata(**loaded) if isinstance(loaded, dict) else None
    except (yaml.YAMLError, TypeError, ValueError):
        return None


def metadata_digest_of(text: str) -> str:
    """The digest the catalog keeps for a metadata file's text: of its canonical form, not of its YAML bytes."""
    return hashlib.sha256(canonical_metadata(parse_metadata(text)).encode("utf-8")).hexdigest()

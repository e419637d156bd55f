"""Salesforce record ids: 15 characters (case-sensitive) or 18 (with a case-insensitive checksum suffix).

We always store and compare the 18-character form, so a Case reached through the UI's 15-character
id and through the API's 18-character one is the same ticket.
"""

from __future__ import annotations

import re

ID_PATTERN = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
CASE_PREFIX = "500"
CASE_COMMENT_PREFIX = "00a"
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def checksum_suffix(id15: str) -> str:
    """The three characters that make a 15-character id case-insensitively unique."""
    suffix = ""
    for start in range(0, 15, 5):
        chunk = id15[start : start + 5]
        index = sum(1 << bit for bit, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix += _SUFFIX_ALPHABET[index]
    return suffix


def to_18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character id; `ValueError` for anything else.

    An 18-character id keeps its first 15 characters and gets its suffix recomputed, so a suffix
    typed in the wrong case still names the same record.
    """
    value = str(record_id).strip()
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"not a Salesforce record id (15 or 18 letters and digits): {value[:40]!r}")
    return value[:15] + checksum_suffix(value[:15])


def is_case_id(record_id: str) -> bool:
    return bool(ID_PATTERN.fullmatch(record_id)) and record_id.startswith(CASE_PREFIX)

"""How the embedded store names a ticket's files: `<hash>.txt` and `<hash>.txt.meta.yaml`.

One place for the suffixes that writing, crash repair, the trash and the transfer all read names by.
"""

from __future__ import annotations

CONTENT_SUFFIX = ".txt"
META_SUFFIX = ".meta.yaml"  # after the content file's whole name

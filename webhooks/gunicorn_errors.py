"""Gunicorn's own error answers (a malformed request line, oversized headers, a bad Content-Length)
as the same JSON error body the app sends, instead of gunicorn's HTML page.

Gunicorn answers these before the app sees the request, through one function, `util.write_error`;
`install()` replaces it in a worker process (called from the `post_worker_init` hook).
"""

from __future__ import annotations

import json
import re
from typing import Any

from gunicorn import util

_NON_WORD = re.compile(r"[^a-z0-9]+")


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    code = _NON_WORD.sub("_", reason.lower()).strip("_") or "bad_request"
    body = json.dumps({"error": code, "message": mesg or reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    util.write_error = write_json_error

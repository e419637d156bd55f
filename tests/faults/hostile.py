"""A corpus of malformed and hostile HTTP requests, sent over raw sockets so nothing is "fixed" on the way.

Each case is one request as bytes; `send` returns the status code (or None when the server dropped
the connection without answering) and the body. Signed cases carry a valid signature, so they reach
the parser and the id checks, not only authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from data_manager.collectors.tickets.integrations.memory import SIGNATURE_HEADER


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    signed: bool = False  # a validly signed webhook: refused only by its content


def request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    content_length: int | None = None,
    chunked: bool = False,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = (
            b"".join(
                f"{len(body[i : i + 4096]):x}\r\n".encode() + body[i : i + 4096] + b"\r\n"
                for i in range(0, len(body), 4096)
            )
            + b"0\r\n\r\n"
        )
    else:
        lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_memory(body: bytes, secret: str, content_type: str = "application/json", **extra: str) -> bytes:
    return request(
        "POST",
        "/webhooks/memory",
        body,
        {"Content-Type": content_type, SIGNATURE_HEADER: signature(body, secret), **extra},
    )


def _deep(depth: int, kind: str = "list") -> bytes:
    return (b"[" * depth + b"]" * depth) if kind == "list" else (b'{"a":' * depth + b"1" + b"}" * depth)


DANGEROUS_IDS: list[object] = [
    "../../etc/passwd",
    "T1/../../x",
    "/abs/path",
    "T1\x00",
    "T1\n",
    "\ud800",  # a lone surrogate: valid JSON escape, not encodable as UTF-8
    "T" + "9" * 600,
    "",
    "   ",
    "T1; DROP TABLE tickets",
    "${jndi:ldap://x}",
    "T１２",  # fullwidth digits
    "t1",
    "T-1",
    "T1 ",
    "%2e%2e%2f",
    "CON",
    "T1\u202e",
    12,
    12.5,
    True,
    None,
    [],
    {},
    ["T1"],
    {"id": "T1"},
    "T" + "1" * 100000,
]

ODD_SHAPES: list[bytes] = [
    b"",
    b"null",
    b"true",
    b"1",
    b'"T1"',
    b"[]",
    b"[{}]",
    b"{}",
    b'{"ticket_id": "T1", "action": ["updated"]}',
    b'{"ticket_id": "T1", "action": {"a": 1}}',
    b'{"ticket_id": "T1", "action": 5}',
    b'{"ticket_id": "T1", "action": null}',
    b'{"ticket_id": "T1", "delivery_id": {"a": [1]}}',
    b'{"ticket_id": "T1", "delivery_id": "' + b"d" * 5000 + b'"}',
    b'{"ticket_id": "T1", "ticket_id": "T2"}',
    b'{"ticket_id": "T1",}',
    b"{'ticket_id': 'T1'}",
    b'{"ticket_id": NaN}',
    b'{"ticket_id": Infinity}',
    b'{"ticket_id": 1e999999}',
    b'{"ticket_id": ' + b"1" * 5000 + b"}",
    b'{"ticket_id": "T1"} trailing',
    b'{"ticket_id": "T1"}\x00',
    b"\xef\xbb\xbf" + b'{"ticket_id": "T1"}',
    b"\xff\xfe{\x00}\x00",
    b'{"ticket_id": "\xff\xfe"}',
    b'{"ticket_id": "T1\\ud800"}',
    b'{"\\ud800": 1, "ticket_id": "T1"}',
    '{"ticket_id": "T1"}'.encode("utf-16"),
    '{"ticket_id": "T1"}'.encode("utf-32"),
    _deep(100000),
    _deep(100000, "dict"),
    _deep(2000),
    _deep(900),
    b'{"ticket_id": "T1", "x": ' + _deep(50000) + b"}",
]


def corpus(secret: str, max_body: int, systems: tuple[str, ...] = ("memory", "jira", "redmine")) -> Iterator[Case]:
    """About 300 requests; `max_body` is the service's `webhooks.max_body_bytes`."""
    ok = json.dumps({"ticket_id": "T1", "action": "updated"}).encode()
    # -- dangerous ids and odd shapes, validly signed -------------------------------------------
    for n, ticket_id in enumerate(DANGEROUS_IDS):
        body = json.dumps({"ticket_id": ticket_id, "action": "updated"}).encode()
        if len(body) <= max_body:
            yield Case(f"id-{n}", signed_memory(body, secret), signed=True)
        yield Case(
            f"id-raw-{n}",
            signed_memory(
                json.dumps({"ticket_id": ticket_id}, ensure_ascii=False).encode("utf-8", "surrogatepass"), secret
            ),
            signed=True,
        )
    for n, body in enumerate(ODD_SHAPES):
        yield Case(f"shape-{n}", signed_memory(body, secret), signed=True)
    for n, body in enumerate(ODD_SHAPES):
        for system in systems[1:]:
            yield Case(
                f"shape-{system}-{n}",
                request("POST", f"/webhooks/{system}", body, {"Content-Type": "application/json"}),
            )
    # -- sizes -----------------------------------------------------------------------------------
    big = b'{"ticket_id": "T1", "pad": "' + b"x" * (max_body + 10) + b'"}'
    yield Case("oversized", signed_memory(big, secret), signed=True)
    yield Case(
        "oversized-chunked",
        request("POST", "/webhooks/memory", big, {"Content-Type": "application/json"}, chunked=True),
    )
    huge = b"x" * (8 * max_body)
    yield Case("oversized-8x", request("POST", "/webhooks/memory", huge, {"Content-Type": "application/json"}))
    yield Case(
        "oversized-8x-chunked",
        request("POST", "/webhooks/memory", huge, {"Content-Type": "application/json"}, chunked=True),
    )
    yield Case(
        "oversized-2mb", request("POST", "/webhooks/memory", b"x" * (2 << 20), {"Content-Type": "application/json"})
    )
    yield Case(
        "oversized-2mb-chunked",
        request("POST", "/webhooks/memory", b"x" * (2 << 20), {"Content-Type": "application/json"}, chunked=True),
    )
    yield Case(
        "length-lies-short",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json"}, content_length=3),
    )
    yield Case(
        "length-negative",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json"}, content_length=-1),
    )
    yield Case(
        "length-huge-declared",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json"}, content_length=10**12),
    )
    yield Case(
        "length-not-number",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json"}).replace(
            f"Content-Length: {len(ok)}".encode(), b"Content-Length: abc"
        ),
    )
    yield Case(
        "two-lengths",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json", "Content-Length": "5"}),
    )
    # -- content types ---------------------------------------------------------------------------
    for n, ctype in enumerate(
        [
            "",
            "text/plain",
            "application/xml",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=utf-16",
            "application/json; charset=latin-1",
            "application/json; charset=nope",
            "application/vnd.api+json",
            "APPLICATION/JSON",
            "application/json;;;",
            "application/json\x7f",
            "*/*",
            "application/" + "j" * 5000,
        ]
    ):
        yield Case(f"ctype-{n}", signed_memory(ok, secret, content_type=ctype), signed=True)
    # -- methods and paths -----------------------------------------------------------------------
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND", "FOO"):
        yield Case(f"method-{method}", request(method, "/webhooks/memory", ok, {"Content-Type": "application/json"}))
    for method in ("POST", "PUT", "DELETE"):
        yield Case(f"method-healthz-{method}", request(method, "/healthz"))
        yield Case(f"method-metrics-{method}", request(method, "/metrics"))
    for n, path in enumerate(
        [
            "/webhooks/",
            "/webhooks",
            "/webhooks/nope",
            "/webhooks/memory/",
            "/webhooks/memory/extra",
            "/webhooks/..%2fmemory",
            "/webhooks/%2e%2e/healthz",
            "/webhooks/../healthz",
            "/webhooks/memory%00",
            "/webhooks/%ff%fe",
            "/webhooks/%c0%af",
            "/webhooks/" + "a" * 3000,
            "//webhooks/memory",
            "/webhooks/memory?token=" + "x" * 3000,
            "/webhooks/memory?a=%ff&b=%00",
            "/webhooks/MEMORY",
            "/webhooks/memory;x=1",
            "/webhooks/memory#frag",
            "/webhooks/_unknown",
            "/webhooks/__proto__",
            "/openapi.json/x",
            "/\\webhooks\\memory",
            "*",
            "http://evil.example/webhooks/memory",
        ]
    ):
        yield Case(f"path-{n}", request("POST", path, ok, {"Content-Type": "application/json"}))
    # -- headers ----------------------------------------------------------------------------------
    yield Case("header-huge", signed_memory(ok, secret, **{"X-Big": "a" * 9000}), signed=True)
    yield Case("header-many", signed_memory(ok, secret, **{f"X-H{i}": "1" for i in range(150)}), signed=True)
    yield Case(
        "header-signature-huge",
        request(
            "POST",
            "/webhooks/memory",
            ok,
            {"Content-Type": "application/json", SIGNATURE_HEADER: "sha256=" + "0" * 6000},
        ),
    )
    yield Case(
        "header-signature-latin1",
        request(
            "POST", "/webhooks/memory", ok, {"Content-Type": "application/json", SIGNATURE_HEADER: "sha256=\xe9\xe9"}
        ),
    )
    yield Case(
        "header-signature-empty",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json", SIGNATURE_HEADER: ""}),
    )
    yield Case(
        "header-signature-sha256=",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json", SIGNATURE_HEADER: "sha256="}),
    )
    yield Case(
        "header-signature-nonhex",
        request(
            "POST", "/webhooks/memory", ok, {"Content-Type": "application/json", SIGNATURE_HEADER: "sha256=zz\u00e9"}
        ),
    )
    yield Case(
        "header-token-query",
        request("POST", "/webhooks/redmine?token=%ff%00", ok, {"Content-Type": "application/json"}),
    )
    yield Case(
        "header-token",
        request("POST", "/webhooks/redmine", ok, {"Content-Type": "application/json", "X-Webhook-Token": "\xff"}),
    )
    yield Case(
        "header-jira-sig",
        request(
            "POST", "/webhooks/jira", ok, {"Content-Type": "application/json", "X-Hub-Signature": "sha512=" + "f" * 128}
        ),
    )
    yield Case(
        "header-no-host",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json"}).replace(
            b"Host: localhost\r\n", b""
        ),
    )
    yield Case("header-expect", signed_memory(ok, secret, Expect="100-continue"), signed=True)
    yield Case("header-expect-bogus", signed_memory(ok, secret, Expect="bogus"), signed=True)
    yield Case(
        "header-bad-name", request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json", "X Bad": "1"})
    )
    yield Case(
        "header-folded",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json", "X-A": "1\r\n  continued"}),
    )
    yield Case(
        "http10",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json"}).replace(b"HTTP/1.1", b"HTTP/1.0"),
    )
    yield Case("http09", b"GET /healthz\r\n\r\n")
    yield Case("request-line-huge", request("GET", "/" + "a" * 9000))
    yield Case(
        "chunked-bad",
        request("POST", "/webhooks/memory", b"", {"Content-Type": "application/json"}, chunked=True).replace(
            b"0\r\n\r\n", b"zz\r\nabc\r\n0\r\n\r\n"
        ),
    )
    yield Case(
        "te-and-cl",
        request("POST", "/webhooks/memory", ok, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}),
    )


def send(host: str, port: int, case: Case, timeout: float = 10.0) -> tuple[int | None, bytes]:
    """The status code (None when the connection was dropped without an answer) and the body."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(case.raw)
        except OSError:
            pass  # the server may answer (413) before the whole body is sent
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            pass
    data = b"".join(chunks)
    if not data.startswith(b"HTTP/"):
        return None, data
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None, data

"""Serve a fake ticket system (a WSGI app with a `base_url`) over real HTTP on loopback, from a daemon thread.

One helper for the Jira, Bugzilla and Salesforce fakes: keep-alive (HTTP/1.1, like a real server behind
a load balancer), no access log, a free port unless one is given, and a `RunningFake` that stops the
server and its thread (also as a context manager).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.faults import Fault, Faults


class WsgiFake(Protocol):
    """A fake's state and WSGI app; `base_url` is set to where it is served."""

    base_url: str

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]: ...


FakeT = TypeVar("FakeT", bound=WsgiFake)


class FakeApp:
    """The WSGI side every fake shares: `handle(request)` answers, then the `after_request` hooks run.

    A hook (`hook(fake, request)`) changes the fake's state between requests, e.g. expires every
    session right after a request, so a test can make the world change in the middle of a listing.
    """

    base_url: str = ""
    after_request: list[Callable[[Any, Request], None]]
    faults: Faults

    def inject(self, status: int, **fault: Any) -> Fault:
        """Answer the next matching requests with `status` instead: `Faults.inject`'s path, method, times, headers, body."""
        return self.faults.inject(status, **fault)

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        for hook in list(self.after_request):
            hook(self, request)
        return response(environ, start_response)


class _QuietKeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class RunningFake(Generic[FakeT]):
    fake: FakeT
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.fake.base_url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> RunningFake[FakeT]:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(fake: FakeT, *, host: str = "127.0.0.1", port: int = 0, name: str = "fake-server") -> RunningFake[FakeT]:
    """Serve `fake` on `host:port` (0: a free port) from a daemon thread called `name`; its `base_url` is set."""
    server = make_server(host, port, fake, threaded=True, request_handler=_QuietKeepAliveHandler)
    server.daemon_threads = True  # type: ignore[attr-defined]  # threaded=True makes a ThreadingMixIn server
    fake.base_url = f"http://{host}:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=name, daemon=True)
    thread.start()
    return RunningFake(fake, server, thread)

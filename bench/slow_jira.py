"""A fake Jira Cloud that answers every request after a fixed delay, as a remote server would.

    python -m bench.slow_jira --issues 200 --latency-ms 20      prints JIRA_URL=... and serves until killed

Run in its own process so its threads never compete with the client's for the GIL.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import make_server

from tests.integrations.jira.fake_server import FakeJira, _QuietKeepAliveHandler


def delayed(app: Callable[..., Iterable[bytes]], seconds: float) -> Callable[..., Iterable[bytes]]:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        time.sleep(seconds)
        return app(environ, start_response)

    return wrapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    fake = FakeJira(deployment="cloud")
    fake.seed(args.issues)
    server = make_server(
        "127.0.0.1", 0, delayed(fake, args.latency_ms / 1000), threaded=True, request_handler=_QuietKeepAliveHandler
    )
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_port}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    print(f"JIRA_URL={fake.base_url}", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

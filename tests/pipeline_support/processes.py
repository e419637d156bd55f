"""Real processes for end-to-end tests: gunicorn serving the webhook app, `tickets worker`, redis-server.

Each process logs to a file in the test's directory (shown when a test fails) and runs in its own
session, so a test can kill -9 a worker's whole process group like a crash would. Every process is
tethered to the test run (`tether.py`): if the run is killed, they and all they started die with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
import requests

from tests.pipeline_support.tether import tethered

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Process:
    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, **tethered(env)
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def descendants(self) -> list[int]:
        """Children and grandchildren (RQ's work horse runs in its own process group)."""
        found: list[int] = []
        todo = [self.pid]
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    children = [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    continue
                found += children
                todo += children
        return found

    def kill9(self) -> None:
        """Like a crash: SIGKILL the process, its group and every descendant (the work horse too)."""
        victims = [self.pid, *self.descendants()]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(10)
        self._log.close()

    def stop(self, timeout: float = 10) -> None:
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def start_web(
    config: Path,
    log_dir: Path,
    *,
    workers: int = 2,
    threads: int = 4,
    app: str = "webhooks.wsgi:app",
    name: str = "web",
    wait: bool = True,
    env: dict[str, str] | None = None,
) -> tuple[Process, str]:
    port = free_port()
    proc = Process(
        name,
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "webhooks" / "gunicorn_conf.py"), app],
        log_dir,
        env={
            "TICKETS_CONFIG": str(config),
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "WEB_THREADS": str(threads),
            "WEB_LOG_LEVEL": "warning",
            **(env or {}),
        },
    )
    url = f"http://127.0.0.1:{port}"
    if wait:

        def up() -> bool:
            if not proc.alive():
                raise AssertionError(f"{name} exited:\n{proc.log()}")
            try:
                return requests.get(url + "/healthz", timeout=1).status_code in (200, 404, 503)
            except requests.RequestException:
                return False

        wait_for(up, 20, what=f"{name} to answer")
    return proc, url


def start_worker(
    config: Path, log_dir: Path, *args: str, name: str = "worker", redis_url: str | None = None
) -> Process:
    conn = redis.Redis.from_url(redis_url) if redis_url else None
    before = set(conn.smembers("rq:workers")) if conn else set()
    proc = Process(name, [sys.executable, "-m", "workers.cli", "--config", str(config), "worker", *args], log_dir)
    if conn is not None:

        def registered() -> bool:
            if not proc.alive():
                raise AssertionError(f"{name} exited:\n{proc.log()}")
            return bool(set(conn.smembers("rq:workers")) - before)

        wait_for(registered, 20, what=f"{name} to register")
    return proc


def cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **tethered(),
    )


class RedisServer:
    """A private redis-server on a free port (for outage tests: never stop the shared one)."""

    def __init__(self, log_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = Process(
            "redis",
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(log_dir),
            ],
            log_dir,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)

        def ping() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(ping, 10, what="private redis-server")

    def stop(self) -> None:
        self.proc.stop()

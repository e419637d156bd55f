"""What the fault runs share: a private redis-server (persistent on demand), the stack of real
processes around it, and the figures table printed at the end of the session.

Every run starts its own processes and its own `redis-server` on a free port and stops only those.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import redis
import requests

from data_manager.collectors.tickets.memory_backend import FileBackedBackend
from service.settings import Names
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import Process, free_port, start_web, start_worker, wait_for
from tests.pipeline_support.signing import signed

FIGURES: list[tuple[str, str, str, str]] = []  # (run, figure, value, promise)


def figure(run: str, name: str, value: object, promise: str) -> None:
    FIGURES.append((run, name, str(value), promise))


def figures_table() -> str:
    if not FIGURES:
        return ""
    widths = [max(len(row[i]) for row in [("run", "figure", "value", "promise"), *FIGURES]) for i in range(4)]
    lines = []
    for row in [("run", "figure", "value", "promise"), tuple("-" * w for w in widths), *FIGURES]:
        lines.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    return "\n".join(lines)


class PrivateRedis:
    """A redis-server of our own on a free port; `persistent` = `appendonly yes` + fsync always."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.dir = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persistent = persistent
        self.starts = 0
        self.proc: Process | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        args = [self.binary or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.dir), "--dbfilename", "dump.rdb"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.proc = Process(f"redis-{self.starts}", args, self.dir)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.BusyLoadingError:
                return False
            except redis.RedisError:
                return False

        wait_for(ready, 15, what="private redis-server")

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill9()

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.thaw()
            except ProcessLookupError:
                pass
            self.proc.stop()


class FaultStack:
    """The memory system on a file-backed upstream, gunicorn and `tickets worker`s on a private Redis."""

    def __init__(self, directory: Path, redis_url: str, **config: Any) -> None:
        self.dir = directory
        self.redis_url = redis_url
        self.config = write_config(directory, redis_url, **config)
        self.upstream = FileBackedBackend(directory / "upstream.json")
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self.names = Names("tickets")
        self.processes: list[Process] = []
        self.workers: list[Process] = []
        self.url = ""
        self._n = 0

    def web(self, **kwargs: Any) -> str:
        proc, self.url = start_web(self.config, self.dir, **kwargs)
        self.processes.append(proc)
        return self.url

    def worker(self, *args: str) -> Process:
        self._n += 1
        proc = start_worker(self.config, self.dir, *args, name=f"worker-{self._n}", redis_url=self.redis_url)
        self.processes.append(proc)
        self.workers.append(proc)
        return proc

    def post(self, ticket_id: str, timeout: float = 10) -> requests.Response:
        body, headers = signed({"ticket_id": ticket_id, "action": "updated"})
        return requests.post(f"{self.url}/webhooks/memory", data=body, headers=headers, timeout=timeout)

    def stored_path(self, ticket_id: str) -> Path:
        return self.dir / "data" / "tickets" / f"memory_{ticket_id}.txt"

    def stored_count(self, ticket_ids: list[str]) -> int:
        return sum(1 for t in ticket_ids if self.stored_path(t).exists())

    def horse_pids(self) -> dict[str, int]:
        """Each live worker's current work horse (from its lease info)."""
        found = {}
        for raw_name in self.redis.smembers(self.names.leased_workers):
            name = raw_name.decode()
            raw = self.redis.get(self.names.worker_lease(name) + ":info")
            info = json.loads(raw) if raw else {}
            if info.get("horse_pid"):
                found[name] = int(info["horse_pid"])
        return found

    def failed_count(self) -> int:
        return sum(self.redis.zcard(f"rq:failed:{q}") for q in self.names.queues)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-3000:]}" for p in self.processes)

    def close(self) -> None:
        for proc in self.processes:
            proc.stop()
        self.redis.close()


def wait_until(condition: Any, timeout: float, what: str, stack: FaultStack | None = None) -> None:
    try:
        wait_for(condition, timeout, interval=0.2, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.logs() if stack else ''}") from None


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"

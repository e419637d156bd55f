"""One deployment of the pipeline for end-to-end tests of real integrations: config, gunicorn, workers.

Unlike the memory tests' upstream file, a real system (a fake Jira, a real Redmine) is reached over
HTTP, so a stack is cheap to share between the tests of a module: each test works on tickets of its
own, and a stack's key prefix keeps its queues apart from any other stack on the same Redis database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import redis
import requests

from data_manager.collectors.tickets.ticket_resource import resource_hash
from service.coalesce import ticket_key
from service.settings import Names
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import Process, cli, start_web, start_worker, wait_for

WEBHOOK_BODY_LIMIT = 1 << 20  # real payloads (a Jira issue with its fields) are far over the memory tests' 4 KiB


class PipelineStack:
    """A config with the given ticket systems (memory disabled), and the processes serving it."""

    def __init__(
        self, directory: Path, redis_url: str, sources: Mapping[str, dict[str, Any]], *, key_prefix: str, **config: Any
    ) -> None:
        self.dir = directory
        self.redis_url = redis_url
        self.names = Names(key_prefix)
        self.config = write_config(
            directory,
            redis_url,
            key_prefix=key_prefix,
            memory={"enabled": False},
            sources=dict(sources),
            webhooks={"max_body_bytes": WEBHOOK_BODY_LIMIT},
            **config,
        )
        self.tickets_dir = directory / "data" / "tickets"
        self.redis = redis.Redis.from_url(redis_url)
        self.processes: list[Process] = []
        self.url = ""

    # -- processes ------------------------------------------------------------------------------
    def web(self, env: dict[str, str] | None = None) -> str:
        proc, self.url = start_web(self.config, self.dir, env=env)
        self.processes.append(proc)
        return self.url

    def worker(self, *args: str, name: str = "worker") -> Process:
        proc = start_worker(self.config, self.dir, *args, name=name, redis_url=self.redis_url)
        self.processes.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = 60) -> Any:
        return cli(self.config, *args, timeout=timeout)

    def log_of(self, name: str) -> str:
        return next(p for p in self.processes if p.name == name).log()

    def wait_log(self, name: str, pattern: str, timeout: float = 10) -> str:
        """The process's log once a line matches `pattern` (a job logs its outcome just after writing)."""

        def matched() -> str:
            log = self.log_of(name)
            return log if re.search(pattern, log) else ""

        try:
            return str(wait_for(matched, timeout, what=f"{pattern!r} in the {name} log"))
        except AssertionError:
            raise AssertionError(f"no {pattern!r} in:\n{self.log_of(name)[-4000:]}") from None

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in self.processes)

    def close(self) -> None:
        for proc in self.processes:
            proc.stop()
        self.redis.close()

    # -- webhooks -------------------------------------------------------------------------------
    def post(
        self, system: str, body: bytes, headers: Mapping[str, str], *, query: Mapping[str, str] | None = None
    ) -> requests.Response:
        return requests.post(
            f"{self.url}/webhooks/{system}", data=body, headers=dict(headers), params=query, timeout=10
        )

    def post_json(
        self,
        system: str,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        *,
        query: Mapping[str, str] | None = None,
    ) -> requests.Response:
        body = json.dumps(payload).encode()
        return self.post(system, body, {"Content-Type": "application/json", **(headers or {})}, query=query)

    # -- what the workers stored ----------------------------------------------------------------
    def path(self, system: str, ticket_id: str) -> Path:
        return self.tickets_dir / f"{resource_hash(system, str(ticket_id))}.txt"

    def stored(self, system: str, ticket_id: str) -> str:
        try:
            return self.path(system, ticket_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def stored_ids(self, system: str) -> set[str]:
        """Ticket ids with a file, from the file names (ids here never need the hash's digest form)."""
        prefix = f"{system}_"
        return (
            {p.name[len(prefix) : -4] for p in self.tickets_dir.glob(f"{prefix}*.txt")}
            if self.tickets_dir.exists()
            else set()
        )

    def wait_stored(self, system: str, ticket_id: str, *texts: str, timeout: float = 20) -> str:
        """The ticket's file once it contains every one of `texts`."""

        def ready() -> str:
            content = self.stored(system, ticket_id)
            return content if content and all(text in content for text in texts) else ""

        try:
            return str(wait_for(ready, timeout, what=f"{system}:{ticket_id} stored with {texts!r}"))
        except AssertionError:
            raise AssertionError(
                f"{system}:{ticket_id} has:\n{self.stored(system, ticket_id)[:2000]}\n{self.logs()}"
            ) from None

    def wait_gone(self, system: str, ticket_id: str, timeout: float = 20) -> None:
        try:
            wait_for(
                lambda: not self.path(system, ticket_id).exists(), timeout, what=f"{system}:{ticket_id}'s file to go"
            )
        except AssertionError:
            raise AssertionError(self.logs()) from None

    def wait_all_stored(self, system: str, expected: Mapping[str, Iterable[str]], timeout: float = 60) -> None:
        """Every ticket in `expected` stored with all of its texts (checked again only for those still missing)."""
        missing = {ticket_id: list(texts) for ticket_id, texts in expected.items()}

        def done() -> bool:
            for ticket_id, texts in list(missing.items()):
                content = self.stored(system, ticket_id)
                if content and all(text in content for text in texts):
                    del missing[ticket_id]
            return not missing

        try:
            wait_for(done, timeout, interval=0.2, what=f"{len(missing)} {system} tickets to be stored")
        except AssertionError:
            sample = sorted(missing)[:5]
            raise AssertionError(
                f"{len(missing)} not stored as expected, e.g. {sample}: "
                f"{self.stored(system, sample[0])[:1500]!r}\n{self.logs()}"
            ) from None

    # -- the queue ------------------------------------------------------------------------------
    def jobs_for(self, system: str, ticket_id: str) -> list[str]:
        """RQ job keys ever created for this ticket (job ids embed the ticket) and its coalescing state."""
        key = ticket_key(system, str(ticket_id))
        found = [k.decode() for k in self.redis.scan_iter(f"rq:job:{self.names.safe_prefix}-{key}-*")]
        if self.redis.exists(self.names.ticket_state(key)):
            found.append(self.names.ticket_state(key))
        return found

    def failed(self) -> list[dict[str, Any]]:
        result = self.cli("failed", "list", "--json")
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout or "[]"))

    def metric(self, line_start: str) -> float | None:
        """A counter's value from /metrics (e.g. 'tickets_job_outcomes_total{outcome="retried",system="jira"}')."""
        for line in requests.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

"""The `tickets` command through click's runner, against a real Redis and the file-backed upstream."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from rq import Queue, SimpleWorker

from data_manager.collectors.tickets.memory_backend import FileBackedBackend
from data_manager.collectors.tickets.model import TicketData
from data_manager.config import load_config
from service.runtime import Runtime
from tests.pipeline_support.configs import write_config
from workers.cli import main
from workers.jobs import job_class_for


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def upstream(tmp_path: Path) -> FileBackedBackend:
    return FileBackedBackend(tmp_path / "upstream.json")


def drain(config: Path) -> None:
    runtime = Runtime(load_config(config))
    SimpleWorker(
        [Queue(q, connection=runtime.redis) for q in runtime.names.queues],
        connection=runtime.redis,
        job_class=job_class_for(runtime),
    ).work(burst=True)


def test_check_config_shows_redacted_settings_and_warnings(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url, memory={"webhook_secret": None})
    code, out = run(config, "check-config")
    assert code == 0
    assert "enabled systems: memory" in out
    assert "WARNING data_manager.sources.tickets.memory.webhook_secret is not set" in out
    config = write_config(tmp_path, redis_url.replace("redis://", "redis://:hunter2@"))
    code, out = run(config, "check-config")
    assert "hunter2" not in out and "webhook_secret: '***'" in out and "test-webhook-secret" not in out


@pytest.mark.parametrize(
    ("override", "key_path"),
    [
        ({"workers": {"max_attempts": 0}}, "workers.max_attempts"),
        ({"memory": {"resync_concurrency": "lots"}}, "data_manager.sources.tickets.memory.resync_concurrency"),
    ],
)
def test_check_config_errors_name_the_key_path_and_exit_non_zero(
    tmp_path: Path, redis_url: str, override: dict, key_path: str
) -> None:  # type: ignore[type-arg]
    config = write_config(tmp_path, redis_url, **override)
    result = CliRunner().invoke(main, ["--config", str(config), "check-config"])
    assert result.exit_code == 1
    assert key_path in result.output


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.yaml"), "status"])
    assert result.exit_code == 1 and "nope.yaml does not exist" in result.output


def test_inline_resync_summary_and_exit_code(tmp_path: Path, redis_url: str, upstream: FileBackedBackend) -> None:
    config = write_config(tmp_path, redis_url)
    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(5)]
    upstream.inject_fault(ids[2], fail_next=1, error="permanent", status=403)
    code, out = run(config, "resync")
    assert code == 1
    assert "fetched 4, written 4" in out and "failed 1" in out and f"failed {ids[2]}: PermanentError" in out
    code, out = run(config, "resync", "--json")
    summary = json.loads(out[out.index("{") :])["memory"]
    assert code == 0 and summary["fetched"] == 5 and summary["written"] == 1

    upstream.delete(ids[0])
    code, out = run(config, "resync", "--full")
    assert code == 0 and "deleted 1" in out


def test_resync_options_are_checked(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, redis_url)
    assert "exclude each other" in run_err(config, "resync", "--since", "2024-01-01", "--full")
    assert "not an ISO-8601 time" in run_err(config, "resync", "--since", "yesterday")
    assert "jira not enabled (enabled: memory)" in run_err(config, "resync", "--system", "jira")


def run_err(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code != 0
    return result.output


def test_resync_enqueue_then_failed_list_requeue_purge_and_status(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend
) -> None:
    config = write_config(tmp_path, redis_url)
    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(4)]
    upstream.inject_fault(ids[1], fail_next=1, error="permanent", status=401)
    upstream.inject_fault(ids[2], fail_next=1, error="permanent", status=400)
    code, out = run(config, "resync", "--enqueue")
    assert code == 0 and "listed 4, enqueued 4" in out
    code, out = run(config, "status")
    assert "tickets-bulk: 4 queued" in out and "tickets-live: 0 queued" in out

    drain(config)
    code, out = run(config, "failed", "list", "--json")
    failed = json.loads(out)
    assert sorted(f["ticket_id"] for f in failed) == [ids[1], ids[2]]
    assert all(f["system"] == "memory" and f["attempts"] == 1 and f["failed_at"] for f in failed)
    by_ticket = {f["ticket_id"]: f["job_id"] for f in failed}

    code, out = run(config, "failed", "list")
    assert by_ticket[ids[1]] in out and "PermanentError" in out
    assert "say which jobs" in run_err(config, "failed", "requeue")
    assert "not in the failed registry: nope" in run_err(config, "failed", "requeue", "nope")

    code, out = run(config, "failed", "requeue", by_ticket[ids[1]])
    assert code == 0 and "1 job(s) requeued" in out
    code, out = run(config, "failed", "purge", "--system", "memory")
    assert code == 0 and "1 job(s) purged" in out
    drain(config)
    code, out = run(config, "failed", "list")
    assert out.strip() == "no failed jobs"
    runtime = Runtime(load_config(config))
    assert runtime.persistence.get("memory", ids[1]) is not None  # requeued and synced
    assert runtime.persistence.get("memory", ids[2]) is None  # purged: not synced

    code, out = run(config, "status")
    assert "failed jobs: 0" in out and "memory:" in out and "listed 4" in out


def test_commands_needing_redis_say_so_when_it_is_down(tmp_path: Path) -> None:
    config = write_config(tmp_path, "redis://127.0.0.1:1/0")
    assert "is not reachable" in run_err(config, "status")
    assert "is not reachable" in run_err(config, "resync", "--enqueue")


def test_full_enqueue_resync_settles_unlisted_copies_inline(tmp_path: Path, redis_url: str) -> None:
    """Stored copies the listing no longer returns are not queued as ordinary syncs: gone ones are deleted."""
    old = lambda: datetime(2024, 5, 1, tzinfo=UTC)  # noqa: E731 - long unchanged upstream
    upstream = FileBackedBackend(tmp_path / "upstream.json", clock=old)
    config = write_config(tmp_path, redis_url)
    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(4)]
    assert run(config, "resync")[0] == 0
    upstream.delete(ids[0])

    code, out = run(config, "resync", "--full", "--enqueue")

    assert code == 0
    assert "listed 3, enqueued 3, already queued 0, deletion candidates 1 (deleted 1, out of scope 0, failed 0)" in out
    runtime = Runtime(load_config(config))
    assert runtime.persistence.get("memory", ids[0]) is None  # settled at once, without a worker
    assert runtime.redis.llen(f"rq:queue:{runtime.names.bulk_queue}") == 3

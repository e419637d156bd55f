"""The mass-deletion guard, the trash and the removal log through the `tickets` command and the workers.

Real Redis, the file-backed upstream, click's runner and RQ's SimpleWorker in-process.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
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
from workers.periodic import ensure_all_scheduled, housekeeping, periodic_resync_job


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.output


def drain(config: Path) -> Runtime:
    runtime = Runtime(load_config(config))
    SimpleWorker(
        [Queue(q, connection=runtime.redis) for q in runtime.names.queues],
        connection=runtime.redis,
        job_class=job_class_for(runtime),
    ).work(burst=True)
    return runtime


@pytest.fixture
def upstream(tmp_path: Path) -> FileBackedBackend:
    old = lambda: datetime(2024, 5, 1, tzinfo=UTC)  # noqa: E731 - long unchanged upstream
    return FileBackedBackend(tmp_path / "upstream.json", clock=old)


def stored_ids(config: Path) -> set[str]:
    return Runtime(load_config(config)).persistence.ticket_ids("memory")


@pytest.mark.parametrize("enqueue", [False, True], ids=["inline", "enqueue"])
def test_guard_stops_half_the_store_going_and_allow_mass_delete_overrides_once(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend, enqueue: bool
) -> None:
    config = write_config(tmp_path, redis_url)
    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(60)]
    assert run(config, "resync")[0] == 0
    for ticket in ids[:30]:
        upstream.delete(ticket)
    extra = ["--enqueue"] if enqueue else []

    code, out = run(config, "resync", "--full", *extra)
    assert code == 1
    assert "would remove 30 of the 60 stored memory tickets (50%)" in out
    assert "resync.max_delete_fraction (0.1)" in out and "resync.max_delete_min (20)" in out
    assert "tickets resync --full --system memory --allow-mass-delete" in out
    assert stored_ids(config) == set(ids)

    code, out = run(config, "resync", "--full", "--allow-mass-delete", *extra)
    assert code == 0, out
    assert stored_ids(config) == set(ids[30:])
    code, out = run(config, "status")
    assert "removed in the last 24 hours" in out and "memory: 30 (30 deleted upstream)" in out


def test_guard_lets_five_percent_through_and_is_configurable(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend
) -> None:
    config = write_config(tmp_path, redis_url)
    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(100)]
    assert run(config, "resync")[0] == 0
    for ticket in ids[:5]:
        upstream.delete(ticket)
    code, out = run(config, "resync", "--full")
    assert code == 0 and "deleted 5" in out

    strict = write_config(tmp_path, redis_url, resync={"max_delete_fraction": 0.01, "max_delete_min": 2})
    for ticket in ids[5:8]:
        upstream.delete(ticket)
    code, out = run(strict, "resync", "--full")
    assert code == 1 and "would remove 3 of the 95" in out and stored_ids(strict) == set(ids[5:])


def test_restore_puts_a_removed_ticket_back_and_the_next_sync_decides(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend
) -> None:
    config = write_config(tmp_path, redis_url)
    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(3)]
    assert run(config, "resync")[0] == 0
    upstream.delete(ids[0])
    assert run(config, "resync", "--full")[0] == 0
    assert ids[0] not in stored_ids(config)
    data = tmp_path / "data"
    assert [p.name for p in (data / "trash").iterdir() if p.name.endswith(".txt")] == [f"memory_{ids[0]}.1.txt"]

    code, out = run(config, "status", "--json")
    [removal] = json.loads(out)["removals"]["memory"]
    assert (removal["ticket_id"], removal["reason"], removal["in_trash"]) == (ids[0], "deleted upstream", True)

    code, out = run(config, "restore", "memory", ids[0])
    assert code == 0 and f"restored memory {ids[0]}" in out and "deleted upstream" in out
    assert (data / "tickets" / f"memory_{ids[0]}.txt").read_text().startswith("Title: t0")
    assert ids[0] in stored_ids(config)
    code, out = run(config, "restore", "memory", ids[0])
    assert code == 1 and "stored already" in out
    code, out = run(config, "restore", "memory", "T424242")
    assert code == 1 and "no trashed copy of memory:T424242" in out

    assert run(config, "resync", "--full")[0] == 0  # still gone upstream: it goes again
    assert ids[0] not in stored_ids(config)


def test_a_delete_webhooks_job_logs_its_removal_as_such(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend
) -> None:
    config = write_config(tmp_path, redis_url)
    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(2)]
    assert run(config, "resync")[0] == 0
    runtime = Runtime(load_config(config))
    upstream.delete(ids[0])
    upstream.delete(ids[1])
    runtime.coalescer.submit("memory", ids[0], delete=True)
    runtime.coalescer.submit("memory", ids[1])  # an update event for a ticket that turns out to be gone
    drain(config)
    reasons = {r.ticket_id: r.reason for r in runtime.persistence.removals()}
    assert reasons == {ids[0]: "delete webhook", ids[1]: "deleted upstream"}


def test_periodic_full_resync_is_scheduled_guarded_and_fails_loudly(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend
) -> None:
    config = write_config(tmp_path, redis_url, resync={"interval_minutes": 0, "full_interval_hours": 6})
    runtime = drain(config)
    conn, names = runtime.redis, runtime.names
    now = 1_700_000_000.0
    ensure_all_scheduled(conn, names, runtime.config.resync, now=now)
    ensure_all_scheduled(conn, names, runtime.config.resync, now=now + 5)  # another worker: nothing more
    [job_id] = Queue(names.bulk_queue, connection=conn).scheduled_job_registry.get_job_ids()
    assert "-periodic-full-resync-" in job_id

    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(40)]
    assert run(config, "resync")[0] == 0
    for ticket in ids[:30]:
        upstream.delete(ticket)
    with pytest.raises(RuntimeError, match="mass deletion refused"):
        periodic_resync_job(full=True, runtime=runtime)
    assert stored_ids(config) == set(ids)
    upstream.create(TicketData(title="new"))
    for ticket in ids[30:33]:
        upstream.delete(ticket)
    assert run(config, "resync", "--full", "--allow-mass-delete")[0] == 0
    result = periodic_resync_job(full=True, runtime=runtime)
    assert result["memory"]["mode"] == "full" and result["memory"]["listed"] == 8


def test_housekeeping_purges_old_trash_once_an_hour(
    tmp_path: Path, redis_url: str, upstream: FileBackedBackend
) -> None:
    config = write_config(tmp_path, redis_url)
    ids = [upstream.create(TicketData(title=f"t{n}")) for n in range(2)]
    assert run(config, "resync")[0] == 0
    upstream.delete(ids[0])
    assert run(config, "resync", "--full")[0] == 0
    runtime = Runtime(load_config(config))
    assert runtime.config.persistence["trash_days"] == 7
    trash = tmp_path / "data" / "trash"
    assert len(list(trash.iterdir())) == 2
    assert housekeeping(runtime.redis, runtime.names, runtime.persistence, 7) == 0  # a fresh copy stays
    assert housekeeping(runtime.redis, runtime.names, runtime.persistence, 0) is None  # not again this hour
    runtime.redis.delete(f"{runtime.names.prefix}:housekeeping")
    assert housekeeping(runtime.redis, runtime.names, runtime.persistence, 0) == 1
    assert list(trash.iterdir()) == []
    assert runtime.persistence.purge_trash(timedelta(0)) == 0

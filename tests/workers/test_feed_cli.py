"""`tickets changes`: through click's runner, and `--follow` as a real process stopped by SIGINT/SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import TicketResource
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.tether import tethered
from workers.cli import main

NO_REDIS = "redis://127.0.0.1:1/0"  # the feed needs only the store
REPO = Path(__file__).resolve().parents[2]


def ticket(ticket_id: str, text: str) -> TicketResource:
    when = datetime(2024, 5, 1, 10, tzinfo=UTC)
    return TicketResource(ticket_id=ticket_id, content=text, source_type="memory", metadata={"updated_at": when})


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, NO_REDIS)


@pytest.fixture
def store(tmp_path: Path, config: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


def test_changes_prints_seq_system_id_hash_kind_after_a_seq(config: Path, store: PersistenceService) -> None:
    store.upsert(ticket("T1", "one"))
    store.upsert(ticket("T2", "two"))
    store.delete("memory", "T1")
    code, out = run(config, "changes")
    assert code == 0
    assert out.splitlines() == [
        "1 memory T1 memory_T1 written",
        "2 memory T2 memory_T2 written",
        "3 memory T1 memory_T1 removed",
    ]
    assert run(config, "changes", "--after", "1", "--limit", "1")[1].splitlines() == ["2 memory T2 memory_T2 written"]
    assert run(config, "changes", "--after", "3") == (0, "")


def test_changes_json_lines(config: Path, store: PersistenceService) -> None:
    store.upsert(ticket("T1", "one"))
    code, out = run(config, "changes", "--json")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"seq": 1, "system": "memory", "ticket_id": "T1", "hash": "memory_T1", "kind": "written"}
    ]


def test_changes_refuses_a_negative_after(config: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(config), "changes", "--after", "-1"])
    assert result.exit_code == 2 and "--after" in result.output


def _follow(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "--config", str(config), "changes", "--follow", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **tethered({"PYTHONUNBUFFERED": "1"}),
    )


def _read_lines(process: subprocess.Popen[str], count: int, timeout: float = 60) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        line = process.stdout.readline()
        if line:
            lines.append(line.rstrip("\n"))
    return lines


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_follow_prints_new_changes_as_they_commit_and_stops_cleanly(
    config: Path, store: PersistenceService, stop_signal: signal.Signals
) -> None:
    store.upsert(ticket("T1", "one"))
    process = _follow(config, "--json", "--limit", "2")
    try:
        assert [json.loads(line)["seq"] for line in _read_lines(process, 1)] == [1]
        for n in range(2, 6):  # more than a page: every one arrives, in order
            store.upsert(ticket(f"T{n}", "x"))
        store.delete("memory", "T1")
        seen = [json.loads(line) for line in _read_lines(process, 5)]
        assert [change["seq"] for change in seen] == [2, 3, 4, 5, 6]
        assert seen[-1] == {"seq": 6, "system": "memory", "ticket_id": "T1", "hash": "memory_T1", "kind": "removed"}
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out == "" and "Traceback" not in err


def test_follow_starting_after_the_newest_waits_without_printing(config: Path, store: PersistenceService) -> None:
    store.upsert(ticket("T1", "one"))
    process = _follow(config, "--after", str(store.last_change_seq()))
    try:
        time.sleep(1.0)
        store.upsert(ticket("T2", "two"))
        assert _read_lines(process, 1) == ["2 memory T2 memory_T2 written"]
        process.terminate()
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0

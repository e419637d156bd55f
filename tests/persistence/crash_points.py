"""Where crash tests SIGKILL a process: between the files of a write becoming visible one by one, or
right after any call of an `os` function (`replace`, `unlink`) inside a removal, restore or purge.

The kill is a real SIGKILL of a forked child: nothing of its Python unwinds, so no `finally` or rollback
runs, and SQLite's transaction dies with the process exactly as in production.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from data_manager.collectors import staging
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.staging import StagedFile

STAGING_KINDS = ["unnamed", "named"]


def use_staging(kind: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make writes stage unnamed inodes (where this file system can) or named temp files (as elsewhere)."""
    if kind == "named":
        monkeypatch.setattr(staging, "supports_unnamed", lambda directory: False)
    elif not staging.supports_unnamed(directory):
        pytest.skip(f"{directory}'s file system makes no unnamed inodes (O_TMPFILE)")


@pytest.fixture(params=STAGING_KINDS, name="store")
def store_staged_either_way(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> PersistenceService:
    """`store`: a data directory written with each way of staging in turn (import it into a test module)."""
    service = PersistenceService(tmp_path / "data")
    use_staging(request.param, service.tickets_dir, monkeypatch)
    return service


def held_unnamed(pid: int, directory: Path) -> int:
    """How many unnamed inodes of `directory` process `pid` holds open (staged, not yet published)."""
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{directory}/#") and target.endswith(" (deleted)"):
            held += 1
    return held


def die_after_publishes(count: int) -> None:
    """In a child process only: SIGKILL it right after its `count`-th staged file is published (0: before the first).

    Every write makes its files visible through `StagedFile.publish` (a link or a rename), inside the
    catalog transaction, so this stops a writer at each point of that transaction.
    """
    real_publish = StagedFile.publish
    done = 0

    def publish(self: StagedFile, directory_fd: int | None = None) -> None:
        nonlocal done
        if count == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        real_publish(self, directory_fd)
        done += 1
        if done == count:
            os.kill(os.getpid(), signal.SIGKILL)

    StagedFile.publish = publish  # type: ignore[method-assign]


def _die_after_calls(name: str, count: int, operation: Callable[[], object]) -> None:
    real = getattr(os, name)
    done = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if count == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        done += 1
        if done == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(os, name, wrapped)  # only in this child process
    operation()
    os._exit(3)  # the operation finished, so the kill point was never reached: the caller fails on this code


def run_killed(name: str, count: int, operation: Callable[[], object]) -> None:
    """Run `operation` in a forked child SIGKILLed right after its `count`-th call of `os.<name>` (0: at the first)."""
    process = multiprocessing.get_context("fork").Process(target=_die_after_calls, args=(name, count, operation))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL, f"the child made fewer than {count} calls of os.{name}"

"""Kill a real process (SIGKILL, like the OOM killer or `kill -9`) at a chosen point of a store operation.

The operation runs in a forked child in which one function of the `os` module (`replace`, `unlink`...)
is wrapped: the child kills itself as soon as that function has run `after` times (0: at its first
call, before it runs). Nothing of the child's Python unwinds, so no `finally` or rollback code runs; SQLite's
transaction dies with the process exactly as it would in production.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from typing import Any


def _die_at(name: str, after: int, operation: Callable[[], object]) -> None:
    real = getattr(os, name)
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if after == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        calls += 1
        if calls == after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(os, name, wrapped)  # only in this child process
    operation()
    os._exit(3)  # the operation finished, so the kill point was never reached: the caller fails on this code


def run_killed(name: str, after: int, operation: Callable[[], object]) -> None:
    """Run `operation` in a forked child that is SIGKILLed right after its `after`-th call of `os.<name>`."""
    process = multiprocessing.get_context("fork").Process(target=_die_at, args=(name, after, operation))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL, f"the child made fewer than {after} calls of os.{name}"

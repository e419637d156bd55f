"""Tie every process a test starts to the test run, so a killed run leaves nothing behind.

A killed test run (SIGKILL, a CI timeout, a closed terminal) used to leave its gunicorn, workers and fakes
running on a Redis test database. Two ties, both set up by `tethered(env)`, the keyword arguments for
`subprocess.Popen` / `subprocess.run`:

- PR_SET_PDEATHSIG: the started process itself gets SIGKILL the moment the thread that started it dies
  (it survives exec; start test processes from the main thread, as fixtures do, not from short-lived
  threads). Set in `preexec_fn`, which only calls prctl (resolved before the fork) and getppid.
- The reaper (`reaper.py`): one per run, it SIGKILLs every process carrying the run's marker in its
  environment once the run is gone, which reaches what the started processes started in turn (gunicorn's
  workers, RQ's scheduler, work horses) whatever process group they are in.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.pipeline_support.reaper import MARKER_VARIABLE, PR_SET_PDEATHSIG

ROOT = Path(__file__).resolve().parents[2]
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the forked child only calls it


class _Run:
    """This test run's marker and its reaper (one per process: a forked test process gets its own)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.marker = f"{self.pid}-{uuid.uuid4().hex}"
        self.reaper = subprocess.Popen(
            [sys.executable, "-m", "tests.pipeline_support.reaper", self.marker, str(self.pid)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a test's killpg or the terminal's Ctrl-C never reaches it first
        )


_run: _Run | None = None


def current_run() -> _Run:
    global _run
    if _run is None or _run.pid != os.getpid():
        _run = _Run()
    return _run


def die_with(parent_pid: int) -> Callable[[], None]:
    """A `preexec_fn`: SIGKILL when the starting thread dies; exit at once if the parent is already gone."""

    def tie() -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return tie


def tethered(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`Popen` keyword arguments that tie the process (and all it starts) to this test run."""
    run = current_run()
    return {
        "env": {**os.environ, **(env or {}), MARKER_VARIABLE: run.marker},
        "preexec_fn": die_with(os.getpid()),
    }

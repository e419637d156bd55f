"""The reaper: kills every process a test run started once the test run dies, however it dies.

Started once per test run (`tether.py`), in its own session, with its stdin a pipe from the run. When the
run ends (stdin reaches EOF: the run exited or was SIGKILLed) or dies (PR_SET_PDEATHSIG sends SIGTERM),
it SIGKILLs every process whose environment carries the run's marker (`TICKETS_TEST_RUN=<id>`): the
processes the run started and all they started in turn (gunicorn's workers, RQ's scheduler, work horses),
whatever process group or session they moved to. Only processes with this run's marker are touched.

    python -m tests.pipeline_support.reaper MARKER RUN_PID
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
MARKER_VARIABLE = "TICKETS_TEST_RUN"


def marked_processes(marker: str) -> list[int]:
    """Pids (not ours) whose initial environment holds `TICKETS_TEST_RUN=<marker>`."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def reap(marker: str) -> int:
    """SIGKILL every marked process, again until none is left (a dying parent may still fork); how many."""
    killed: set[int] = set()
    for _ in range(20):
        victims = marked_processes(marker)
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return len(killed)


def main(argv: list[str]) -> int:
    marker, run_pid = argv[0], int(argv[1])

    def on_death(*_: object) -> None:
        reap(marker)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_death)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != run_pid:  # the run died before prctl took effect
        on_death()
    while sys.stdin.buffer.read(4096):  # the run never writes; EOF means it is gone
        pass
    on_death()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

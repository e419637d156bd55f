"""A killed test run leaves no process behind (tests/pipeline_support/tether.py).

Each test starts a stand-in test run (a Python process), lets it start processes the way the tests do,
SIGKILLs the run, and watches what it started die with it: the started process through PR_SET_PDEATHSIG,
and a grandchild that moved to its own session (like a work horse) through the reaper. A process the
run started without the tether is left alone: the reaper kills only what carries the run's marker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline_support.processes import ROOT, wait_for
from tests.pipeline_support.tether import tethered

pytestmark = pytest.mark.slow

# Started by the stand-in run: forks a grandchild that leaves the process group and session, then both sleep.
FAMILY = """
import json, os, sys, time
if os.fork() == 0:
    os.setsid()
    with open(sys.argv[1] + ".tmp", "w") as out:
        json.dump({"child": os.getppid(), "grandchild": os.getpid()}, out)
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(120)
    os._exit(0)
time.sleep(120)
"""

RUN_WITH_PROCESS = """
import sys, time
from pathlib import Path
from tests.pipeline_support.processes import Process
Process("family", [sys.executable, "-c", sys.argv[1], sys.argv[2]], Path(sys.argv[3]))
print("started", flush=True)
time.sleep(120)
"""

RUN_WITH_PDEATHSIG_ONLY = """
import os, subprocess, sys, time
from tests.pipeline_support.tether import die_with
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=die_with(os.getpid()))
untethered = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(untethered.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def children_of(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").glob("*") for c in (task / "children").read_text().split()]


def start_run(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, **tethered()
    )


def test_a_killed_run_takes_its_processes_and_their_children_with_it(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids.json"
    run = start_run(RUN_WITH_PROCESS, FAMILY, str(pids_file), str(tmp_path))
    try:
        assert run.stdout is not None and run.stdout.readline().strip() == "started"
        wait_for(pids_file.exists, 20, what="the family to start")
        pids = json.loads(pids_file.read_text())
        assert alive(pids["child"]) and alive(pids["grandchild"])
        assert os.getsid(pids["grandchild"]) != os.getsid(pids["child"])  # out of the child's group and session
    finally:
        run.kill()  # the stand-in run dies like a killed CI job
        run.wait(10)
    wait_for(lambda: not alive(pids["child"]), 30, what="the started process to die with the run")
    wait_for(lambda: not alive(pids["grandchild"]), 30, what="the grandchild to be reaped")


def test_pdeathsig_kills_the_started_process_and_the_reaper_spares_untethered_ones() -> None:
    run = start_run(RUN_WITH_PDEATHSIG_ONLY)
    try:
        assert run.stdout is not None
        untethered = int(run.stdout.readline())
        wait_for(lambda: len(children_of(run.pid)) == 2, 10, what="both children")
        tethered_child = next(pid for pid in children_of(run.pid) if pid != untethered)
    finally:
        run.kill()
        run.wait(10)
    try:
        wait_for(lambda: not alive(tethered_child), 30, what="the tethered child to die with its parent")
        time.sleep(0.5)
        assert alive(untethered)  # not marked, not tied: nobody touched it
    finally:
        os.kill(untethered, signal.SIGKILL)

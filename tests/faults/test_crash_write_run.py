"""The crash-during-write run: a writer of 1 MB tickets killed with SIGKILL mid-write, 15 rounds.

Promise: no torn file ever (atomic rename), no litter once the leftovers are older than a few
minutes (removed on start), and a catalog that agrees with the files after start (a file without
its row, a row whose digest does not match the file: both reconciled).
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_manager.collectors.housekeeping import ORPHAN_AGE_SECONDS, startup_check
from data_manager.collectors.persistence import PersistenceService, metadata_digest_of
from tests.faults.support import figure
from tests.pipeline_support.processes import ROOT
from tests.pipeline_support.tether import tethered

pytestmark = pytest.mark.faults
ROUNDS = 15


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_sigkill_during_writes_leaves_no_torn_file_no_litter_and_a_consistent_catalog(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(12)
    litter_seen = 0
    inconsistent_seen = 0
    version = 0
    for _ in range(ROUNDS):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.crash_writer", str(data), str(version)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            **tethered(),
        )
        assert writer.stdout is not None
        writer.stdout.readline()  # at least one version is stored
        time.sleep(rng.uniform(0.0, 0.4))
        writer.kill()
        writer.wait()
        version += 1000
        tickets = data / "tickets"
        litter_seen += len(temp_files(tickets))
        inconsistent_seen += len(check(PersistenceService(data), strict=False))

    tickets = data / "tickets"
    litter = temp_files(tickets)
    litter_bytes = sum(p.stat().st_size for p in litter)
    # A start right after the crash keeps young temp files (a live writer may own them) ...
    persistence = PersistenceService(data)
    startup_check(persistence)
    assert len(temp_files(tickets)) == len(litter)
    # ... and a start a few minutes later removes them.
    old = time.time() - ORPHAN_AGE_SECONDS - 60
    for path in litter:
        os.utime(path, (old, old))
    report = startup_check(persistence)
    problems = check(persistence, strict=True)

    figure("crash-write", "rounds (SIGKILL mid 1 MB writes)", ROUNDS, "")
    figure("crash-write", "temp files left by crashes", f"{len(litter)} ({litter_bytes / 1e6:.1f} MB)", "")
    figure("crash-write", "temp files after start", len(temp_files(tickets)), "0")
    figure("crash-write", "catalog rows out of step after crashes", inconsistent_seen, "")
    figure("crash-write", "... after start", len(problems), "0")
    figure("crash-write", "torn files", sum("torn" in p for p in problems), "0")
    assert temp_files(tickets) == []
    assert problems == [], problems
    assert report.unknown_files == []


def check(persistence: PersistenceService, *, strict: bool) -> list[str]:
    """Torn files, files without a row, rows without a file, digests that do not match."""
    problems = []
    rows = {entry.hash: entry for entry in persistence.list_entries()}
    files = {p.name[:-4]: p for p in persistence.tickets_dir.glob("*.txt")}
    for hash_, path in files.items():
        text = path.read_text(encoding="utf-8")
        if not text.rstrip("\n").rsplit("\n", 1)[-1].startswith("END "):
            problems.append(f"torn {path.name}")
        entry = rows.get(hash_)
        if entry is None:
            problems.append(f"no row for {path.name}")
        elif entry.content_digest != hashlib.sha256(text.encode()).hexdigest():
            problems.append(f"digest of {path.name}")
        meta = persistence.metadata_path(hash_)
        if strict and entry is not None and meta.exists():
            if entry.metadata_digest != metadata_digest_of(meta.read_text(encoding="utf-8")):
                problems.append(f"metadata digest of {path.name}")
    problems += [f"no file for {h}" for h in rows if h not in files]
    return problems

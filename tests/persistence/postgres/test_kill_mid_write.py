"""SIGKILL a writer while it is inside its transactions: nothing committed is lost, nothing half-written is left.

A child process upserts batches of large tickets in a loop and reports each batch once `upsert_many`
returned (committed); it is killed with SIGKILL at a random moment, five times over. Afterwards every
reported version is stored (or a newer one), every row's digests match its content, and the feed is
1..N with no gap, its counter at N: a killed transaction left no row, no feed entry, no number.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import psycopg

from data_manager.collectors.postgres import PostgresPersistence
from tests.persistence.contract.support import T0
from tests.pipeline_support.postgres_db import empty_tables
from tests.pipeline_support.processes import ROOT

WRITER = """
import sys
from datetime import timedelta
from data_manager.collectors.postgres import PostgresPersistence
from tests.persistence.contract.support import T0, resource

store = PostgresPersistence(sys.argv[1])
start = int(sys.argv[2])
for version in range(start, start + 100000):
    batch = [
        (resource(f"PROJ-{t} v{version} " + "x" * 20000, T0 + timedelta(minutes=version), ticket_id=f"PROJ-{t}"), None)
        for t in range(20)
    ]
    store.upsert_many(batch)
    print(version, flush=True)
"""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_sigkill_mid_transaction_loses_nothing_and_leaves_no_half_written_row(postgres_url: str) -> None:
    empty_tables(postgres_url)
    rng = random.Random(5)
    committed = 0
    start = 1
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, postgres_url, str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # connected and writing
        assert first.strip(), "the writer did not start"
        time.sleep(rng.uniform(0.05, 0.5))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        reported = [first, *child.stdout.read().splitlines()]
        child.stdout.close()
        committed = max(committed, max(int(line) for line in reported if line.strip()))
        start = committed + 1  # the next writer goes on from the last version it was told is committed

    store = PostgresPersistence(postgres_url)
    for t in range(20):
        stored = store.get("jira", f"PROJ-{t}")
        assert stored is not None
        version = int(stored.content.split()[1][1:])
        assert version >= committed  # what upsert_many reported as committed is there (or newer)
        assert stored.entry.updated_at == (T0 + timedelta(minutes=version)).isoformat()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT content, metadata, content_digest, metadata_digest FROM tickets").fetchall()
        seqs = [row[0] for row in conn.execute("SELECT seq FROM changes ORDER BY seq").fetchall()]
        counter = conn.execute("SELECT seq FROM change_counter").fetchone()
    for content, metadata, content_digest, metadata_digest in rows:
        assert content_digest == _sha(content) and metadata_digest == _sha(metadata or "")
    assert seqs == list(range(1, len(seqs) + 1)) and counter is not None and counter[0] == len(seqs)
    assert len(seqs) >= 20 * committed and len(seqs) % 20 == 0  # a batch is one transaction: all 20 or none
    store.close()

"""Workers on many machines, one PostgreSQL: real processes, real PostgreSQL, real Redis, an HTTP upstream.

Four `tickets worker` processes, each in a working directory of its own (its own config file and an
empty data directory: no file is shared), and the web app under gunicorn, all on one PostgreSQL
database. The upstream is the fake Jira in a process of its own, reached over HTTP. 2,000 webhooks
over 500 tickets in four rounds (updates in rounds 1, 3 and 4; round 2 re-delivers round 1's events,
as senders do); during the first three the fake answers like a lagging read replica (an issue read
returns its previous version 30% of the time), so workers fetch versions out of order and the
store's ordering guard decides. One worker is killed with SIGKILL (its work
horse too) in the middle of the run and another takes its place.

At the end: every ticket at its newest version, every row whole (its digests match its content), the
change feed numbered 1..N with no gap and never two entries for one version, the failed registry empty.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml

from tests.faults.support import figure
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME
from tests.pipeline_support.configs import SECRET, write_config
from tests.pipeline_support.postgres_db import throwaway_database
from tests.pipeline_support.processes import ROOT, Process, cli, start_web, start_worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.faults]

TICKETS = 500
ROUNDS = 4  # x TICKETS webhooks = 2,000
WORKERS = 4
LAGGING_ROUNDS = 3  # the last round reads the newest version: each ticket's final fetch sees it
UPDATE_ROUNDS = (1, 3, 4)  # round 2 re-delivers round 1's events: a lagging read then goes backwards
KEY_PREFIX = "pg-scale"


@pytest.fixture
def fake_jira(tmp_path: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.jira.fake_server", "--port", "0", "--issues", str(TICKETS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "fake-jira.log", "wb"),
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("JIRA_URL="), f"fake Jira did not start: {line!r}"
        yield line.strip().split("=", 1)[1]
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def _config(directory: Path, redis_url: str, jira_url: str, database_url: str) -> Path:
    """A config of the process's own, in its own directory (nothing shared but the URLs)."""
    directory.mkdir(parents=True, exist_ok=True)
    jira = {
        "enabled": True,
        "deployment": "cloud",
        "base_url": jira_url,
        "username": DEFAULT_USERNAME,
        "api_token": DEFAULT_TOKEN,
        "jql_query": "project in (PROJ, OPS)",
        "webhook_secret": SECRET,
        "max_retries": 1,
    }
    path = write_config(
        directory,
        redis_url,
        key_prefix=KEY_PREFIX,
        memory={"enabled": False},
        sources={"jira": jira},
        webhooks={"max_body_bytes": 1 << 20},
        workers={"max_attempts": 12, "retry_base_seconds": 0.5, "retry_max_seconds": 2, "lease_seconds": 4},
    )
    document = yaml.safe_load(path.read_text())
    document["data_manager"]["store"] = {"url": database_url, "pool_max_size": 2}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _deliver(session: requests.Session, jira_url: str, web_url: str, key: str) -> int:
    signed = session.post(
        f"{jira_url}/_fake/webhooks", json={"event": "jira:issue_updated", "key": key, "secret": SECRET}, timeout=10
    ).json()
    url, body = f"{web_url}/webhooks/jira", signed["body"].encode()
    try:
        response = session.post(url, data=body, headers=signed["headers"], timeout=10)
    except requests.ConnectionError:
        # A kept-alive connection gunicorn closed (keepalive = 5 s) just as it was reused, before any answer;
        # a sender delivers again, as Jira does (the event is idempotent: the ticket is re-fetched).
        response = session.post(url, data=body, headers=signed["headers"], timeout=10)
    return response.status_code


def _drained(config: Path) -> bool:
    """No job queued, scheduled or running on any queue (`tickets status --json`)."""
    status = cli(config, "status", "--json")
    if status.returncode != 0:
        return False
    queues = json.loads(status.stdout)["queues"]
    return all(q["queued"] == 0 and q["scheduled"] == 0 and q["running"] == 0 for q in queues)


def _rows(database_url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute("SELECT ticket_id, content, metadata, content_digest, metadata_digest FROM tickets")
        return {
            row[0]: {"content": row[1], "metadata": row[2], "content_digest": row[3], "metadata_digest": row[4]}
            for row in cur.fetchall()
        }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_four_workers_on_one_postgresql_keep_every_newest_version_with_a_gapless_feed(
    tmp_path: Path, redis_url: str, fake_jira: str
) -> None:
    with throwaway_database("tickets_scale") as database_url:
        web_dir = tmp_path / "web"
        web_config = _config(web_dir, redis_url, fake_jira, database_url)
        upgraded = cli(web_config, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        processes: list[Process] = []
        try:
            web, web_url = start_web(web_config, web_dir, workers=2, threads=8)
            processes.append(web)
            worker_dirs = [tmp_path / f"worker-{n}" for n in range(WORKERS + 1)]
            for n in range(WORKERS):
                config = _config(worker_dirs[n], redis_url, fake_jira, database_url)
                processes.append(start_worker(config, worker_dirs[n], name=f"worker-{n}", redis_url=redis_url))

            admin = requests.Session()
            keys = sorted(admin.get(f"{fake_jira}/_fake/issues", timeout=10).json()["keys"])[:TICKETS]
            assert len(keys) == TICKETS
            admin.post(f"{fake_jira}/_fake/lag", json={"probability": 0.3, "seed": 7}, timeout=10)
            rng = random.Random(13)
            statuses: Counter[int] = Counter()
            killed = False
            with ThreadPoolExecutor(8) as pool:
                sessions = [requests.Session() for _ in range(8)]
                for round_ in range(1, ROUNDS + 1):
                    if round_ == LAGGING_ROUNDS + 1:
                        admin.post(f"{fake_jira}/_fake/lag", json={"probability": 0.0}, timeout=10)
                    for key in keys if round_ in UPDATE_ROUNDS else ():
                        assert (
                            admin.post(
                                f"{fake_jira}/_fake/issues/{key}", json={"summary": f"{key} r{round_}"}, timeout=10
                            ).status_code
                            == 204
                        )
                    order = list(keys)
                    rng.shuffle(order)
                    jobs = [(sessions[i % 8], key) for i, key in enumerate(order)]
                    statuses.update(pool.map(lambda job: _deliver(job[0], fake_jira, web_url, job[1]), jobs))
                    if round_ == 1:  # let round 1 finish, so round 2's re-deliveries are fetches of their own
                        wait_for(lambda: _drained(web_config), 120, interval=0.5, what="round 1 to drain")
                    if round_ == 2 and not killed:
                        # Mid-run, with jobs in flight: SIGKILL a worker and its work horse; another takes over.
                        processes[1].kill9()
                        killed = True
                        config = _config(worker_dirs[WORKERS], redis_url, fake_jira, database_url)
                        processes.append(
                            start_worker(config, worker_dirs[WORKERS], name=f"worker-{WORKERS}", redis_url=redis_url)
                        )
            assert statuses == Counter({202: ROUNDS * TICKETS}), statuses

            def all_newest() -> bool:
                rows = _rows(database_url)
                return len(rows) == TICKETS and all(f"Title: {k} r{ROUNDS}" in rows[k]["content"] for k in keys)

            started = time.monotonic()
            try:
                wait_for(all_newest, 240, interval=1.0, what="every ticket at its newest version")
            except AssertionError:
                rows = _rows(database_url)
                behind = [k for k in keys if k not in rows or f"Title: {k} r{ROUNDS}" not in rows[k]["content"]]
                logs = "\n".join(f"--- {p.name} ---\n{p.log()[-3000:]}" for p in processes)
                raise AssertionError(f"{len(behind)} behind, e.g. {behind[:5]}\n{logs}") from None
            drained_in = time.monotonic() - started

            # Every row whole: its digests are of the content and metadata it holds.
            for key, row in _rows(database_url).items():
                assert row["content_digest"] == _sha(row["content"]), key
                assert row["metadata_digest"] == _sha(row["metadata"] or ""), key

            # The feed: 1..N without a gap, only writes, never more entries for a ticket than it had versions
            # (written entries are distinct versions: an unchanged or stale snapshot adds none).
            with psycopg.connect(database_url) as conn:
                feed = conn.execute("SELECT seq, ticket_id, kind FROM changes ORDER BY seq").fetchall()
            assert [seq for seq, _, _ in feed] == list(range(1, len(feed) + 1))
            assert {kind for _, _, kind in feed} == {"written"}
            per_ticket = Counter(ticket for _, ticket, _ in feed)
            assert set(per_ticket) == set(keys)
            assert max(per_ticket.values()) <= len(UPDATE_ROUNDS) + 1  # the seeded version and one per update

            # The lagging reads did reach the store out of order, and its guard kept the newer copy.
            outcomes = Counter(
                line.split("outcome=", 1)[1].split()[0]
                for p in processes
                if p.name.startswith("worker")
                for line in p.log().splitlines()
                if "outcome=" in line
            )
            assert outcomes["stale"] > 0, outcomes

            # Nothing failed for good, and no worker kept a file of its own.
            failed = cli(web_config, "failed", "list", "--json")
            assert failed.returncode == 0 and json.loads(failed.stdout or "[]") == []
            for directory in worker_dirs:
                assert not list(directory.glob("data/tickets/*.txt"))
            run = "postgres scale"
            figure(run, "webhooks answered 202", f"{statuses[202]}/{ROUNDS * TICKETS}", "every 2xx webhook ends stored")
            figure(run, "tickets at their newest version", f"{TICKETS}/{TICKETS}", "latest state wins, in order")
            figure(run, "feed entries, gaps", f"{len(feed)}, 0", "the feed has no gap, no duplicate version")
            figure(run, "stale snapshots refused", outcomes["stale"], "an older snapshot never overwrites")
            figure(run, "workers SIGKILLed, failed jobs", "1, 0", "nothing accepted is lost")
            figure(run, "drained after the last webhook", f"{drained_in:.1f}s", "(4 workers, one PostgreSQL)")
        finally:
            for process in processes:
                if process.alive():
                    process.stop()

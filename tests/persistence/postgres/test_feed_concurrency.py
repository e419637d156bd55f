"""The PostgreSQL feed under concurrent writers: a reader following `after=last` never skips a number.

A plain SEQUENCE fails this: transaction A takes 5, B takes 6 and commits first, the reader moves past
6, and 5 (committed a moment later) is never read. The counter taken at the end of each transaction
hands out numbers in commit order, so the reader sees 1, 2, 3, ... with nothing left behind.
"""

from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta

from data_manager.collectors.persistence import UpsertOutcome
from data_manager.collectors.postgres import PostgresPersistence
from tests.persistence.contract.support import T0, resource
from tests.pipeline_support.postgres_db import empty_tables

WRITERS = 4
ROUNDS = 150


def _write(url: str, seed: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = PostgresPersistence(url)
    written = 0
    for n in range(ROUNDS):
        ticket = f"PROJ-{(n * 7 + seed) % 40}"
        minute = n * WRITERS + seed  # every writer's versions interleave with the others'
        outcome = store.upsert(resource(f"{ticket}@{minute}", T0 + timedelta(minutes=minute), ticket_id=ticket))
        written += outcome is UpsertOutcome.WRITTEN
        if n % 25 == 24:
            written += store.delete("jira", ticket)
    store.close()
    results.put(written)


def test_a_following_reader_sees_every_change_once_in_order_with_no_gaps(postgres_url: str) -> None:
    empty_tables(postgres_url)
    reader_store = PostgresPersistence(postgres_url)
    seen: list[int] = []
    problems: list[str] = []
    done = threading.Event()

    def follow() -> None:
        last = 0
        while True:
            finished = done.is_set()
            for change in reader_store.changes(after=last, limit=50):
                if change.seq != last + 1:
                    problems.append(f"after {last} came {change.seq}")
                last = change.seq
                seen.append(change.seq)
            if finished and not reader_store.changes(after=last, limit=1):
                return
            reader_store.wait_for_changes(after=last, timeout=0.2)

    reader = threading.Thread(target=follow)
    reader.start()
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    writers = [context.Process(target=_write, args=(postgres_url, seed, results)) for seed in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(180)
        assert process.exitcode == 0
    done.set()
    reader.join(60)
    total = sum(results.get(timeout=5) for _ in writers)
    assert problems == []
    assert seen == list(range(1, total + 1))
    assert reader_store.last_change_seq() == total
    # Each ticket's feed entries are distinct versions: never two `written` entries for one stored version.
    reader_store.close()

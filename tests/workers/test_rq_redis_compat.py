"""RQ and redis-py together: a worker's shutdown must not hang on its pub/sub thread.

RQ (2.x) runs the worker's command channel in redis-py's `PubSubWorkerThread` with a 60 s poll, and on
teardown unsubscribes (which wakes the thread), then calls the thread's `stop()` and joins it for at most
a second. redis-py 8.2 made `stop()` itself wait until the thread exits: when the thread has already read
the unsubscribe reply it waits out its 60 s poll, so every worker (ours and plain `rq worker`) could take a
minute to exit. `pyproject.toml` keeps redis-py below 8.2 for that; this test fails on a version that hangs.
"""

from __future__ import annotations

import threading
import time

import redis
from rq import Queue, SimpleWorker


def test_a_worker_unsubscribes_at_once_after_its_thread_saw_the_unsubscribe(redis_url: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    worker = SimpleWorker([Queue("compat-check", connection=connection)], connection=connection)
    worker.subscribe()
    thread = worker.pubsub_thread
    assert thread is not None
    deadline = time.monotonic() + 5
    while not worker.pubsub.subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.pubsub.unsubscribe()
    while worker.pubsub.subscribed and time.monotonic() < deadline:  # the thread has read the reply
        time.sleep(0.01)
    assert not worker.pubsub.subscribed

    teardown = threading.Thread(target=worker.unsubscribe, daemon=True)
    teardown.start()
    teardown.join(10)  # RQ itself waits at most a second for the thread; 60 s means the hang
    assert not teardown.is_alive(), "the worker's pub/sub thread kept its shutdown waiting"

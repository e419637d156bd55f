"""The baseline for the webhook ingest benchmark: a bare Flask app doing only HMAC + one RQ enqueue.

It does what any webhook receiver must do at the least, so the ratio shows what our endpoint's
extras (size/content-type checks, integration parsing and validation, coalescing transaction,
metrics) cost per request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from flask import Flask, jsonify, request
from redis import Redis
from rq import Queue

SECRET = os.environ.get("BENCH_SECRET", "bench-secret").encode()
connection = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=1.0)
queue = Queue("bare-bench", connection=connection)
app = Flask("bare")


@app.post("/webhooks/<system>")
def receive(system: str):  # type: ignore[no-untyped-def]
    body = request.get_data()
    given = request.headers.get("X-Signature-256", "").partition("=")[2]
    if not hmac.compare_digest(given, hmac.new(SECRET, body, hashlib.sha256).hexdigest()):
        return jsonify({"error": "unauthenticated"}), 401
    ticket_id = json.loads(body)["ticket_id"]
    job = queue.enqueue("workers.jobs.sync_ticket_job", kwargs={"system": system, "ticket_id": ticket_id})
    return jsonify({"jobs": [job.id]}), 202

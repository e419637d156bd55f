"""The fuzz run: about 300 malformed and hostile requests against gunicorn, over raw sockets.

Promise: every request answered (no dropped connection), never a 5xx, a JSON error body on every
refusal, and no job for any refused request (the jobs in Redis are exactly those of the 2xx answers).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.hostile import corpus, send
from tests.faults.support import FaultStack, PrivateRedis, figure
from tests.pipeline_support.configs import SECRET

pytestmark = pytest.mark.faults
MAX_BODY = 4096


def test_hostile_requests_get_4xx_json_and_queue_nothing(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    stack = FaultStack(
        tmp_path,
        server.url,
        webhooks={"max_body_bytes": MAX_BODY},
        sources={
            "jira": {
                "enabled": True,
                "base_url": "http://127.0.0.1:9",
                "username": "u",
                "api_token": "t",
                "webhook_secret": SECRET,
                "jql_query": "project = P",
            },
            "redmine": {"enabled": True, "base_url": "http://127.0.0.1:9", "api_key": "k", "webhook_secret": SECRET},
        },
    )
    try:
        stack.web()
        port = int(stack.url.rsplit(":", 1)[1])
        statuses: Counter[str] = Counter()
        unanswered, server_errors, not_json, accepted_jobs = [], [], [], set()
        cases = list(corpus(SECRET, MAX_BODY))
        for case in cases:
            status, body = send("127.0.0.1", port, case)
            if status is None:
                unanswered.append(case.name)
                continue
            statuses[f"{status // 100}xx"] += 1
            if status >= 500:
                server_errors.append((case.name, status, body[:200]))
            if status == 202:
                accepted_jobs |= {job["job_id"] for job in json.loads(body)["jobs"]}
            if status >= 400 and not case.raw.startswith(b"HEAD "):  # a HEAD answer has no body
                try:
                    assert "error" in json.loads(body)
                except (ValueError, AssertionError):
                    not_json.append((case.name, status, body[:120]))
        queued = {key.decode().removeprefix("rq:job:") for key in stack.redis.keys("rq:job:*")}
        refused_jobs = queued - accepted_jobs

        figure("fuzz", "requests", len(cases), "")
        figure("fuzz", "answers 2xx/4xx/5xx", f"{statuses['2xx']}/{statuses['4xx']}/{statuses['5xx']}", "0 × 5xx")
        figure("fuzz", "unanswered", len(unanswered), "0")
        figure("fuzz", "jobs for refused requests", len(refused_jobs), "0")
        assert not server_errors, f"5xx answers: {server_errors}\n{stack.logs()}"
        assert not unanswered, f"no answer to: {unanswered}"
        assert not not_json, f"refusals without a JSON error body: {not_json}"
        assert not refused_jobs, f"jobs queued for refused requests: {refused_jobs}"
        assert "Traceback" not in stack.processes[0].log()
    finally:
        stack.close()
        server.stop()

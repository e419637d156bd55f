"""`tickets worker` reads a burst of Jira webhooks' issues one by one, never through the lagging search.

Jira's search (`JiraTickets.fetch_many`) is eventually consistent: a batched read right after a write may
return the issue as it was before the change its webhook announced, and nothing would fetch it again. The
fake lags its search like a lagging index here, so a worker that batched Jira would store stale summaries.
Real worker processes on a real Redis against the fake Jira over HTTP, both deployments. The batching
systems' version is `test_horse.py::test_a_burst_of_one_batching_system_is_drained_with_batched_fetches`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from rq.job import Job

from data_manager.config import load_config
from service.runtime import Runtime
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME, start_fake_jira
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import Process, start_worker


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
def test_a_burst_of_jira_webhooks_is_read_issue_by_issue_and_stores_every_change(
    tmp_path: Path, redis_url: str, workers: list[Process], deployment: str
) -> None:
    """30 queued Jira jobs with `--batch 10` while the search lags every write: no search at all, one issue
    read each (plus its comments), and every stored issue has the summary its webhook announced."""
    with start_fake_jira(issues=30, deployment=deployment) as jira:
        fake = jira.fake
        source = {"enabled": True, "base_url": jira.url, "api_token": DEFAULT_TOKEN, "jql_query": "project = PROJ"}
        source |= {"username": DEFAULT_USERNAME} if deployment == "cloud" else {"deployment": "datacenter"}
        config = write_config(tmp_path, redis_url, sources={"jira": source})
        runtime = Runtime(load_config(config))
        keys = sorted(fake.issues, key=fake.key_rank)
        for key in keys:
            runtime.coalescer.submit("jira", key)
        run = start_worker(config, tmp_path, "--burst", "--no-scheduler", name="store", redis_url=redis_url)
        workers.append(run)
        assert run.popen.wait(timeout=120) == 0, run.log()
        assert runtime.persistence.count("jira") == len(keys)

        admin = requests.Session()
        admin.post(f"{jira.url}/_fake/lag", json={"probability": 1.0, "searches_only": True}, timeout=10)
        for key in keys:
            assert admin.post(f"{jira.url}/_fake/issues/{key}", json={"summary": f"{key} changed"}, timeout=10).ok
        job_ids = [runtime.coalescer.submit("jira", key).job_id for key in keys]
        before = len(fake.requests)
        run = start_worker(
            config, tmp_path, "--burst", "--no-scheduler", "--batch", "10", name="batched", redis_url=redis_url
        )
        workers.append(run)
        assert run.popen.wait(timeout=120) == 0, run.log()
        paths = [path for _, path, _ in fake.requests[before:]]
        assert not [path for path in paths if path.endswith(("/search", "/search/jql"))]
        assert sum(1 for path in paths if re.search(r"/issue/[A-Z]+-\d+$", path)) == len(keys)
        for key in keys:
            assert f"Title: {key} changed" in (runtime.persistence.get("jira", key).content or "")
        for job_id in job_ids:
            assert Job.fetch(job_id, connection=runtime.redis).get_status() == "finished"

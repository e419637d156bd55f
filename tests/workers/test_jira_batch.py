"""`tickets worker` drains a burst of Jira webhooks with batched searches (`JiraTickets.fetch_many`).

Real worker processes on a real Redis against the fake Jira over HTTP, both deployments. The Bugzilla
version of this is `test_horse.py::test_a_burst_of_one_batching_system_is_drained_with_batched_fetches`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rq.job import Job

from data_manager.config import load_config
from service.runtime import Runtime
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME, start_fake_jira
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import Process, start_worker


@pytest.fixture
def workers() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in started:
        proc.stop()


@pytest.mark.parametrize("deployment", ["cloud", "datacenter"])
def test_a_burst_of_jira_webhooks_is_drained_with_batched_searches(
    tmp_path: Path, redis_url: str, workers: list[Process], deployment: str
) -> None:
    """30 queued Jira jobs with `--batch 10` (one for an issue deleted upstream, one for an issue with more
    comments than the search embeds): four searches (three batches, one asked again without the deleted
    key) and three single requests instead of sixty; each job settled on its own, the gone issue removed."""
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

        gone, busy = keys[3], keys[17]
        fake.delete_issue(gone)
        for n in range(21):
            fake.add_comment(busy, f"late comment {n}")
        job_ids = [runtime.coalescer.submit("jira", key).job_id for key in keys]
        before = len(fake.requests)
        run = start_worker(
            config, tmp_path, "--burst", "--no-scheduler", "--batch", "10", name="batched", redis_url=redis_url
        )
        workers.append(run)
        assert run.popen.wait(timeout=120) == 0, run.log()
        paths = [path for _, path, _ in fake.requests[before:]]
        searches = [path for path in paths if path.endswith(("/search", "/search/jql"))]
        singles = sorted(path.rsplit("/rest/api/", 1)[1] for path in paths if path not in searches)
        assert len(searches) == 4  # 30 jobs: batches of 10; the one holding the deleted key is asked twice
        version = "3" if deployment == "cloud" else "2"
        assert singles == sorted(
            [
                f"{version}/issue/{gone}",
                f"{version}/issue/{busy}",
                f"{version}/issue/{busy}/comment",
                f"{version}/myself",
            ]
        )  # the deleted issue's 404, the busy issue on its own, the credential proof before the removal
        assert runtime.persistence.count("jira") == len(keys) - 1
        assert "late comment 20" in (runtime.persistence.get("jira", busy).content or "")
        for job_id in job_ids:
            assert Job.fetch(job_id, connection=runtime.redis).get_status() == "finished"
        assert run.log().count("job_done ") == len(keys)
        assert all(runtime.coalescer.state("jira", key) == {} for key in keys)

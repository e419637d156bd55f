"""The worker's batched drain names stored tickets as every other path does (the seam's `display_name`).

Salesforce names a stored Case "Case <CaseNumber>: <Subject>". A burst of Case jobs drained with one
batched fetch (`--batch`) once stored them under the standard "<id>: <title>" instead; real processes,
real Redis, the fake Salesforce over HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.ticket_resource import resource_hash
from data_manager.config import load_config
from service.runtime import Runtime
from tests.integrations.salesforce.fake_server import CLIENT_ID, CLIENT_SECRET, start_fake_salesforce
from tests.pipeline_support.configs import write_config
from tests.pipeline_support.processes import Process, start_worker

pytestmark = pytest.mark.slow


def test_a_burst_drained_in_one_batch_keeps_each_case_number_in_the_display_name(
    tmp_path: Path, redis_url: str, workers: list[Process]
) -> None:
    server = start_fake_salesforce(cases=8)
    try:
        source = {"enabled": True, "instance_url": server.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        config = write_config(tmp_path, redis_url, sources={"salesforce": source})
        runtime = Runtime(load_config(config))
        cases = list(server.fake.cases.values())
        for case in cases:
            runtime.coalescer.submit("salesforce", case.id)
        queries_before = sum(1 for _, path, _ in server.fake.requests if path.endswith("/query"))
        run = start_worker(config, tmp_path, "--burst", "--no-scheduler", "--batch", "8", redis_url=redis_url)
        workers.append(run)
        assert run.popen.wait(timeout=120) == 0, run.log()

        queries = sum(1 for _, path, _ in server.fake.requests if path.endswith("/query")) - queries_before
        assert queries < len(cases), f"{queries} queries for {len(cases)} cases: the burst was not batched"
        store = runtime.persistence
        assert isinstance(store, PersistenceService)
        for case in cases:
            meta = yaml.safe_load(store.metadata_path(resource_hash("salesforce", case.id)).read_text())
            assert meta["display_name"] == f"Case {case.number}: {case.subject}"
    finally:
        server.stop()

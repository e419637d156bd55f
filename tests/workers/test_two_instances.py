"""Two instances of the memory system through the web app and the job runner: paths, jobs and files per instance."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rq import Queue, SimpleWorker

from data_manager.collectors.tickets.memory_backend import FileBackedBackend
from data_manager.collectors.tickets.model import TicketData
from data_manager.config import load_config
from service.coalesce import ticket_key
from service.runtime import Runtime
from tests.pipeline_support.configs import SECRET, write_config
from tests.pipeline_support.signing import signed
from webhooks import create_app
from workers.jobs import job_class_for


@pytest.fixture
def config_path(tmp_path: Path, redis_url: str) -> Path:
    second = {"type": "memory", "enabled": True, "webhook_secret": SECRET, "store_path": str(tmp_path / "eu.json")}
    return write_config(tmp_path, redis_url, sources={"memory_eu": second})


def work(runtime: Runtime, timeout: float = 10) -> None:
    queues = [Queue(q, connection=runtime.redis) for q in runtime.names.queues]
    deadline = time.monotonic() + timeout
    while True:
        SimpleWorker(queues, connection=runtime.redis, job_class=job_class_for(runtime)).work(
            burst=True, with_scheduler=True
        )
        if not any(q.count or q.scheduled_job_registry.count for q in queues):
            return
        assert time.monotonic() < deadline, "jobs still pending"
        time.sleep(0.1)


def test_each_instance_has_its_webhook_path_jobs_and_files(
    tmp_path: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = FileBackedBackend(tmp_path / "upstream.json")
    second = FileBackedBackend(tmp_path / "eu.json")
    first_id = first.create(TicketData(title="Printer in the first"))
    second_id = second.create(TicketData(title="Printer in the second"))
    assert first_id == second_id  # the same id in two systems: two tickets, two files

    monkeypatch.setenv("TICKETS_CONFIG", str(config_path))
    config = load_config(config_path)
    runtime = Runtime(config)
    client = create_app(config).test_client()
    assert client.get("/healthz").get_json()["systems"] == ["memory", "memory_eu"]

    jobs = {}
    for name in ("memory", "memory_eu"):
        body, headers = signed({"ticket_id": first_id})
        response = client.post(f"/webhooks/{name}", data=body, headers=headers)
        assert response.status_code == 202 and response.get_json()["system"] == name
        jobs[name] = response.get_json()["jobs"][0]["job_id"]
    assert jobs["memory"] != jobs["memory_eu"] and ticket_key("memory_eu", first_id) in jobs["memory_eu"]
    assert client.post("/webhooks/memory_us", data=b"{}", headers=headers).status_code == 404

    work(runtime)
    one, two = runtime.persistence.get("memory", first_id), runtime.persistence.get("memory_eu", first_id)
    assert one is not None and "Title: Printer in the first" in one.content
    assert two is not None and "Title: Printer in the second" in two.content
    assert (tmp_path / "data" / "tickets" / f"memory_eu_{first_id}.txt").exists()
    assert runtime.coalescer.state("memory_eu", first_id) == {}

"""The fake as a separate process (as the pipeline's worker tests use it), driven through its admin endpoints."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from data_manager.collectors.tickets.errors import TicketGone
from data_manager.collectors.tickets.integration import EventAction, WebhookRequest
from data_manager.collectors.tickets.integrations.jira import JiraTickets
from tests.integrations.jira.fake_server import DEFAULT_TOKEN
from tests.pipeline_support.tether import tethered

ROOT = Path(__file__).parents[3]


@pytest.fixture
def fake_process() -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integrations.jira.fake_server",
            "--port",
            "0",
            "--issues",
            "25",
            "--deployment",
            "datacenter",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **tethered(),
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("JIRA_URL="):
            process.kill()
            pytest.fail(f"fake Jira did not start: {line!r} {process.stderr.read() if process.stderr else ''}")
        yield line.strip().split("=", 1)[1]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def test_standalone_fake_serves_the_real_client(fake_process: str) -> None:
    url = fake_process
    client = JiraTickets(
        url,
        None,
        DEFAULT_TOKEN,
        "project = PROJ",
        deployment="datacenter",
        webhook_secret="hook",
        client_options={"sleep": lambda s: None},
    )
    admin = requests.Session()
    try:
        assert admin.get(f"{url}/_fake/stats").json()["issues"] == 25
        assert len(list(client.iter_changed(None))) == 25

        # A comment arrives, Jira sends a webhook, the worker re-fetches.
        comment = admin.post(
            f"{url}/_fake/issues/PROJ-3/comments", json={"body": "from another process", "author": "customer"}
        )
        assert comment.status_code == 201
        hook = admin.post(
            f"{url}/_fake/webhooks", json={"event": "comment_created", "key": "PROJ-3", "secret": "hook"}
        ).json()
        request = WebhookRequest(body=hook["body"].encode(), headers=hook["headers"])
        client.authenticate_webhook(request)
        [event] = client.parse_webhook(request)
        assert (event.ticket_id, event.action) == ("PROJ-3", EventAction.UPSERT)
        assert client.fetch("PROJ-3").comments[-1].text == "from another process"

        # Faults are injected over HTTP too.
        admin.post(
            f"{url}/_fake/faults", json={"status": 429, "path": "/issue/PROJ-4$", "headers": {"Retry-After": "1"}}
        )
        assert client.fetch("PROJ-4").ticket_id == "PROJ-4"

        admin.post(f"{url}/_fake/issues/PROJ-5", json={"summary": "renamed elsewhere", "status": "Done"})
        assert client.fetch("PROJ-5").data.title == "renamed elsewhere"

        assert admin.delete(f"{url}/_fake/issues/PROJ-6").status_code == 204
        with pytest.raises(TicketGone):
            client.fetch("PROJ-6")
        assert admin.get(f"{url}/_fake/stats").json()["issues"] == 24
    finally:
        client.close()
        admin.close()

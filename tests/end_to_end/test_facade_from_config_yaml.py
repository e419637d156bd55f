"""`Ticket.use_backend("<name>")` for every enabled system, straight from a config.yaml (issue #9).

One config.yaml enables every system the project has, each against its server (the real Redmine) or its
stateful fake over HTTP, plus a second Jira instance (`type: jira`, Data Center): secrets come from the
environment as `${VAR}`, as in production. After `Ticket.configure(load_config(path))`, application code
switches by name and creates, comments on and reads a ticket in each, and each write lands upstream.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from data_manager.collectors.tickets import Status, Ticket
from data_manager.config import load_config
from tests.integrations.bugzilla.fake_server import ADMIN_KEY, DEFAULT_COMPONENT, DEFAULT_PRODUCT, start_fake_bugzilla
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME, start_fake_jira
from tests.integrations.salesforce.fake_server import CLIENT_ID, CLIENT_SECRET, start_fake_salesforce

if TYPE_CHECKING:
    from tests.integrations.redmine.redmine_server import RedmineServer

pytestmark = [pytest.mark.redmine, pytest.mark.slow]
pytest_plugins = ("tests.integrations.redmine.redmine_server",)  # redmine_server, redmine_project


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    running = {
        "jira": start_fake_jira(deployment="cloud"),
        "jira_legacy": start_fake_jira(deployment="datacenter"),
        "bugzilla": start_fake_bugzilla(),
        "salesforce": start_fake_salesforce(),
    }
    yield running
    for server in running.values():
        server.stop()


def test_every_enabled_system_is_usable_by_name_straight_from_config_yaml(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    servers: dict[str, Any],
    redmine_server: RedmineServer,
    redmine_project: dict[str, Any],
) -> None:
    secrets = {
        "REDMINE_API_KEY": redmine_server.api_key,
        "JIRA_API_TOKEN": DEFAULT_TOKEN,
        "BUGZILLA_API_KEY": ADMIN_KEY,
        "SF_CLIENT_SECRET": CLIENT_SECRET,
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    tickets = {
        "memory": {"enabled": True},
        "redmine": {
            "enabled": True,
            "base_url": redmine_server.url,
            "api_key": "${REDMINE_API_KEY}",
            "project_id": redmine_project["identifier"],
        },
        "jira": {
            "enabled": True,
            "base_url": servers["jira"].url,
            "username": DEFAULT_USERNAME,
            "api_token": "${JIRA_API_TOKEN}",
            "jql_query": "project = PROJ",
            "project_key": "PROJ",
        },
        "jira_legacy": {
            "type": "jira",
            "enabled": True,
            "deployment": "datacenter",
            "base_url": servers["jira_legacy"].url,
            "api_token": "${JIRA_API_TOKEN}",
            "jql_query": "project = PROJ",
            "project_key": "PROJ",
        },
        "bugzilla": {
            "enabled": True,
            "base_url": servers["bugzilla"].url,
            "api_key": "${BUGZILLA_API_KEY}",
            "product": DEFAULT_PRODUCT,
            "component": DEFAULT_COMPONENT,
        },
        "salesforce": {
            "enabled": True,
            "instance_url": servers["salesforce"].url,
            "client_id": CLIENT_ID,
            "client_secret": "${SF_CLIENT_SECRET}",
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data_manager": {"sources": {"tickets": tickets}}}), encoding="utf-8")

    names = Ticket.configure(load_config(path))
    assert sorted(names) == sorted(tickets)
    created = {}
    for name in names:
        Ticket.use_backend(name)
        ticket_id = Ticket.create(title=f"Printer jam ({name})", description="Tray 2", status=Status.OPEN)
        Ticket.comment(ticket_id, f"Reproduced through {name}", author="qa-bot")
        ticket = Ticket.read(ticket_id)
        assert ticket.data.title == f"Printer jam ({name})", name
        assert [c.text for c in ticket.comments][-1:] == [f"Reproduced through {name}"], name
        created[name] = ticket_id

    assert servers["jira"].fake.issue(created["jira"]).summary == "Printer jam (jira)"
    assert servers["jira_legacy"].fake.issue(created["jira_legacy"]).summary == "Printer jam (jira_legacy)"
    assert servers["bugzilla"].fake.bugs[int(created["bugzilla"])].summary == "Printer jam (bugzilla)"
    assert servers["salesforce"].fake.case(created["salesforce"]).subject == "Printer jam (salesforce)"
    Ticket.use_backend("redmine")
    assert Ticket.read(created["redmine"]).data.title == "Printer jam (redmine)"

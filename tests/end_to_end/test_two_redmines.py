"""Two Redmine instances side by side end to end: gunicorn + `tickets worker` + Redis + the real Redmine.

A Redmine per department: `redmine` reads one project, `redmine_ops` (`type: redmine`) another, each with
its own API user. Each has its own webhook path, files, jobs and resync cursor; `--system` picks one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from service.coalesce import ticket_key
from tests.end_to_end.test_redmine import plugin_payload
from tests.pipeline_support.configs import SECRET
from tests.pipeline_support.stack import PipelineStack

if TYPE_CHECKING:
    from tests.integrations.redmine.redmine_server import RedmineAdmin, RedmineServer

pytestmark = [pytest.mark.redmine, pytest.mark.slow]
pytest_plugins = ("tests.integrations.redmine.redmine_server",)


@dataclass
class Department:
    name: str  # the instance name
    project: dict[str, Any]
    api_user: dict[str, Any]


@dataclass
class TwoRedmines:
    server: RedmineServer
    admin: RedmineAdmin
    stack: PipelineStack
    main: Department
    ops: Department

    def new_issue(self, department: Department, subject: str) -> int:
        return int(self.admin.create_issue(department.project["identifier"], subject)["id"])

    def announce(self, name: str, issue_id: int, action: str = "opened") -> str:
        """The redmine_webhook plugin's post to `/webhooks/<name>`; the job id."""
        payload = plugin_payload(self.admin.get_issue(issue_id), action, self.server.url)
        response = self.stack.post_json(name, payload, query={"token": SECRET})
        assert response.status_code == 202, response.text
        assert response.json()["system"] == name
        return str(response.json()["jobs"][0]["job_id"])


@pytest.fixture(scope="module")
def redmines(
    redmine_server: RedmineServer,
    redmine_admin: RedmineAdmin,
    tmp_path_factory: pytest.TempPathFactory,
    module_redis_url: str,
) -> Iterator[TwoRedmines]:
    departments = []
    for name in ("redmine", "redmine_ops"):
        project = redmine_admin.create_project(f"two-{name.replace('_', '-')}")
        user = redmine_admin.create_user(f"two-{name[-3:]}", firstname="Sync")
        redmine_admin.add_member(project["identifier"], user["id"], "Manager")
        departments.append(Department(name, project, user))
    main, ops = departments

    def section(department: Department) -> dict[str, Any]:
        return {
            "enabled": True,
            "base_url": redmine_server.url,
            "api_key": department.api_user["api_key"],
            "project_id": department.project["identifier"],
            "webhook_secret": SECRET,
        }

    sources = {"redmine": section(main), "redmine_ops": {"type": "redmine", **section(ops)}}
    stack = PipelineStack(tmp_path_factory.mktemp("two-redmines"), module_redis_url, sources, key_prefix="e2e-two")
    try:
        stack.web()
        stack.worker()
        yield TwoRedmines(redmine_server, redmine_admin, stack, main, ops)
    finally:
        stack.close()
        for department in departments:
            redmine_admin.delete_project(department.project["identifier"])
            redmine_admin.delete_user(department.api_user["id"])


def test_each_instance_takes_its_own_webhooks_into_its_own_files(redmines: TwoRedmines) -> None:
    main_issue = redmines.new_issue(redmines.main, "Badge reader at the main entrance")
    ops_issue = redmines.new_issue(redmines.ops, "Rack 4 runs hot")
    main_job = redmines.announce("redmine", main_issue)
    ops_job = redmines.announce("redmine_ops", ops_issue)
    assert ticket_key("redmine_ops", str(ops_issue)) in ops_job and ticket_key("redmine", str(main_issue)) in main_job

    main_copy = redmines.stack.wait_stored("redmine", str(main_issue), "Title: Badge reader at the main entrance")
    ops_copy = redmines.stack.wait_stored("redmine_ops", str(ops_issue), "Title: Rack 4 runs hot")
    assert f"Project: {redmines.main.project['name']}" in main_copy
    assert f"Project: {redmines.ops.project['name']}" in ops_copy
    assert (redmines.stack.tickets_dir / f"redmine_ops_{ops_issue}.txt").exists()
    assert not redmines.stack.stored("redmine", str(ops_issue))
    assert not redmines.stack.stored("redmine_ops", str(main_issue))
    redmines.stack.wait_log("worker", rf"job_done system=redmine_ops ticket={ops_issue} .*outcome=written")


def test_an_issue_announced_to_the_other_instance_is_not_stored_there(redmines: TwoRedmines) -> None:
    ops_issue = redmines.new_issue(redmines.ops, "Only the ops department sees this")
    redmines.announce("redmine", ops_issue)  # the main instance's key cannot see the ops project
    redmines.stack.wait_log("worker", rf"job_done system=redmine ticket={ops_issue} .*outcome=absent")
    assert not redmines.stack.stored("redmine", str(ops_issue))


def test_resync_of_one_instance_leaves_the_other_alone(redmines: TwoRedmines) -> None:
    ops_ids = redmines.admin.create_issues(redmines.ops.project["identifier"], 4, prefix="ops resync")
    main_ids = redmines.admin.create_issues(redmines.main.project["identifier"], 3, prefix="main resync")

    result = redmines.stack.cli("resync", "--system", "redmine_ops", "--full", "--json", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summaries = json.loads(result.stdout)
    assert list(summaries) == ["redmine_ops"] and summaries["redmine_ops"]["failed"] == 0
    assert summaries["redmine_ops"]["written"] >= len(ops_ids)
    assert {str(i) for i in ops_ids} <= redmines.stack.stored_ids("redmine_ops")
    assert not {str(i) for i in main_ids} & redmines.stack.stored_ids("redmine")

    status = json.loads(redmines.stack.cli("status", "--json").stdout)
    assert status["resync"]["redmine_ops"]["last_resync"]["mode"] == "full"
    assert status["resync"]["redmine"] == {"cursor": "", "last_resync": None}  # its cursor is its own

    result = redmines.stack.cli("resync", "--system", "redmine", "--full", "--json", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(json.loads(result.stdout)) == ["redmine"]
    assert {str(i) for i in main_ids} <= redmines.stack.stored_ids("redmine")
    assert not redmines.stack.stored_ids("redmine") & {str(i) for i in ops_ids}

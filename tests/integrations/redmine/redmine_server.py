"""Fixtures and setup helpers for tests against a real Redmine (started by ../shared/redmine/start-redmine).

The server is shared with other work, so nothing here resets it: each test module makes its own private
project with a unique identifier (and deletes it afterwards), and its own users. Setup goes through the
admin REST API with plain `requests`, never through the code under test.

Test modules load it with `pytest_plugins = ("tests.integrations.redmine.redmine_server",)` and import from it only
for type hints, so pytest can rewrite the asserts in here.
"""

from __future__ import annotations

import functools
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[3]
START_SCRIPT = REPO_ROOT.parent / "shared" / "redmine" / "start-redmine"
REDMINE_APP = Path("/usr/share/redmine")

# Issue custom fields the tests need. Redmine's REST API cannot create custom fields, so they are made
# once with `rails runner`, scoped to no project: each test project enables them for itself only.
CUSTOM_FIELDS_RUBY = """
t = Tracker.pluck(:id)
IssueCustomField.find_or_create_by!(name: "Customer reference") do |f|
  f.field_format = "string"; f.is_for_all = false; f.visible = true; f.tracker_ids = t
end
IssueCustomField.find_or_create_by!(name: "Environments") do |f|
  f.field_format = "list"; f.multiple = true; f.possible_values = ["prod", "staging", "dev"]
  f.is_for_all = false; f.visible = true; f.tracker_ids = t
end
"""
CUSTOM_FIELD_NAMES = ("Customer reference", "Environments")


@dataclass(frozen=True)
class RedmineServer:
    url: str
    api_key: str


@functools.cache
def locate_server() -> RedmineServer | str:
    """The server from REDMINE_URL/REDMINE_API_KEY, else from the start script; a reason string if neither."""
    url, key = os.environ.get("REDMINE_URL"), os.environ.get("REDMINE_API_KEY")
    if url and key:
        return RedmineServer(url.rstrip("/"), key)
    if not START_SCRIPT.is_file():
        return f"no Redmine: REDMINE_URL/REDMINE_API_KEY unset and {START_SCRIPT} does not exist"
    try:
        done = subprocess.run([str(START_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no Redmine: {START_SCRIPT} could not run: {exc}"
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or not values.get("REDMINE_URL") or not values.get("REDMINE_API_KEY"):
        tail = (done.stderr or done.stdout).strip()[-500:]
        return f"no Redmine: {START_SCRIPT} exited {done.returncode}: {tail}"
    return RedmineServer(values["REDMINE_URL"].rstrip("/"), values["REDMINE_API_KEY"])


def unique(prefix: str) -> str:
    """A project identifier / login no other test run uses (Redmine identifiers: lowercase, digits, '-')."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class RedmineAdmin:
    """Test setup through the admin REST API."""

    def __init__(self, server: RedmineServer) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.headers["X-Redmine-API-Key"] = server.api_key

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        expect: tuple[int, ...] = (200, 201, 204),
        **kwargs: Any,
    ) -> Any:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["X-Redmine-API-Key"] = key
        for _ in range(40):
            response = self.session.request(
                method, f"{self.server.url}/{path.lstrip('/')}", headers=headers, timeout=30, **kwargs
            )
            # SQLite lets one writer in at a time; Redmine answers 500 for a save that found the database
            # busy (and rolled it back), so setup from several threads tries again.
            if response.status_code != 500 or 500 in expect:
                break
            time.sleep(0.05)
        assert response.status_code in expect, f"{method} {path} answered {response.status_code}: {response.text[:300]}"
        return (
            response.json()
            if response.content and response.headers.get("Content-Type", "").startswith("application/json")
            else None
        )

    # -- projects, users, memberships ----------------------------------------------------------
    def create_project(
        self, prefix: str, *, parent_id: int | None = None, custom_fields: bool = False
    ) -> dict[str, Any]:
        project: dict[str, Any] = {"name": prefix, "identifier": unique(prefix), "is_public": False}
        if parent_id is not None:
            project["parent_id"] = parent_id
        if custom_fields:
            project["issue_custom_field_ids"] = [cf["id"] for cf in self.custom_fields()]
        created = self.call("POST", "projects.json", json={"project": project}, expect=(200, 201, 422))
        if "project" in (created or {}):
            return dict(created["project"])
        # A 500 retried above can have been saved after all (a busy SQLite); the unique identifier is then taken
        # by that very project. Anything else unprocessable is a real error.
        assert "Identifier has already been taken" in str(created), f"POST projects.json answered 422: {created}"
        return dict(self.call("GET", f"projects/{project['identifier']}.json")["project"])

    def delete_project(self, identifier: str) -> None:
        self.call("DELETE", f"projects/{identifier}.json", expect=(200, 204, 404))

    def custom_fields(self) -> list[dict[str, Any]]:
        """The test custom fields, created once per server with `rails runner` when missing."""
        found = [
            cf for cf in self.call("GET", "custom_fields.json")["custom_fields"] if cf["name"] in CUSTOM_FIELD_NAMES
        ]
        if len(found) < len(CUSTOM_FIELD_NAMES):
            subprocess.run(
                ["bundle", "exec", "rails", "runner", "-e", "production", CUSTOM_FIELDS_RUBY],
                cwd=REDMINE_APP,
                check=True,
                capture_output=True,
                timeout=300,
            )
            found = [
                cf for cf in self.call("GET", "custom_fields.json")["custom_fields"] if cf["name"] in CUSTOM_FIELD_NAMES
            ]
        return found

    def create_user(
        self, prefix: str, *, firstname: str = "Test", lastname: str | None = None, comments_sorting: str | None = None
    ) -> dict[str, Any]:
        login = unique(prefix)
        body: dict[str, Any] = {
            "user": {
                "login": login,
                "firstname": firstname,
                "lastname": lastname or f"User {login[-10:]}",
                "mail": f"{login}@example.test",
                "password": "not-used-" + uuid.uuid4().hex,
            }
        }
        if comments_sorting:
            body["pref"] = {"comments_sorting": comments_sorting}
        user = self.call("POST", "users.json", json=body)["user"]
        user["api_key"] = self.call("GET", f"users/{user['id']}.json")["user"]["api_key"]
        user["name"] = f"{user['firstname']} {user['lastname']}"
        return user

    def delete_user(self, user_id: int) -> None:
        self.call("DELETE", f"users/{user_id}.json", expect=(200, 204, 404))

    def role_id(self, name: str) -> int:
        return next(r["id"] for r in self.call("GET", "roles.json")["roles"] if r["name"] == name)

    def add_member(self, project: str, user_id: int, role: str) -> None:
        self.call(
            "POST",
            f"projects/{project}/memberships.json",
            json={"membership": {"user_id": user_id, "role_ids": [self.role_id(role)]}},
        )

    # -- issues ----------------------------------------------------------------------------
    def create_issue(self, project: str, subject: str, **fields: Any) -> dict[str, Any]:
        return self.call("POST", "issues.json", json={"issue": {"project_id": project, "subject": subject, **fields}})[
            "issue"
        ]

    def create_issues(self, project: str, count: int, prefix: str = "bulk", workers: int = 3) -> list[int]:
        """Many issues quickly, from a few threads."""
        with ThreadPoolExecutor(workers) as pool:
            return sorted(pool.map(lambda n: int(self.create_issue(project, f"{prefix} {n}")["id"]), range(count)))

    def update_issue(self, issue_id: int, *, key: str | None = None, **fields: Any) -> None:
        self.call("PUT", f"issues/{issue_id}.json", key=key, json={"issue": fields})

    def delete_issue(self, issue_id: int) -> None:
        self.call("DELETE", f"issues/{issue_id}.json", expect=(200, 204, 404))

    def get_issue(self, issue_id: int, *, key: str | None = None, include: str = "journals") -> dict[str, Any]:
        return self.call("GET", f"issues/{issue_id}.json", key=key, params={"include": include})["issue"]

    def status_id(self, name: str) -> int:
        return next(s["id"] for s in self.call("GET", "issue_statuses.json")["issue_statuses"] if s["name"] == name)


def wait_for_next_second() -> None:
    """Redmine keeps `updated_on` to the second in its API; step past the current one."""
    time.sleep(1.05 - (time.time() % 1.0))


@pytest.fixture(scope="session")
def redmine_server() -> RedmineServer:
    found = locate_server()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="session")
def redmine_admin(redmine_server: RedmineServer) -> RedmineAdmin:
    return RedmineAdmin(redmine_server)


@pytest.fixture(scope="module")
def redmine_project(redmine_admin: RedmineAdmin, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A private project for this test module only, deleted afterwards."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")[:20]
    project = redmine_admin.create_project(prefix, custom_fields=True)
    yield project
    redmine_admin.delete_project(project["identifier"])


@dataclass
class RecordedRequest:
    method: str
    path: str  # with the query string
    headers: dict[str, str]


class RecordingProxy:
    """A loopback HTTP server that forwards every request to Redmine and remembers what it was sent.

    Point the code under test at `proxy.url` to see the exact requests it makes (headers, URLs).
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.requests: list[RecordedRequest] = []
        upstream = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")
                }
                proxy.requests.append(RecordedRequest(self.command, self.path, dict(self.headers.items())))
                answer = upstream.request(
                    self.command, proxy.target + self.path, headers=headers, data=body, timeout=30
                )
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Retry-After"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording_proxy(redmine_server: RedmineServer) -> Iterator[RecordingProxy]:
    """A loopback proxy in front of Redmine that records every request sent through it."""
    with RecordingProxy(redmine_server.url) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def next_second() -> Callable[[], None]:
    return wait_for_next_second

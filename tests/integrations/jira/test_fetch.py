"""`fetch` through the real client over HTTP, for Cloud (v3, ADF) and Data Center (v2, wiki markup)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from data_manager.collectors.tickets.errors import TicketGone
from data_manager.collectors.tickets.integration import EventAction, WebhookRequest
from data_manager.collectors.tickets.model import Status
from tests.integrations.jira.conftest import JiraSetup
from tests.integrations.jira.fake_server import text_as_adf

UNICODE = "Grüße aus Köln — 你好 — שלום — 👩‍💻 — e\u0301"


def comment_requests(setup: JiraSetup, key: str) -> list[str]:
    return [query for method, path, query in setup.fake.requests if path.endswith(f"/issue/{key}/comment")]


def test_fetch_maps_every_field(jira: JiraSetup) -> None:
    key = jira.fake.add_issue(
        f"Login fails: {UNICODE}",
        description=jira.native_text("First paragraph.\n\nSecond paragraph."),
        status="Waiting for customer",
        issue_type="Bug",
        priority="High",
        reporter="chen",
        assignee="bob",
        labels=["sso", "login"],
        components=["Auth", "Web"],
    )
    jira.fake.add_comment(key, jira.native_text("First answer"), author="bob")
    jira.fake.add_comment(key, jira.native_text(UNICODE), author="customer")
    issue = jira.fake.issue(key)

    snapshot = jira.client().fetch(key)

    assert snapshot.ticket_id == key
    assert snapshot.url == f"{jira.url}/browse/{key}"
    assert snapshot.project == "PROJ"
    assert snapshot.data.title == f"Login fails: {UNICODE}"
    assert snapshot.data.description == "First paragraph.\n\nSecond paragraph."
    assert snapshot.data.status is Status.IN_PROGRESS
    assert snapshot.status_name == "Waiting for customer"
    assert snapshot.data.assignee == "Bob Müller"
    assert snapshot.data.requester == "陈伟"
    assert snapshot.created_at == issue.created
    assert snapshot.updated_at == issue.updated
    assert dict(snapshot.extra) == {
        "issue_type": "Bug",
        "priority": "High",
        "reporter": "陈伟",
        "labels": "sso, login",
        "components": "Auth, Web",
        "jira_id": issue.id,
    }
    assert [(c.author, c.text) for c in snapshot.comments] == [
        ("Bob Müller", "First answer"),
        ("Customer Zoë", UNICODE),
    ]


def test_resolved_issue_keeps_resolution_facts(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Done already", status="Resolved")
    snapshot = jira.client().fetch(key)
    assert snapshot.data.status is Status.RESOLVED
    assert snapshot.extra["resolution"] == "Fixed"
    assert snapshot.extra["resolved"].endswith("+00:00")


def test_issue_with_250_comments_is_paged_completely_and_in_creation_order(make_jira) -> None:
    setup = make_jira(comment_page_cap=37)  # the server returns fewer than the 100 asked for
    key = setup.fake.add_issue("Busy issue")
    base = datetime(2024, 3, 1, tzinfo=UTC)
    # Inserted out of chronological order: the server's orderBy=created decides the order.
    for n in list(range(125, 250)) + list(range(0, 125)):
        setup.fake.add_comment(
            key,
            setup.native_text(f"comment {n:03d}"),
            author=["ann", "bob"][n % 2],
            created=base + timedelta(minutes=n),
        )

    snapshot = setup.client().fetch(key)

    assert [c.text for c in snapshot.comments] == [f"comment {n:03d}" for n in range(250)]
    assert [c.at for c in snapshot.comments] == [base + timedelta(minutes=n) for n in range(250)]
    requests = comment_requests(setup, key)
    assert len(requests) == math.ceil(250 / 37)
    assert all("maxResults=100" in q and "orderBy=created" in q for q in requests)


def test_comment_paging_stops_when_the_server_returns_an_empty_page(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Confused server")
    jira.fake.inject(
        200,
        path=rf"/issue/{key}/comment$",
        times=None,
        body={"startAt": 0, "maxResults": 100, "total": 5, "comments": []},
    )
    snapshot = jira.client().fetch(key)
    assert snapshot.comments == ()
    assert len(comment_requests(jira, key)) == 1


def test_restricted_and_internal_comments_are_left_out_unless_configured(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Mixed audience")
    jira.fake.add_comment(key, jira.native_text("public"), author="ann")
    jira.fake.add_comment(
        key,
        jira.native_text("developers only"),
        author="bob",
        visibility={"type": "role", "value": "Developers", "identifier": "Developers"},
    )
    jira.fake.add_comment(
        key,
        jira.native_text("admins only"),
        author="bob",
        visibility={"type": "group", "value": "jira-admins", "identifier": "g1"},
    )
    jira.fake.add_comment(key, jira.native_text("agents only"), author="chen", jsd_public=False)
    jira.fake.add_comment(key, jira.native_text("customer visible"), author="chen", jsd_public=True)

    assert [c.text for c in jira.client().fetch(key).comments] == ["public", "customer visible"]
    everything = jira.client(include_restricted_comments=True).fetch(key)
    assert [c.text for c in everything.comments] == [
        "public",
        "developers only",
        "admins only",
        "agents only",
        "customer visible",
    ]


def test_missing_issue_is_gone(jira: JiraSetup) -> None:
    with pytest.raises(TicketGone) as caught:
        jira.client().fetch("PROJ-404")
    assert caught.value.ticket_id == "PROJ-404"


def test_issue_deleted_between_webhook_and_fetch(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Short-lived")
    jira.fake.add_comment(key, jira.native_text("about to vanish"))
    client = jira.client(webhook_secret="s3cret-hook")
    body, headers = jira.fake.signed_webhook("comment_created", key, "s3cret-hook")
    request = WebhookRequest(body=body, headers=headers)
    client.authenticate_webhook(request)
    [event] = client.parse_webhook(request)
    assert (event.ticket_id, event.action, event.delivery_id) == (
        key,
        EventAction.UPSERT,
        headers["X-Atlassian-Webhook-Identifier"],
    )

    deleted_body, deleted_headers = jira.fake.signed_webhook("jira:issue_deleted", key, "s3cret-hook")
    jira.fake.delete_issue(key)

    with pytest.raises(TicketGone):
        client.fetch(event.ticket_id)
    deleted = WebhookRequest(body=deleted_body, headers=deleted_headers)
    client.authenticate_webhook(deleted)
    assert [(e.ticket_id, e.action) for e in client.parse_webhook(deleted)] == [(key, EventAction.DELETE)]


def test_webhook_then_fetch_sees_the_new_comment(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Watched")
    client = jira.client(webhook_secret="s3cret-hook")
    comment_id = jira.fake.add_comment(key, jira.native_text("brand new"), author="customer")
    body, headers = jira.fake.signed_webhook("comment_created", key, "s3cret-hook", comment_id=comment_id)
    request = WebhookRequest(body=body, headers=headers)
    client.authenticate_webhook(request)
    [event] = client.parse_webhook(request)
    assert [c.text for c in client.fetch(event.ticket_id).comments] == ["brand new"]


def test_moved_issue_old_key_is_gone_new_key_fetches(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Wandering")
    new_key = jira.fake.move_issue(key, "OPS")
    client = jira.client()
    with pytest.raises(TicketGone, match="moved to OPS-1"):
        client.fetch(key)
    assert client.fetch(new_key).project == "OPS"


def test_cloud_text_is_adf_and_datacenter_text_is_wiki_markup_passed_through(jira: JiraSetup) -> None:
    if jira.deployment == "cloud":
        description = {
            "type": "doc",
            "version": 1,
            "content": [
                {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Steps"}]},
                {
                    "type": "orderedList",
                    "content": [
                        {
                            "type": "listItem",
                            "content": [{"type": "paragraph", "content": [{"type": "text", "text": "open"}]}],
                        }
                    ],
                },
                {"type": "codeBlock", "attrs": {"language": "bash"}, "content": [{"type": "text", "text": "curl -v"}]},
            ],
        }
        expected = "## Steps\n\n1. open\n\n```bash\ncurl -v\n```"
    else:
        description = "h2. Steps\n# open\n{code:bash}curl -v{code}"
        expected = description
    key = jira.fake.add_issue("Formatted", description=description)
    assert jira.client().fetch(key).data.description == expected


def test_custom_fields_are_copied_when_configured(jira: JiraSetup) -> None:
    key = jira.fake.add_issue(
        "Custom",
        custom={
            "customfield_10010": {"self": "x", "value": "Gold", "id": "1"},
            "customfield_10011": 5,
            "customfield_10012": text_as_adf("long text") if jira.deployment == "cloud" else "long text",
            "customfield_10013": [{"name": "a"}, {"name": "b"}],
        },
    )
    fields = ["customfield_10010", "customfield_10011", "customfield_10012", "customfield_10013", "customfield_10099"]
    snapshot = jira.client(custom_fields=fields).fetch(key)
    assert snapshot.data.custom_fields == {
        "customfield_10010": "Gold",
        "customfield_10011": 5,
        "customfield_10012": "long text",
        "customfield_10013": ["a", "b"],
    }
    assert jira.client().fetch(key).data.custom_fields == {}


def test_fetch_uses_the_deployments_api_version(jira: JiraSetup) -> None:
    key = jira.fake.add_issue("Versioned")
    jira.client().fetch(key)
    version = "3" if jira.deployment == "cloud" else "2"
    paths = [path for _, path, _ in jira.fake.requests]
    assert paths == [f"/rest/api/{version}/issue/{key}", f"/rest/api/{version}/issue/{key}/comment"]


def test_built_from_config_and_normalised(jira: JiraSetup) -> None:
    """The path the pipeline takes: config.yaml section → from_config → fetch → normalise."""
    from data_manager.collectors.tickets.integration import integration_class
    from data_manager.collectors.tickets.normalise import normalise
    from data_manager.config import parse_config
    from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME

    section = {
        "enabled": True,
        "deployment": jira.deployment,
        "base_url": jira.url,
        "username": DEFAULT_USERNAME,
        "api_token": "${JIRA_API_TOKEN}",
        "jql_query": "project = PROJ",
        "jql_timezone": jira.fake.zone.key,
        "webhook_secret": "${JIRA_WEBHOOK_SECRET}",
    }
    app = parse_config(
        {"data_manager": {"sources": {"tickets": {"jira": section}}}},
        env={"JIRA_API_TOKEN": DEFAULT_TOKEN, "JIRA_WEBHOOK_SECRET": "h"},
    )
    client = integration_class("jira").from_config(app.sources["jira"])
    jira.clients.append(client)
    key = jira.fake.add_issue("Through the pipeline", issue_type="Bug", labels=["a", "b"])
    jira.fake.add_comment(key, jira.native_text("hello"), author="ann")

    resource = normalise("jira", client.fetch(key))
    assert resource.ticket_id == key
    assert f"Ticket: jira:{key}" in resource.content
    assert "Issue type: Bug" in resource.content and "Labels: a, b" in resource.content
    assert "--- Comment 1 by Ann Example at " in resource.content and "\nhello\n" in resource.content
    assert resource.metadata["status"] == "To Do" and resource.metadata["status_category"] == "open"

"""Seed 000: the `PersistenceService` dependency (line 20) and the three invariants (lines 145-149)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from data_manager.collectors.persistence import PersistenceError, PersistenceService
from data_manager.collectors.tickets import Comment, TicketData, TicketManager, TicketResource
from tests.integrations.memory import store_of

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> PersistenceService:
    return PersistenceService(tmp_path / "data", fsync=False)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _resource(content: str = "body\n", **metadata: str) -> TicketResource:
    return TicketResource("PROJ-7", content, "jira", created_at="2024-01-01T00:00:00Z", metadata=dict(metadata))


def test_persist_resource_with_identical_content_and_metadata_writes_nothing(
    store: PersistenceService, tmp_path: Path
) -> None:
    """seed 000 line 20: `PersistenceService` is the collector's store (issue #8: `persist_resource(resource,
    target_dir)` is as idempotent as `upsert`: identical content and metadata, no write, files untouched)."""
    target = tmp_path / "out"
    path = store.persist_resource(_resource(project="ops"), target)
    meta_path = path.with_name(path.name + ".meta.yaml")
    before = (_stamp(path), _stamp(meta_path))
    again = store.persist_resource(_resource(project="ops"), target)
    assert again == path
    assert (_stamp(path), _stamp(meta_path)) == before  # same inode: not even an atomic replace happened


def test_persist_resource_rewrites_only_what_changed(store: PersistenceService, tmp_path: Path) -> None:
    """seed 000 line 20 with issue #8: a metadata-only change rewrites the metadata file and leaves the content
    file alone; a content change rewrites the content."""
    target = tmp_path / "out"
    path = store.persist_resource(_resource(project="ops"), target)
    meta_path = path.with_name(path.name + ".meta.yaml")
    content_before = _stamp(path)
    store.persist_resource(_resource(project="dev"), target)
    assert _stamp(path) == content_before
    assert yaml.safe_load(meta_path.read_text(encoding="utf-8"))["extra"]["project"] == "dev"
    store.persist_resource(_resource("new body\n", project="dev"), target)
    assert path.read_text(encoding="utf-8") == "new body\n"


def test_ticket_id_unique_within_source_system_same_id_same_file(store: PersistenceService, tmp_path: Path) -> None:
    """seed 000 line 147: "Ticket ID unique within source system": one id in one system is one stored ticket
    (a later copy replaces it); the same id in another system is another ticket."""
    target = tmp_path / "out"
    first = store.persist_resource(TicketResource("42", "v1\n", "redmine"), target)
    second = store.persist_resource(TicketResource("42", "v2\n", "redmine"), target)
    other = store.persist_resource(TicketResource("42", "jira's\n", "jira"), target)
    assert first == second != other
    assert first.read_text(encoding="utf-8") == "v2\n" and other.read_text(encoding="utf-8") == "jira's\n"
    assert sorted(p.name for p in target.iterdir()) == [
        "jira_42.txt",
        "jira_42.txt.meta.yaml",
        "redmine_42.txt",
        "redmine_42.txt.meta.yaml",
    ]


def test_two_ids_that_normalise_alike_never_overwrite_each_other(store: PersistenceService, tmp_path: Path) -> None:
    """seed 000 line 147 ("Ticket ID unique within source system") against line 81 (special characters become
    underscores, so `a/b` and `a_b` share `x_a_b.txt`): the second is refused, the first is kept, by both the
    seed's `persist_resource` and the service's `upsert`."""
    target = tmp_path / "out"
    path = store.persist_resource(TicketResource("a/b", "first\n", "x"), target)
    with pytest.raises(PersistenceError, match=r"x:a_b .*x:a/b"):
        store.persist_resource(TicketResource("a_b", "second\n", "x"), target)
    assert path.read_text(encoding="utf-8") == "first\n"
    store.upsert(TicketResource("a/b", "first\n", "x"))
    with pytest.raises(PersistenceError):
        store.upsert(TicketResource("a_b", "second\n", "x"))
    assert store.get("x", "a/b").content == "first\n"  # type: ignore[union-attr]


def test_comments_are_concatenated_in_chronological_order(store: PersistenceService) -> None:
    """seed 000 line 148: "Comments concatenated in chronological order", whatever order they were added in
    upstream (checked on the stored ticket after `TicketManager.collect`)."""
    manager = TicketManager({"sources": {"tickets": {"memory": {"enabled": True}}}})
    backend = store_of(manager)  # the manager owns its in-memory store (nothing process-wide, issue #9)
    ticket_id = backend.create(TicketData(title="Printer jam", description="tray 2"))
    backend.add_comment(ticket_id, Comment("carol", "third", T0 + timedelta(hours=3)))
    backend.add_comment(ticket_id, Comment("ann", "first", T0 + timedelta(hours=1)))
    backend.add_comment(ticket_id, Comment("bob", "second", T0 + timedelta(hours=2)))
    manager.collect(store)
    content = store.get("memory", ticket_id).content  # type: ignore[union-attr]
    positions = [content.index(text) for text in ("\nfirst\n", "\nsecond\n", "\nthird\n")]
    assert positions == sorted(positions)
    assert content.index("by ann") < content.index("by bob") < content.index("by carol")


def test_missing_fields_default_to_none_or_empty(store: PersistenceService) -> None:
    """seed 000 line 149: "Missing fields default to None/empty": a resource built from the required fields only
    has `created_at` None and `metadata` {}; a ticket with no assignee, requester or description is stored with
    those fields empty, never the text "None"."""
    resource = TicketResource("1", "x", "memory")
    assert resource.created_at is None and resource.metadata == {}
    manager = TicketManager({"sources": {"tickets": {"memory": {"enabled": True}}}})
    ticket_id = store_of(manager).create(TicketData(title="Bare"))
    manager.collect(store)
    stored = store.get("memory", ticket_id)
    assert stored is not None
    assert "None" not in stored.content
    assert "\nAssignee:\n" in stored.content and "\nRequester:\n" in stored.content
    assert "None" not in yaml.safe_dump(stored.metadata)


def test_persist_resource_errors_name_the_resource(store: PersistenceService, tmp_path: Path) -> None:
    """seed 000 line 20 (the persistence dependency) with the project's rule that errors name what failed: a
    target that cannot be written raises `PersistenceError` naming the resource's hash and path."""
    target = tmp_path / "not-a-directory"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(PersistenceError, match=r"jira_PROJ-7 .*not-a-directory/jira_PROJ-7\.txt"):
        store.persist_resource(_resource(), target)

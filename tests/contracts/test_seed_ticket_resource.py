"""Seed 000, `TicketResource` and `ResourceMetadata` (lines 59-103), held to the letter."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime
from typing import Any, Dict, Optional  # noqa: UP035 - the seed's spelling

import pytest
import yaml

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.resource_base import BaseResource, ResourceMetadata
from data_manager.collectors.tickets import TicketResource
from tests.contracts.seed import accepts, signature_differences


def test_ticket_resource_is_a_dataclass_with_the_seed_fields_in_order() -> None:
    """seed 000 lines 61-69: `@dataclass class TicketResource(BaseResource): ticket_id: str; content: str;
    source_type: str; created_at: Optional[str] = None; metadata: Dict[str, Any] = field(default_factory=dict)`"""
    assert dataclasses.is_dataclass(TicketResource)
    assert issubclass(TicketResource, BaseResource)
    fields = {f.name: f for f in dataclasses.fields(TicketResource)}
    assert list(fields) == ["ticket_id", "content", "source_type", "created_at", "metadata"]
    assert fields["created_at"].default is None
    assert fields["metadata"].default_factory is dict  # type: ignore[comparison-overlap]
    for name in ("ticket_id", "content", "source_type"):
        assert fields[name].default is dataclasses.MISSING and fields[name].default_factory is dataclasses.MISSING


@pytest.mark.parametrize(
    ("name", "seed_type"),
    [
        ("ticket_id", str),
        ("content", str),
        ("source_type", str),
        ("created_at", Optional[str]),  # noqa: UP045 - spelled as in the seed
        ("metadata", Dict[str, Any]),  # noqa: UP006 - spelled as in the seed
    ],
)
def test_field_types_accept_the_seed_types(name: str, seed_type: Any) -> None:
    """seed 000 lines 65-69: the field annotations (`created_at: Optional[str] = None` above all)."""
    hints = typing.get_type_hints(TicketResource)
    assert accepts(hints[name], seed_type), f"{name}: {hints[name]} does not accept the seed's {seed_type}"


def test_positional_construction_in_seed_field_order() -> None:
    """seed 000 lines 65-69: fields in this order, so `TicketResource(ticket_id, content, source_type)` works and
    the rest default (`created_at` None, `metadata` an empty dict, not shared between instances)."""
    first = TicketResource("42", "Disk full", "redmine")
    second = TicketResource("43", "Other", "redmine")
    assert (first.ticket_id, first.content, first.source_type) == ("42", "Disk full", "redmine")
    assert first.created_at is None and first.metadata == {}
    first.metadata["k"] = "v"
    assert second.metadata == {}


@pytest.mark.parametrize(
    ("ticket_id", "expected"),
    [
        ("42", "redmine_42"),
        ("a/b", "redmine_a_b"),
        ("a b:c", "redmine_a_b_c"),
        ("x\\y?z*", "redmine_x_y_z_"),
        ("../up", "redmine_.._up"),
    ],
)
def test_get_hash_replaces_special_characters_with_underscores(ticket_id: str, expected: str) -> None:
    """seed 000 line 78: "Return hash as `{source_type}_{normalised_ticket_id}`." and line 81: "ENSURES: Special
    characters in ticket_id replaced with underscores"."""
    assert TicketResource(ticket_id, "", "redmine").get_hash() == expected


def test_get_hash_keeps_ordinary_ids_as_they_are() -> None:
    """seed 000 line 78: `{source_type}_{normalised_ticket_id}`: letters, digits, `-`, `.`, `_` are not special."""
    assert TicketResource("PROJ-7", "", "jira").get_hash() == "jira_PROJ-7"
    assert TicketResource("500Kx00000A1b2C", "", "salesforce").get_hash() == "salesforce_500Kx00000A1b2C"


def test_get_filename_is_the_hash_with_txt() -> None:
    """seed 000 line 87: "Return `{get_hash()}.txt`."."""
    resource = TicketResource("a/b", "", "jira")
    assert resource.get_filename() == resource.get_hash() + ".txt" == "jira_a_b.txt"


def test_get_content_returns_the_content_field() -> None:
    """seed 000 line 93: "Return the `content` field."."""
    assert TicketResource("1", "Title: x\n\nbody\n", "memory").get_content() == "Title: x\n\nbody\n"


def test_get_metadata_returns_resource_metadata_with_display_name_and_extra() -> None:
    """seed 000 lines 97-99: `def get_metadata(self) -> ResourceMetadata` "Return ResourceMetadata with
    display_name and extra fields."."""
    metadata = TicketResource("1", "", "memory").get_metadata()
    assert isinstance(metadata, ResourceMetadata)
    assert isinstance(metadata.display_name, str) and metadata.display_name
    assert {f.name for f in dataclasses.fields(ResourceMetadata)} >= {"display_name", "extra"}


def test_display_name_comes_from_the_metadata_dict() -> None:
    """seed 000 line 102: "`display_name` from metadata dict or defaults to `{source_type}:{ticket_id}`"."""
    resource = TicketResource("42", "", "redmine", metadata={"display_name": "42: Disk full"})
    assert resource.get_metadata().display_name == "42: Disk full"


@pytest.mark.parametrize(
    "metadata",
    [{}, {"url": "https://redmine.example.com/issues/42"}, {"title": "Disk full", "project": "ops"}],
)
def test_display_name_defaults_to_source_type_colon_ticket_id(metadata: dict[str, Any]) -> None:
    """seed 000 line 102: without a display_name in the metadata dict it "defaults to `{source_type}:{ticket_id}`"
    (not to some other metadata value such as the URL)."""
    assert TicketResource("42", "", "redmine", metadata=metadata).get_metadata().display_name == "redmine:42"


def test_extra_includes_ticket_id_source_type_and_created_at() -> None:
    """seed 000 line 103: "ENSURES: Includes ticket_id, source_type, and created_at in extra fields"; the rest
    of the metadata dict rides along."""
    extra = (
        TicketResource("42", "", "redmine", created_at="2024-01-01T00:00:00Z", metadata={"project": "ops"})
        .get_metadata()
        .extra
    )
    assert extra["ticket_id"] == "42"
    assert extra["source_type"] == "redmine"
    assert extra["created_at"] == "2024-01-01T00:00:00Z"
    assert extra["project"] == "ops"


@pytest.mark.parametrize("created_at", ["2024-01-01T00:00:00Z", "2024-01-01", "yesterday-ish", ""])
def test_created_at_as_str_is_kept_as_given(created_at: str) -> None:
    """seed 000 line 68: `created_at: Optional[str] = None`: the str the seed's own type names works, and
    `extra["created_at"]` is that str, unchanged (issue #8: it used to crash with 'str' has no isoformat)."""
    resource = TicketResource("T000001", "x", "memory", created_at=created_at)
    assert resource.get_metadata().extra["created_at"] == created_at


def test_created_at_as_datetime_is_stored_in_iso_form() -> None:
    """seed 000 lines 68 and 103: a `datetime` (what integrations hand over) lands in extra in ISO form."""
    when = datetime(2024, 1, 1, 12, 30, tzinfo=UTC)
    assert TicketResource("1", "", "memory", created_at=when).get_metadata().extra["created_at"] == when.isoformat()


def test_missing_created_at_is_empty_in_extra() -> None:
    """seed 000 line 103 (created_at is always in extra) with invariant 3, line 149: "Missing fields default to
    None/empty" (extra values are strings, so empty)."""
    assert TicketResource("1", "", "memory").get_metadata().extra["created_at"] == ""


@pytest.mark.parametrize("created_at", ["2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)])
def test_created_at_of_either_type_persists_through_the_seed_persistence_api(
    tmp_path: Any, created_at: str | datetime
) -> None:
    """seed 000 lines 20-21 (the dependencies) and 68: a resource with a str or datetime `created_at` is stored by
    `PersistenceService` with that time in its metadata file."""
    store = PersistenceService(tmp_path / "data", fsync=False)
    path = store.persist_resource(TicketResource("42", "text\n", "redmine", created_at=created_at), tmp_path / "out")
    meta = yaml.safe_load(path.with_name(path.name + ".meta.yaml").read_text(encoding="utf-8"))
    expected = created_at if isinstance(created_at, str) else created_at.isoformat()
    assert meta["extra"]["created_at"] == expected
    assert meta["display_name"] == "redmine:42"
    assert path.read_text(encoding="utf-8") == "text\n"


class SeedTicketResourceMethods:
    """seed 000 lines 76, 85, 91 and 97, verbatim: the four method signatures."""

    def get_hash(self) -> str:
        raise NotImplementedError

    def get_filename(self) -> str:
        raise NotImplementedError

    def get_content(self) -> str:
        raise NotImplementedError

    def get_metadata(self) -> ResourceMetadata:
        raise NotImplementedError


@pytest.mark.parametrize("name", ["get_hash", "get_filename", "get_content", "get_metadata"])
def test_method_signatures_match_the_seed(name: str) -> None:
    """seed 000 lines 76, 85, 91, 97: `def get_hash(self) -> str`, `def get_filename(self) -> str`,
    `def get_content(self) -> str`, `def get_metadata(self) -> ResourceMetadata`."""
    problems = signature_differences(getattr(TicketResource, name), getattr(SeedTicketResourceMethods, name))
    assert problems == [], f"TicketResource.{name}: {problems}"

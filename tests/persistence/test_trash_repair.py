"""Trash names: every ticket file name maps to one trash name per removal, and back."""

from __future__ import annotations

import pytest

from data_manager.collectors.trash_repair import hash_of, parse_trash_name, trash_name


@pytest.mark.parametrize("hash_", ["jira_PROJ-7", "jira_1.2", "jira_A.5", "jira_a.txtb", "jira_x.meta.yaml"])
@pytest.mark.parametrize("suffix", [".txt", ".txt.meta.yaml"])
def test_trash_names_map_back_to_their_ticket_file_and_removal(hash_: str, suffix: str) -> None:
    name = trash_name(hash_ + suffix, 12)
    assert parse_trash_name(name) == (hash_ + suffix, 12)
    assert hash_of(hash_ + suffix) == hash_


@pytest.mark.parametrize(
    "name", ["jira_PROJ-7.txt", "jira_PROJ-7.12.txt.unclaimed", "jira_PROJ-7.x.txt", ".jira.1.txt.tmp", "notes"]
)
def test_other_names_are_not_taken_for_trash_files(name: str) -> None:
    assert parse_trash_name(name) is None

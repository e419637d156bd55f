"""The seed copies the contract tests read are the seeds, unedited: a test cannot pass by changing the seed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.contracts.seed import SEEDS, SPEC, WINTERMUTE

# sha256 of ../shared/seeds/<name> as handed to the project.
PINNED = {
    SPEC: "e5ba8ce84b8104d19153e629b683141c0306abea8ee75c3074bf0544cc9953a6",
    WINTERMUTE: "639411cdcd2797ceab75918a778f8639e68a129121998ba136eb12f2cf072834",
}
SHARED_SEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_seed_copy_is_byte_identical_to_the_seed(name: str) -> None:
    """Both seeds, whole: every citation `seed 000 line N` / `seed 002 line N` points into this exact text."""
    assert hashlib.sha256((SEEDS / name).read_bytes()).hexdigest() == PINNED[name]
    if (SHARED_SEEDS / name).exists():  # beside a checkout of main (CI), also compare with the original
        assert (SHARED_SEEDS / name).read_bytes() == (SEEDS / name).read_bytes()

"""Seed 002's two doctest examples, read out of the seed file and run verbatim against the project.

Both examples end with `Ticket.use_backend("sf")`: "Switch the whole app to Salesforce later". The `InMemoryBackend`
example never registers an "sf" backend itself (it relies on one configured at startup, as the `Ticket` example
does), so its test registers one first; an unregistered name raises a `KeyError` naming the known backends.
"""

from __future__ import annotations

import doctest
from typing import Any

import pytest

from data_manager.collectors.tickets import InMemoryBackend, Status, Ticket
from tests.contracts.seed import WINTERMUTE, seed_lines

# seed 002 lines 96-104: the InMemoryBackend docstring's example.
IN_MEMORY_EXAMPLE = seed_lines(WINTERMUTE, 96, 104, starts_with=">>> # Configure once at startup:")


def run_example(text: str, name: str, globs: dict[str, Any]) -> dict[str, Any]:
    """Run a doctest example and return its namespace; fail with doctest's own report when any line misbehaves."""
    test = doctest.DocTestParser().get_doctest(text, globs, name, WINTERMUTE, 0)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=report.append, clear_globs=False)
    assert result.attempted == len(test.examples) > 0
    assert result.failed == 0, "".join(report)
    return test.globs


def test_in_memory_backend_example_runs_verbatim() -> None:
    """seed 002 lines 95-104: the `InMemoryBackend` example, verbatim: register "mem" as default, create, comment,
    read, change status, then switch the app to "sf" (registered beforehand, as the example presumes)."""
    sf = InMemoryBackend()  # stands in for the Salesforce backend "configured once at startup"
    Ticket.register_backend("sf", sf)
    globs = {"Ticket": Ticket, "InMemoryBackend": InMemoryBackend, "Status": Status}
    globs = run_example(IN_MEMORY_EXAMPLE, "InMemoryBackend", globs)

    tid, t = globs["tid"], globs["t"]
    assert tid == "T000001"
    assert isinstance(t, Ticket) and t.ticket_id == tid and t.data.title == "Login bug"
    assert [(c.author, c.text) for c in t.comments] == [("qa-bot", "Reproduced on 17.0.3")]
    assert Ticket.backend() is sf  # the switch happened
    assert len(sf) == 0  # nothing written to "sf" before the switch
    Ticket.use_backend("mem")
    assert Ticket.read(tid).data.status is Status.IN_PROGRESS  # change_status reached the backend


def test_in_memory_example_without_an_sf_backend_fails_loudly() -> None:
    """seed 002 line 104 (`Ticket.use_backend("sf")`) when nothing was registered as "sf": a clear `KeyError`
    naming the known backends, and the app stays on the backend it had (never a silent half-switch)."""
    mem = InMemoryBackend()
    Ticket.register_backend("mem", mem, make_default=True)
    with pytest.raises(KeyError, match=r"'sf'.*mem"):
        Ticket.use_backend("sf")
    assert Ticket.backend() is mem

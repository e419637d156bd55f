"""Several instances of one ticket system: `type:` in config, the instance name everywhere, `Ticket.configure`."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import Ticket, TicketData, TicketManager
from data_manager.collectors.tickets.errors import ConfigError, NoBackendError
from data_manager.collectors.tickets.integration import known_systems
from data_manager.collectors.tickets.integrations.memory import InMemorySettings, InMemoryTickets
from data_manager.config import parse_config
from tests.integrations.memory import store_of

INTEGRATIONS = "data_manager.collectors.tickets.integrations"


def two_memories(**extra: dict) -> dict:
    return {
        "data_manager": {
            "sources": {
                "tickets": {
                    "memory": {"enabled": True, "store": "first", "webhook_secret": "one"},
                    "memory_eu": {"type": "memory", "enabled": True, "store": "second", "webhook_secret": "two"},
                    **extra,
                }
            }
        }
    }


def test_type_names_the_system_and_the_key_is_the_instance() -> None:
    config = parse_config(two_memories(), env={})
    assert config.enabled_systems == ["memory", "memory_eu"]
    assert (config.system_of("memory"), config.system_of("memory_eu")) == ("memory", "memory")
    settings = config.sources["memory_eu"]
    assert isinstance(settings, InMemorySettings) and settings.store == "second"
    assert config.redacted_sources()["memory_eu"]["type"] == "memory"
    assert config.redacted_sources()["memory_eu"]["webhook_secret"] == "***"


def test_env_overrides_and_errors_use_the_instance_name() -> None:
    config = parse_config(two_memories(), env={"TICKETS_MEMORY_EU_STORE": "third"})
    assert config.sources["memory_eu"]["store"] == "third" and config.sources["memory"]["store"] == "first"
    bad = two_memories(memory_us={"type": "memory", "enabled": True, "resync_concurrency": 0})
    with pytest.raises(ConfigError, match=r"^data_manager\.sources\.tickets\.memory_us\.resync_concurrency: "):
        parse_config(bad, env={})


@pytest.mark.parametrize(
    ("section", "path", "message"),
    [
        ({"legacy": {"type": "jirra", "enabled": True}}, "legacy.type", "unknown ticket system 'jirra'"),
        ({"legacy": {"type": 3}}, "legacy.type", "unknown ticket system 3"),
        ({"Legacy-Jira": {"type": "jira"}}, "Legacy-Jira", "lower-case letters"),
        ({"legacy": {"enabled": True}}, "legacy", "`type: <system>`"),
    ],
)
def test_bad_instances_name_the_key_path(section: dict, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"data_manager": {"sources": {"tickets": section}}}, env={})
    assert str(refused.value).startswith(f"data_manager.sources.tickets.{path}: ") and message in str(refused.value)


def test_a_disabled_system_is_not_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, f"{INTEGRATIONS}.jira", raising=False)
    config = parse_config(
        {"data_manager": {"sources": {"tickets": {"jira": {"enabled": False}, "jira_dc": {"type": "jira"}}}}}, env={}
    )
    assert config.enabled_systems == [] and config.system_of("jira_dc") == "jira"
    assert config.redacted_sources()["jira"] == {"enabled": False}
    assert f"{INTEGRATIONS}.jira" not in sys.modules


@pytest.fixture
def broken_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A system module that fails to import, found on the integrations package's path like any other."""
    (tmp_path / "brokensys.py").write_text("import a_module_that_does_not_exist  # noqa\n")
    package = importlib.import_module(INTEGRATIONS)
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    assert "brokensys" in known_systems()
    return "brokensys"


def test_an_import_error_in_one_system_breaks_only_that_system(broken_system: str) -> None:
    disabled = two_memories(brokensys={"enabled": False})
    assert parse_config(disabled, env={}).enabled_systems == ["memory", "memory_eu"]
    enabled = two_memories(brokensys={"enabled": True})
    with pytest.raises(ConfigError) as refused:
        parse_config(enabled, env={})
    message = str(refused.value)
    assert message.startswith("data_manager.sources.tickets.brokensys: the brokensys integration cannot be loaded")
    assert "a_module_that_does_not_exist" in message


def test_manager_holds_a_list_and_looks_instances_up_by_name(tmp_path: Path) -> None:
    manager = TicketManager(two_memories()["data_manager"])
    assert isinstance(manager.integrations, list)
    assert [(i.system, i.name) for i in manager.integrations] == [("memory", "memory"), ("memory", "memory_eu")]
    assert manager.systems == ["memory", "memory_eu"]
    assert manager.integration("memory_eu").webhook_secret == "two"
    with pytest.raises(KeyError, match="'memory_us' is not enabled"):
        manager.integration("memory_us")


def test_two_instances_keep_their_tickets_files_and_cursors_apart(tmp_path: Path) -> None:
    manager = TicketManager(two_memories()["data_manager"])
    store_of(manager, "memory").create(TicketData(title="from the first"))
    store_of(manager, "memory_eu").create(TicketData(title="from the second"))
    store_of(manager, "memory_eu").create(TicketData(title="also the second"))
    store = PersistenceService(tmp_path / "data", fsync=False)
    result = manager.collect(store)
    assert result.ok and {n: s.written for n, s in result.summaries.items()} == {"memory": 1, "memory_eu": 2}
    assert (store.count("memory"), store.count("memory_eu")) == (1, 2)
    first, second = store.get("memory", "T000001"), store.get("memory_eu", "T000001")
    assert first is not None and "Title: from the first" in first.content
    assert second is not None and "Title: from the second" in second.content
    assert (tmp_path / "data" / "tickets" / "memory_eu_T000001.txt").exists()

    cursors = {name: store.get_cursor(name) for name in ("memory", "memory_eu")}
    store_of(manager, "memory_eu").update("T000002", {"title": "changed in the second"})
    again = manager.resync(store, systems=["memory_eu"])
    assert list(again.summaries) == ["memory_eu"] and again.summaries["memory_eu"].written == 1
    assert store.get_cursor("memory") == cursors["memory"]  # the other instance's cursor is its own
    eu_cursor = store.get_cursor("memory_eu")
    assert eu_cursor is not None and cursors["memory_eu"] is not None and eu_cursor > cursors["memory_eu"]


def test_ticket_configure_registers_every_enabled_instance_by_name() -> None:
    config = parse_config(two_memories(memory_off={"type": "memory", "enabled": False}), env={})
    with pytest.raises(NoBackendError):
        Ticket.backend()
    assert Ticket.configure(config) == ["memory", "memory_eu"]
    first_id = Ticket.create(title="written to the first")  # the first instance in the config is the default
    Ticket.use_backend("memory_eu")
    second_id = Ticket.create(title="written to the second")
    assert Ticket.read(second_id).data.title == "written to the second"
    Ticket.use_backend("memory")
    assert Ticket.read(first_id).data.title == "written to the first"  # the same id, each instance its own store
    with pytest.raises(KeyError):
        Ticket.read("T000002")
    with pytest.raises(KeyError, match="memory_off"):
        Ticket.use_backend("memory_off")


def test_ticket_configure_can_share_a_managers_integrations() -> None:
    manager = TicketManager(two_memories()["data_manager"])
    Ticket.configure(manager)
    Ticket.use_backend("memory_eu")
    assert Ticket.backend() is manager.integration("memory_eu")
    assert isinstance(Ticket.backend(), InMemoryTickets)


def test_instances_built_together_share_a_named_store_and_two_managers_share_nothing() -> None:
    """Issue #9: the stores belong to whoever built the integrations (the manager, hence the runtime), not to
    the process: two managers from one config keep apart; within one, the same `store` name is one store."""
    same_store = two_memories(memory_us={"type": "memory", "enabled": True, "store": "second"})["data_manager"]
    one, other = TicketManager(same_store), TicketManager(same_store)
    ticket_id = store_of(one, "memory_eu").create(TicketData(title="in the first manager"))
    assert store_of(one, "memory_us") is store_of(one, "memory_eu")
    assert store_of(one, "memory_us").read(ticket_id)[0].title == "in the first manager"
    assert store_of(one, "memory") is not store_of(one, "memory_eu")
    assert len(store_of(other, "memory_eu")) == 0 and len(store_of(other, "memory")) == 0
    shared = TicketManager(same_store, shared=one.shared)  # built on purpose over the first one's resources
    assert store_of(shared, "memory_eu") is store_of(one, "memory_eu")


def test_configuring_the_facade_twice_builds_separate_stores() -> None:
    config = parse_config(two_memories(), env={})
    Ticket.configure(config)
    Ticket.create(title="first build")
    Ticket.configure(config)  # a new build replaces the registered backends, with stores of its own
    with pytest.raises(KeyError):
        Ticket.read("T000001")

"""Seed 000: `TicketManager` (lines 27-55), `RedmineTickets` / `JiraTickets` (lines 105-126) and the configuration
example (lines 128-143), held to the letter."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Dict, Optional  # noqa: UP035 - the seed's spelling

import pytest
import yaml

from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets import (
    JiraTickets,
    RedmineTickets,
    TicketData,
    TicketManager,
    TicketResource,
)
from data_manager.collectors.tickets.errors import ConfigError
from data_manager.collectors.tickets.integration import TicketIntegration
from data_manager.collectors.tickets.integrations.memory import InMemoryTickets
from data_manager.config import load_config
from tests.contracts.seed import SPEC, accepts, seed_lines
from tests.integrations.jira.fake_server import DEFAULT_TOKEN, DEFAULT_USERNAME, RunningFakeJira, start_fake_jira
from tests.integrations.memory import store_of

# seed 000 lines 130-143: the configuration example, exactly as printed.
CONFIG_EXAMPLE = seed_lines(SPEC, 131, 142, starts_with="data_manager:")


@pytest.fixture
def fake_jira() -> Iterator[RunningFakeJira]:
    server = start_fake_jira(deployment="cloud")
    yield server
    server.stop()


def memory_and_jira_config(jira_url: str) -> dict[str, Any]:
    """A `data_manager` mapping with two enabled systems and one disabled (with nothing but its flag)."""
    return {
        "sources": {
            "tickets": {
                "memory": {"enabled": True},
                "jira": {
                    "enabled": True,
                    "base_url": jira_url,
                    "username": DEFAULT_USERNAME,
                    "api_token": DEFAULT_TOKEN,
                    "jql_query": "project = PROJ",
                },
                "redmine": {"enabled": False, "base_url": "https://redmine.example.com"},
            }
        }
    }


# -- TicketManager -----------------------------------------------------------------------------------------
def test_constructor_takes_the_dm_config_mapping() -> None:
    """seed 000 line 38: `def __init__(self, dm_config: Dict[str, Any]) -> None`."""
    params = list(inspect.signature(TicketManager.__init__).parameters.values())
    assert [p.name for p in params[:2]] == ["self", "dm_config"]
    assert all(p.default is not inspect.Parameter.empty for p in params[2:])
    hints = typing.get_type_hints(TicketManager.__init__)
    assert accepts(hints["dm_config"], Dict[str, Any])  # noqa: UP006
    assert hints.get("return") is type(None)


def test_dm_config_attribute_is_the_mapping_given() -> None:
    """seed 000 line 32: `dm_config: Dict`."""
    dm_config = {"sources": {"tickets": {"memory": {"enabled": True}}}}
    manager = TicketManager(dm_config)
    assert manager.dm_config == dm_config
    assert isinstance(manager.dm_config, dict)


def test_integrations_is_a_list_of_ticket_integrations(fake_jira: RunningFakeJira) -> None:
    """seed 000 line 33: `integrations: List[TicketIntegration]`: iterating it yields integrations (not names),
    one per enabled system; an integration is still found by its name."""
    manager = TicketManager(memory_and_jira_config(fake_jira.url))
    assert isinstance(manager.integrations, list)
    assert all(isinstance(integration, TicketIntegration) for integration in manager.integrations)
    assert sorted(type(i).__name__ for i in manager.integrations) == ["InMemoryTickets", "JiraTickets"]
    assert isinstance(manager.integration("jira"), JiraTickets)
    assert isinstance(manager.integration("memory"), InMemoryTickets)


def test_constructor_initialises_configured_integrations(fake_jira: RunningFakeJira) -> None:
    """seed 000 line 42: "ENSURES: Initializes configured ticket integrations": each enabled system's integration is
    built from its config section."""
    manager = TicketManager(memory_and_jira_config(fake_jira.url))
    jira = manager.integration("jira")
    assert isinstance(jira, JiraTickets)
    assert (jira.base_url, jira.username, jira.api_token, jira.jql_query) == (
        fake_jira.url,
        DEFAULT_USERNAME,
        DEFAULT_TOKEN,
        "project = PROJ",
    )


def test_constructor_skips_disabled_integrations() -> None:
    """seed 000 line 43: "ENSURES: Skips disabled integrations": a disabled system is not built at all, so its
    missing credentials are no error."""
    manager = TicketManager(
        {
            "sources": {
                "tickets": {
                    "memory": {"enabled": True},
                    "jira": {"enabled": False, "base_url": "https://jira.example.com", "jql_query": "project = PROJ"},
                    "redmine": {"enabled": False},
                }
            }
        }
    )
    assert [type(i).__name__ for i in manager.integrations] == ["InMemoryTickets"]
    with pytest.raises(KeyError):
        manager.integration("jira")


def test_collect_signature() -> None:
    """seed 000 line 49: `def collect(self, persistence: PersistenceService) -> None` (a result may be returned
    too, issue #15, as long as the declared use works)."""
    params = list(inspect.signature(TicketManager.collect).parameters.values())
    assert [p.name for p in params[:2]] == ["self", "persistence"]
    assert all(p.default is not inspect.Parameter.empty for p in params[2:])
    assert accepts(typing.get_type_hints(TicketManager.collect)["persistence"], PersistenceService)


def test_collect_iterates_all_integrations_and_persists_each_ticket_as_a_ticket_resource(
    fake_jira: RunningFakeJira, tmp_path: Path
) -> None:
    """seed 000 lines 51-55: "Collect tickets from all configured integrations." "ENSURES: Iterates all
    integrations" "ENSURES: Persists each ticket as `TicketResource`": every ticket of every enabled system is stored
    under `TicketResource.get_filename()` with the resource's metadata beside it."""
    manager = TicketManager(memory_and_jira_config(fake_jira.url))
    backend = store_of(manager)  # the manager owns its in-memory store (nothing process-wide, issue #9)
    memory_ids = [backend.create(TicketData(title=f"memory {n}", description="d")) for n in range(3)]
    jira_keys = [fake_jira.fake.add_issue(f"jira {n}") for n in range(2)]
    persistence = PersistenceService(tmp_path / "data", fsync=False)

    manager.collect(persistence)  # the seed's use: result ignored

    expected = [("memory", tid) for tid in memory_ids] + [("jira", key) for key in jira_keys]
    stored = sorted(p.name for p in persistence.tickets_dir.iterdir())
    names = [TicketResource(tid, "", source).get_filename() for source, tid in expected]
    assert stored == sorted(names + [name + ".meta.yaml" for name in names])
    for source, tid in expected:
        filename = TicketResource(tid, "", source).get_filename()
        meta = yaml.safe_load((persistence.tickets_dir / f"{filename}.meta.yaml").read_text(encoding="utf-8"))
        assert (meta["extra"]["ticket_id"], meta["extra"]["source_type"]) == (tid, source)
        assert tid in (persistence.tickets_dir / filename).read_text(encoding="utf-8")


# -- RedmineTickets / JiraTickets ----------------------------------------------------------------------------
def test_redmine_tickets_has_the_seed_attributes() -> None:
    """seed 000 lines 109-115: `class RedmineTickets: base_url: str; api_key: str; project_id: Optional[str]`."""
    redmine = RedmineTickets(base_url="https://redmine.example.com", api_key="secret-key", project_id="myproject")
    assert (redmine.base_url, redmine.api_key, redmine.project_id) == (
        "https://redmine.example.com",
        "secret-key",
        "myproject",
    )
    assert RedmineTickets(base_url="https://redmine.example.com", api_key="k").project_id is None
    assert "secret-key" not in repr(redmine)


def test_jira_tickets_has_the_seed_attributes() -> None:
    """seed 000 lines 119-126: `class JiraTickets: base_url: str; username: str; api_token: str; jql_query: str`."""
    jira = JiraTickets(
        base_url="https://jira.example.com", username="bot@example.com", api_token="tok-123", jql_query="project = X"
    )
    assert (jira.base_url, jira.username, jira.api_token, jira.jql_query) == (
        "https://jira.example.com",
        "bot@example.com",
        "tok-123",
        "project = X",
    )
    assert "tok-123" not in repr(jira)


@pytest.mark.parametrize(
    ("cls", "declared"),
    [
        (RedmineTickets, {"base_url": str, "api_key": str, "project_id": Optional[str]}),  # noqa: UP045
        (JiraTickets, {"base_url": str, "username": str, "api_token": str, "jql_query": str}),
    ],
)
def test_integration_constructors_take_the_seed_attributes_by_keyword(cls: type, declared: dict[str, Any]) -> None:
    """seed 000 lines 112-114 and 122-125: each declared attribute can be passed by its name with the declared type
    (the constructor's parameter admits it)."""
    hints = typing.get_type_hints(cls.__init__)
    for name, seed_type in declared.items():
        assert name in inspect.signature(cls.__init__).parameters, f"{cls.__name__}({name}=...)"
        assert accepts(hints[name], seed_type), f"{cls.__name__}.{name}: {hints[name]} vs {seed_type}"


# -- the configuration example ---------------------------------------------------------------------------------
def test_config_example_loads_and_validates_exactly_as_printed(tmp_path: Path) -> None:
    """seed 000 lines 130-143: the YAML exactly as printed is a valid config.yaml: redmine enabled with its
    base_url, the `${REDMINE_API_KEY}` secret and project_id; jira disabled (so its missing credentials are fine)."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_EXAMPLE, encoding="utf-8")
    config = load_config(path, env={"REDMINE_API_KEY": "from-the-environment"})
    assert config.enabled_systems == ["redmine"]
    redmine = config.sources["redmine"]
    assert redmine["base_url"] == "https://redmine.example.com"
    assert redmine["api_key"] == "from-the-environment"
    assert redmine["project_id"] == "myproject"
    assert config.sources["jira"]["enabled"] is False


def test_config_example_builds_a_ticket_manager_with_one_redmine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """seed 000 lines 130-143 with line 38: the example's `data_manager` mapping, handed to
    `TicketManager(dm_config)`, gives exactly one integration, the Redmine one, configured as printed."""
    monkeypatch.setenv("REDMINE_API_KEY", "from-the-environment")
    dm_config = yaml.safe_load(CONFIG_EXAMPLE)["data_manager"]
    manager = TicketManager(dm_config)
    assert manager.dm_config == dm_config
    assert [type(i) for i in manager.integrations] == [RedmineTickets]
    redmine = manager.integrations[0]
    assert isinstance(redmine, RedmineTickets)
    assert (redmine.base_url, redmine.api_key, redmine.project_id) == (
        "https://redmine.example.com",
        "from-the-environment",
        "myproject",
    )


def test_config_example_without_its_variable_names_the_key_path_and_variable(tmp_path: Path) -> None:
    """seed 000 line 137: `api_key: "${REDMINE_API_KEY}"`: when the variable is unset, the error names the key path
    and the variable (the project's rule for config errors)."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_EXAMPLE, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert "data_manager.sources.tickets.redmine.api_key" in str(info.value)
    assert "REDMINE_API_KEY" in str(info.value)


def test_public_names_live_where_the_seed_says() -> None:
    """seed 000 lines 7-9 and 18-21: `persistence.PersistenceService`, `tickets/ticket_resource.TicketResource`,
    `tickets/ticket_manager.TicketManager` (the seed's `src/` prefix is the source root, not a package)."""
    from data_manager.collectors.persistence import PersistenceService as FromPersistence
    from data_manager.collectors.tickets.ticket_manager import TicketManager as FromManager
    from data_manager.collectors.tickets.ticket_resource import TicketResource as FromResource

    assert (FromPersistence, FromManager, FromResource) == (PersistenceService, TicketManager, TicketResource)

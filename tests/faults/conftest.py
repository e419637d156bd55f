from __future__ import annotations

import pytest

from tests.faults.support import figures_table


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    table = figures_table()
    if table:
        terminalreporter.section("fault runs: figures")
        terminalreporter.write_line(table)

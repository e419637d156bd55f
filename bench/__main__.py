"""Every issue #14 figure in one command, each a ratio against a baseline measured in the same run.

    python -m bench [--quick] [--only NAME ...] [--list]

Gathers each bench module listed in `MODULES` that exists and has `rows()`, `run()` or `*_figures()`
(callable without arguments) returning
rows (`bench.table.Row`, or mappings / objects with name, value, baseline, ratio, goal), runs them
one after the other (never two at once: they would measure each other) and prints one table with
the goal beside each figure. `--quick` asks every module for smaller counts (a `quick` argument, or
a smaller `tickets`; a smoke run, the ratios are noisier). `--only` runs the named modules only.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from bench.table import Row, as_row, format_table

# In table order. A module that has not landed yet is skipped (listed with --list).
MODULES = (
    "redmine_resync",
    "worker_throughput",
    "webhook_ingest",
    "memory_resync",
    "jira_resync",
    "bugzilla_resync",
    "salesforce_resync",
    "store_group_commit",
    "store_postgres",
    "transfer_memory",
)


QUICK_TICKETS = 2000  # what --quick asks of a module whose figures take a `tickets` count
QUICK_JOBS = 500  # ... or a `jobs` count


def available() -> dict[str, Callable[..., Iterable[Any]] | None]:
    """Module name -> its `rows` (or `run`), or None when the module is missing or has neither."""
    found: dict[str, Callable[..., Iterable[Any]] | None] = {}
    for name in MODULES:
        if importlib.util.find_spec(f"bench.{name}") is None:
            found[name] = None
            continue
        found[name] = entry_point(importlib.import_module(f"bench.{name}"))
    return found


def entry_point(module: ModuleType) -> Callable[..., Iterable[Any]] | None:
    """The module's `rows`, `run` or `*_figures` that can be called without arguments (the first such)."""
    names = ["rows", "run", *sorted(name for name in vars(module) if name.endswith("_figures"))]
    for name in names:
        candidate = getattr(module, name, None)
        if callable(candidate) and all(
            p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            for p in inspect.signature(candidate).parameters.values()
        ):
            return candidate  # type: ignore[no-any-return]
    return None


def gather(measure: Callable[..., Iterable[Any]], quick: bool) -> list[Row]:
    """Call a module's `rows`/`run` with what it accepts of --quick, and read its rows in whatever shape."""
    accepted = inspect.signature(measure).parameters
    kwargs: dict[str, Any] = {}
    if "quick" in accepted:
        kwargs["quick"] = quick
    elif quick and "tickets" in accepted:
        kwargs["tickets"] = QUICK_TICKETS
    elif quick and "jobs" in accepted:
        kwargs["jobs"] = QUICK_JOBS
    for name in ("echo", "log", "say"):  # progress lines go to stderr, the table alone to stdout
        if name in accepted:
            kwargs[name] = lambda line: print(line, file=sys.stderr, flush=True)
    return [as_row(item) for item in measure(**kwargs)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--only", action="append", choices=MODULES, metavar="NAME", help=f"one of {', '.join(MODULES)}")
    parser.add_argument("--list", action="store_true", help="list the bench modules and whether each has rows()")
    args = parser.parse_args(argv)

    modules = available()
    if args.list:
        for name, rows in modules.items():
            print(f"{name:20} {'ready' if rows else 'not landed (no bench.' + name + '.rows)'}")
        return 0
    table: list[Row] = []
    for name in args.only or MODULES:
        rows = modules[name]
        if rows is None:
            table.append(Row.skipped(name, "", "no bench module with rows() yet"))
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            table.extend(gather(rows, args.quick))
        except Exception as exc:  # one broken bench never hides the others' figures
            traceback.print_exc()
            table.append(Row.skipped(name, "", f"{type(exc).__name__}: {exc}"))
        print(f"== {name}: {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    print(format_table(table))
    return 1 if any(row.met is False for row in table) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The layering holds: the ground never imports upward, and webhooks/ never needs workers/.

Two checks. `lint-imports` reads every import statement (function-level ones included, so a lazy
import cannot hide a cycle) against the contracts in pyproject.toml. The fresh-interpreter check
sees what actually loads, including imports done through importlib: importing a low module must
not drag in anything above it (a system's module, config, the pipeline).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TICKETS = "data_manager.collectors.tickets"
OWN_PACKAGES = ("data_manager", "service", "webhooks", "workers")
# Function-level imports of our own modules that are there on purpose, not to dodge a cycle.
LAZY_ON_PURPOSE = {
    "webhooks/gunicorn_conf.py": "gunicorn reads this file as its config; the hook installs the error pages per worker",
}
PIPELINE = ("service", "webhooks", "workers", "rq", "flask")
ABOVE_GROUND = (
    "data_manager.config",
    f"{TICKETS}.integrations",
    f"{TICKETS}.http",
    f"{TICKETS}.normalise",
    f"{TICKETS}.sync",
    f"{TICKETS}.resync",
    f"{TICKETS}.ticket_manager",
    *PIPELINE,
)

# module -> what importing it alone must not load
MUST_NOT_LOAD = {
    f"{TICKETS}.errors": (*ABOVE_GROUND, "data_manager.collectors.persistence", "data_manager.collectors.catalog"),
    f"{TICKETS}.model": (*ABOVE_GROUND, "data_manager.collectors.persistence", "data_manager.collectors.catalog"),
    f"{TICKETS}.integration": (*ABOVE_GROUND, "data_manager.collectors.persistence"),
    "data_manager.collectors.catalog": ABOVE_GROUND,
    "data_manager.collectors.persistence": ABOVE_GROUND,
    "data_manager.config": (
        f"{TICKETS}.integrations.",  # a system's module only when that system is asked for
        f"{TICKETS}.sync",
        f"{TICKETS}.resync",
        f"{TICKETS}.ticket_manager",
        *PIPELINE,
    ),
    f"{TICKETS}.ticket_manager": PIPELINE,
    "service.runtime": ("webhooks", "workers", "flask"),
    "webhooks.app": ("workers",),
}


def loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("module", sorted(MUST_NOT_LOAD))
def test_importing_a_module_loads_nothing_above_it(module: str) -> None:
    forbidden = MUST_NOT_LOAD[module]
    loaded = loaded_after_import(module)
    assert module in loaded
    above = [name for name in loaded if any(name == f or name.startswith(f.rstrip(".") + ".") for f in forbidden)]
    assert above == [], f"importing {module} loaded {above}"


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_no_function_level_imports_of_our_own_modules() -> None:
    """An import inside a function hides a dependency (and, often, a cycle) from readers and from lint-imports."""
    found = []
    for package in OWN_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in LAZY_ON_PURPOSE:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    names = (
                        [inner.module or ""]
                        if isinstance(inner, ast.ImportFrom)
                        else [alias.name for alias in inner.names]
                        if isinstance(inner, ast.Import)
                        else []
                    )
                    if any(name.split(".")[0] in OWN_PACKAGES for name in names):
                        found.append(f"{relative}:{inner.lineno}")
    assert found == [], (
        f"function-level imports of our own modules: {found}; import them at the top of the module "
        "(if that makes a cycle, a module sits in the wrong layer: see docs/pipeline.md, 'How the code is wired')"
    )

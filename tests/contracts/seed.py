"""Reading the seed documents, and comparing the project's types and signatures with the seed's.

The seed files in `seeds/` are verbatim copies; `seed_lines` returns a line range exactly as printed, so a test that
runs an example runs the seed's own text, and fails loudly if the expected text is not where the citation says.
"""

from __future__ import annotations

import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

SEEDS = Path(__file__).parent / "seeds"
SPEC = "000_b077822f61e52848.txt"  # seed 000: the tickets collector spec
WINTERMUTE = "002_607b66b4ee6ed8a7.txt"  # seed 002: the Ticket facade and InMemoryBackend


def seed_lines(seed: str, first: int, last: int, *, starts_with: str) -> str:
    """Lines `first`..`last` (1-based, inclusive) of a seed, dedented; `starts_with` guards the citation."""
    lines = (SEEDS / seed).read_text(encoding="utf-8").splitlines()
    chunk = lines[first - 1 : last]
    assert chunk and chunk[0].strip().startswith(starts_with), (
        f"{seed} line {first} should start with {starts_with!r}, found {chunk[0] if chunk else None!r}"
    )
    return textwrap.dedent("\n".join(chunk)) + "\n"


# -- comparing annotations ---------------------------------------------------------------------------------
def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union (`Optional[X]`, `X | None`), or the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def _origin(annotation: Any) -> Any:
    return typing.get_origin(annotation) or annotation


def accepts(implementation: Any, seed: Any) -> bool:
    """Whether every value the seed's annotation admits is admitted by the implementation's.

    `dict[str, Any]` accepts `Dict[str, Any]`, `Mapping[str, Any]` accepts `Dict[str, Any]`, `X | str` accepts `X`;
    `str` does not accept `Optional[str]` and `datetime` does not accept `str`.
    """
    if implementation is Any:
        return True
    offered = _members(implementation)
    return all(any(_accepts_one(one, wanted) for one in offered) for wanted in _members(seed))


def _accepts_one(offered: Any, wanted: Any) -> bool:
    if offered is Any or offered == wanted:
        return True
    if wanted is Any:
        return False
    offered_origin, wanted_origin = _origin(offered), _origin(wanted)
    if not (isinstance(offered_origin, type) and isinstance(wanted_origin, type)):
        return False
    if getattr(offered_origin, "_is_protocol", False):  # a Protocol (`TicketStore`) admits what has its members
        members = [name for name in vars(offered_origin) if not name.startswith("_")]
        return all(hasattr(wanted_origin, name) for name in members)
    if not issubclass(wanted_origin, offered_origin):
        return False
    offered_args, wanted_args = typing.get_args(offered), typing.get_args(wanted)
    if not offered_args:  # a bare `dict` / `Mapping` admits any parameters
        return True
    return len(offered_args) == len(wanted_args) and all(map(accepts, offered_args, wanted_args))


# -- comparing signatures ----------------------------------------------------------------------------------
def signature_differences(
    implementation: Any,
    seed: Any,
    *,
    impl_namespace: dict[str, Any] | None = None,
    seed_namespace: dict[str, Any] | None = None,
    allowed: dict[str, str] | None = None,
) -> list[str]:
    """How `implementation`'s signature differs from the seed's; `allowed` maps a parameter to why it may differ.

    Checked: every seed parameter exists in the same position with the same name and kind; the same default (an
    implementation default where the seed has none needs an `allowed` entry); an annotation accepting everything the
    seed's does; the same return annotation. Extra parameters must be keyword-only with a default (no seed call can
    change meaning) and also need an `allowed` entry.
    """
    allowed = allowed or {}
    impl_sig, seed_sig = inspect.signature(implementation), inspect.signature(seed)
    impl_hints = typing.get_type_hints(implementation, localns=impl_namespace)
    seed_hints = typing.get_type_hints(seed, localns=seed_namespace)
    problems: list[str] = []
    impl_params, seed_params = list(impl_sig.parameters.values()), list(seed_sig.parameters.values())
    for index, wanted in enumerate(seed_params):
        if index >= len(impl_params):
            problems.append(f"missing parameter {wanted}")
            continue
        offered = impl_params[index]
        if (offered.name, offered.kind) != (wanted.name, wanted.kind):
            problems.append(f"parameter {index}: seed has {wanted.name} ({wanted.kind.description}), found {offered}")
            continue
        if offered.default != wanted.default and offered.name not in allowed:
            shown = "none" if wanted.default is inspect.Parameter.empty else repr(wanted.default)
            problems.append(f"{offered.name}: seed default {shown}, found {offered.default!r}")
        if wanted.name in seed_hints and not accepts(impl_hints.get(offered.name, Any), seed_hints[wanted.name]):
            problems.append(f"{offered.name}: {impl_hints.get(offered.name)} does not accept {seed_hints[wanted.name]}")
    for extra in impl_params[len(seed_params) :]:
        if extra.kind is not inspect.Parameter.KEYWORD_ONLY or extra.default is inspect.Parameter.empty:
            problems.append(f"extra parameter {extra} must be keyword-only with a default")
        elif extra.name not in allowed:
            problems.append(f"extra parameter {extra} is not in the seed and not documented as allowed")
    if "return" in seed_hints and impl_hints.get("return") != seed_hints["return"]:
        problems.append(f"returns {impl_hints.get('return')}, seed says {seed_hints['return']}")
    return problems

"""A metadata file's YAML: byte for byte what `yaml.dump` writes, for a fraction of its cost.

Even with libyaml's C emitter, `yaml.dump` spends most of a ticket's rendering time in PyYAML's
pure-Python representer (a representer lookup and alias bookkeeping per value), and rendering was
a quarter of the CPU of storing a new ticket. Metadata holds plain data, so its nodes are built here
directly, exactly as PyYAML's `SafeRepresenter` builds them, and handed to the same emitter. Anything
else (floats, dates, subclasses, one container reached twice, which PyYAML writes as an alias) goes
through `yaml.dump` whole, so the output never differs.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# libyaml's emitter: 10x cheaper than the pure-Python one (which cost ~0.9 ms a ticket); the same YAML, except
# that characters outside the Basic Multilingual Plane (emoji) are written escaped ("\U0001F642"). Both read back
# the same, and the catalog's digests are of the parsed form, so a ticket stored before is not rewritten for it.
DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_OPTIONS: dict[str, Any] = {"sort_keys": True, "allow_unicode": True, "default_flow_style": False}
_STR, _INT, _BOOL, _NULL = (f"tag:yaml.org,2002:{name}" for name in ("str", "int", "bool", "null"))
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class _Unplain(Exception):
    """A value this module does not build itself."""


def render_yaml(data: dict[str, Any]) -> str:
    """`yaml.dump(data, sort_keys=True, allow_unicode=True, default_flow_style=False)`, faster."""
    try:
        node = _node(data, set())
    except _Unplain:
        return str(yaml.dump(data, Dumper=DUMPER, **_OPTIONS))
    return str(yaml.serialize(node, Dumper=DUMPER, allow_unicode=True))  # the emitter's options of `_OPTIONS`


def _node(value: Any, containers: set[int]) -> Node:
    kind = type(value)
    if kind is str:
        return ScalarNode(_STR, value)
    if kind is bool:
        return ScalarNode(_BOOL, "true" if value else "false")
    if kind is int:
        return ScalarNode(_INT, str(value))
    if value is None:
        return ScalarNode(_NULL, "null")
    if kind is list or kind is dict:
        if id(value) in containers:  # PyYAML would write an anchor and an alias
            raise _Unplain
        containers.add(id(value))
        if kind is list:
            return SequenceNode(_SEQ, [_node(item, containers) for item in value], flow_style=False)
        try:
            items = sorted(value.items())
        except TypeError:  # keys that do not compare: PyYAML keeps the dict's order
            items = list(value.items())
        pairs = [(_node(key, containers), _node(item, containers)) for key, item in items]
        return MappingNode(_MAP, pairs, flow_style=False)
    raise _Unplain

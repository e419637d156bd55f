"""Checking a fake's answers against a system's documented or recorded shapes (the `test_fake_shapes.py` files).

If a fake drifts from the system it imitates, the client tests test a fiction: each fixture or recorded
sample is compared with the fake's answer to the same request, key by key and JSON type by JSON type.
"""

from __future__ import annotations

from typing import Any


def missing_keys(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Paths present in `expected` but absent (or of another JSON type) in `actual`; null matches anything.

    Lists are compared by their first element (the shape of one item), so an answer may hold other items.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path} (not an object)"]
        problems: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}")
            elif value is not None and actual[key] is not None:
                problems += missing_keys(value, actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path} (not a list)"]
        return missing_keys(expected[0], actual[0], f"{path}[0]") if expected and actual else []
    if isinstance(expected, bool) != isinstance(actual, bool) or isinstance(expected, str) != isinstance(actual, str):
        return [f"{path} ({type(expected).__name__} expected, got {type(actual).__name__})"]
    return []

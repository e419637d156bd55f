"""Planned bad answers for the HTTP fakes: "answer the next N matching requests with 429 instead".

Every fake (Jira, Bugzilla, Salesforce) takes faults the same way: `fake.inject(status, path=regex,
method=, times=, headers=, body=)`; a request that matches the first planned fault uses up one of its
`times` (None: until cleared) and is answered with it, in the fake's own body style.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """An answer the fake gives instead of the real one, `times` times (None: until cleared)."""

    status: int
    path: re.Pattern[str] | None = None
    method: str | None = None
    times: int | None = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and (
            self.path is None or bool(self.path.search(path))
        )


class Faults:
    """A fake's planned faults, thread-safe; `default_bodies` are the system's own pages for bare statuses."""

    def __init__(self, default_bodies: Mapping[int, Any] | None = None) -> None:
        self.default_bodies = dict(default_bodies or {})
        self._planned: list[Fault] = []
        self._lock = threading.Lock()

    def inject(
        self,
        status: int,
        *,
        path: str | None = None,
        method: str | None = None,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Fault:
        """Answer the next `times` requests matching `path` (a regex searched in the path) and `method` with `status`."""
        fault = Fault(
            status,
            re.compile(path) if path else None,
            method,
            times,
            dict(headers or {}),
            body if body is not None else self.default_bodies.get(status),
        )
        with self._lock:
            self._planned.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first planned fault matching the request, one of its `times` used up; None when none matches."""
        with self._lock:
            fault = next((f for f in self._planned if f.matches(method, path)), None)
            if fault is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._planned.remove(fault)
            return fault

    def clear(self) -> None:
        with self._lock:
            self._planned.clear()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._planned))

    def __len__(self) -> int:
        with self._lock:
            return len(self._planned)

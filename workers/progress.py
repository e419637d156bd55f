"""Resync progress: a tqdm bar on a terminal, a log line every ~10% (or 10 s) otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from data_manager.collectors.tickets.resync import ResyncPlan
from service.logs import log_event

log = logging.getLogger("tickets.resync")
Progress = Callable[[str, Any], None]


class ProgressReporter:
    """`factory(plan)` makes the per-system callback the resync engine calls once per ticket."""

    def __init__(self, *, interactive: bool | None = None) -> None:
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._bars: list[Any] = []

    def factory(self, plan: ResyncPlan) -> Progress:
        """The total is known only once the listing, which streams into the work, is complete."""
        if self.interactive:
            from tqdm import tqdm

            bar = tqdm(total=None, desc=plan.system, unit="ticket", file=sys.stderr, dynamic_ncols=True)
            self._bars.append(bar)
            lock = threading.Lock()

            def update(ticket_id: str, outcome: Any) -> None:
                with lock:
                    if plan.complete and bar.total is None:
                        bar.total = len(plan.listed) + len(plan.to_delete)
                    bar.update(1)
                    if outcome is None:
                        bar.set_postfix_str("failures!", refresh=False)

            return update

        state = {"done": 0, "failed": 0, "last": time.monotonic()}
        lock = threading.Lock()
        log_event(
            log, "resync_started", system=plan.system, since=plan.since_used.isoformat() if plan.since_used else ""
        )

        def report(ticket_id: str, outcome: Any) -> None:
            with lock:
                state["done"] += 1
                state["failed"] += outcome is None
                now = time.monotonic()
                total = len(plan.listed) + len(plan.to_delete) if plan.complete else None
                step = max(1, (total or len(plan.listed)) // 10)
                if state["done"] % step == 0 or state["done"] == total or now - state["last"] >= 10:
                    state["last"] = now
                    log_event(
                        log,
                        "resync_progress",
                        system=plan.system,
                        done=state["done"],
                        listed=len(plan.listed),
                        total=total,
                        failed=state["failed"],
                    )

        return report

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
        self._bars.clear()

"""`tickets changes`: the change feed on the command line, for indexers and for people watching a store.

`--follow` keeps waiting for new changes (the store's `wait_for_changes`: polling on SQLite, notifications
where the store has them) and stops cleanly on SIGINT or SIGTERM, after the line it is printing.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

import click

from data_manager.collectors.changes import Change
from data_manager.collectors.store import TicketStore

FOLLOW_WAIT_SECONDS = 0.5  # how long one wait lasts before the stop flag is looked at again


class HasStore(Protocol):
    """What the commands here need from the CLI's state: the configured store."""

    @property
    def persistence(self) -> TicketStore: ...


def format_change(change: Change, as_json: bool) -> str:
    if as_json:
        return json.dumps(change.as_dict(), sort_keys=True, ensure_ascii=False)
    return f"{change.seq} {change.system} {change.ticket_id} {change.hash} {change.kind}"


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (the previous handlers come back after)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stream_changes(
    store: TicketStore,
    after: int,
    limit: int,
    emit: Callable[[Change], None],
    *,
    follow: bool,
    stop: threading.Event,
) -> int:
    """Emit the changes after `after` in pages of `limit`; with `follow`, wait for more until `stop` is set.

    Returns the last seq emitted (or `after`), which is where a later run continues.
    """
    while not stop.is_set():
        page = store.changes(after=after, limit=limit)
        for change in page:
            emit(change)
            after = change.seq
        if len(page) == limit:
            continue  # more may be waiting already
        if not follow:
            break
        while not stop.is_set() and not store.wait_for_changes(after, FOLLOW_WAIT_SECONDS):
            pass
    return after


@click.command()
@click.option("--after", type=click.IntRange(0), default=0, show_default=True, help="Only changes after this seq.")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True, help="Changes per page.")
@click.option("--follow", is_flag=True, help="Keep waiting for new changes (SIGINT/SIGTERM stop cleanly).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def changes(state: HasStore, after: int, limit: int, follow: bool, as_json: bool) -> None:
    """Print the store's change feed: `seq system ticket_id hash kind` lines, oldest first.

    Without --follow at most --limit changes are printed; remember the last seq handled and pass it as --after.
    """
    store = state.persistence

    def emit(change: Change) -> None:
        click.echo(format_change(change, as_json))

    if not follow:
        for change in store.changes(after=after, limit=limit):
            emit(change)
        return
    with stop_on_signals() as stop:
        stream_changes(store, after, limit, emit, follow=True, stop=stop)

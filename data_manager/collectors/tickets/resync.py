"""The resync engine: plan, guard, dispatch, settle deletion candidates, advance the cursor.

One engine, two dispatchers: `InlineDispatcher` fetches the listed tickets here with bounded
concurrency; a bulk dispatcher (`workers.bulk`) hands each to the workers' bulk queue. Both share
the plan, the summary type and the rules below.

- Credentials are proven before the listing is used (and, for a full resync, again afterwards):
  a refused key often lists as the anonymous user, who sees nothing, and nothing may be removed
  on the strength of that. A refused proof fails the system's resync.
- A full resync also removes what no longer exists upstream, or no longer falls inside the
  listing's scope; every such candidate is fetched first, and one changed within `UNLISTED_GRACE`
  of the listing is kept (search indexes can lag, and deleting a live ticket is the worse error).
  Candidates are always settled inline: they are few, and a sync job could not tell them apart.
- The mass-deletion guard: when the candidates are more than `max_fraction` of the stored tickets
  and more than `min_count`, none is removed and the resync fails, saying how to override.
- The per-system cursor is the newest upstream update time seen, so our clock never matters, and
  it only advances when nothing failed, so a failed ticket is retried by the next incremental run.
- A listing may bring complete tickets (`TicketRef.snapshot`, e.g. Jira's search with its embedded
  comments). The inline dispatcher stores those while the listing streams, with the same ordering
  guard as a fetch, and fetches only the rest; the plan keeps ids and times, never a snapshot, so
  memory stays flat however long the listing. The bulk dispatcher ignores snapshots and enqueues
  every id (a queued job carries only an id and always fetches).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from data_manager.collectors.store import TicketStore
from data_manager.collectors.tickets.credentials import prove_credentials
from data_manager.collectors.tickets.errors import CredentialsRefused
from data_manager.collectors.tickets.group_commit import GroupCommitter
from data_manager.collectors.tickets.integration import TicketIntegration, TicketRef, TicketSnapshot
from data_manager.collectors.tickets.sync import (
    SyncOutcome,
    reconcile_unlisted,
    store_snapshot,
    submit_snapshot,
    submit_ticket,
    sync_ticket,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, SyncOutcome | None], None]  # (ticket id, outcome or None on failure)
ProgressFactory = Callable[["ResyncPlan"], Progress | None]
# Takes the complete tickets a listing brings, as the listing streams them (the inline dispatcher stores them).
SnapshotSink = Callable[[Iterator[TicketSnapshot]], None]

# How long a stored ticket that a full listing did not return must have been unchanged before it is
# taken to be out of scope (Jira Cloud's search is eventually consistent; clocks may differ a little).
UNLISTED_GRACE = timedelta(hours=1)


@dataclass
class ResyncPlan:
    system: str
    refs: list[TicketRef]
    full: bool
    since_used: datetime | None
    previous_cursor: datetime | None
    new_cursor: datetime | None
    to_delete: set[str] = field(default_factory=set)  # stored here, not listed upstream (full only)
    listed_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # when the listing started
    stored: int = 0  # how many copies of the system were stored when the listing ended
    prefetched: set[str] = field(default_factory=set)  # listed complete and already stored: not fetched again


@dataclass(frozen=True)
class DeleteGuard:
    """`resync.max_delete_fraction` / `resync.max_delete_min`: how much one full resync may remove."""

    max_fraction: float = 0.1
    min_count: int = 20
    allow_mass_delete: bool = False  # `--allow-mass-delete`: this one run may remove more

    @classmethod
    def from_config(cls, resync: Mapping[str, Any], *, allow_mass_delete: bool = False) -> DeleteGuard:
        """From the validated `resync` config section (`max_delete_fraction`, `max_delete_min`)."""
        return cls(
            max_fraction=float(resync.get("max_delete_fraction", cls.max_fraction)),
            min_count=int(resync.get("max_delete_min", cls.min_count)),
            allow_mass_delete=allow_mass_delete,
        )

    def refusal(self, plan: ResyncPlan) -> str | None:
        """Why the plan's removals are refused, or None when they may go ahead."""
        count = len(plan.to_delete)
        if self.allow_mass_delete or not count:
            return None
        fraction = count / plan.stored if plan.stored else 1.0
        if fraction <= self.max_fraction or count <= self.min_count:
            return None
        return (
            f"mass deletion refused: this full resync would remove {count} of the {plan.stored} stored "
            f"{plan.system} tickets ({fraction:.0%}), more than resync.max_delete_fraction ({self.max_fraction:g}) "
            f"and more than resync.max_delete_min ({self.min_count}); none was removed. If the system really lost "
            f"them (check its credentials and scope first), run `tickets resync --full --system {plan.system} "
            f"--allow-mass-delete` once"
        )


@dataclass
class ResyncSummary:
    """What one system's resync did; the same type whichever dispatcher ran it."""

    system: str
    mode: str = "incremental"
    since: str = ""
    dispatch: str = "inline"  # inline | bulk
    listed: int = 0
    fetched: int = 0
    written: int = 0
    unchanged: int = 0
    stale: int = 0
    deleted: int = 0
    out_of_scope: int = 0  # stored copies removed: the ticket exists but is outside the configured scope
    deletion_candidates: int = 0  # stored, not listed (full resync)
    enqueued: int = 0  # bulk: new jobs queued
    coalesced: int = 0  # bulk: a job for the ticket was already waiting
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    error: str = ""  # the whole system failed (listing failed, credentials refused, mass deletion refused)
    duration_seconds: float = 0.0
    cursor: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.dispatch == "bulk":
            data["queued_to"] = "bulk"
        return data

    def count(self, outcome: SyncOutcome) -> None:
        if outcome is SyncOutcome.WRITTEN:
            self.written += 1
        elif outcome is SyncOutcome.UNCHANGED:
            self.unchanged += 1
        elif outcome is SyncOutcome.STALE:
            self.stale += 1
        elif outcome is SyncOutcome.DELETED:
            self.deleted += 1
        elif outcome is SyncOutcome.OUT_OF_SCOPE:
            self.out_of_scope += 1


class Dispatcher(Protocol):
    """Takes the listed tickets of a plan: fetches them here, or hands them to someone who will."""

    kind: str

    def dispatch(
        self,
        integration: TicketIntegration,
        persistence: TicketStore,
        plan: ResyncPlan,
        summary: ResyncSummary,
        progress: Progress | None,
    ) -> None: ...


def _dedupe(refs: Iterable[TicketRef]) -> list[TicketRef]:
    """Listings that page by offset can repeat a ticket that changed mid-listing; keep its newest ref."""
    newest: dict[str, TicketRef] = {}
    for ref in refs:
        seen = newest.get(ref.ticket_id)
        if seen is None or (ref.updated_at and (seen.updated_at is None or ref.updated_at > seen.updated_at)):
            newest[ref.ticket_id] = ref
    return list(newest.values())


def plan_resync(
    integration: TicketIntegration,
    persistence: TicketStore,
    *,
    since: datetime | None = None,
    full: bool = False,
    use_cursor: bool = True,
    snapshot_sink: SnapshotSink | None = None,
) -> ResyncPlan:
    """What to fetch (and, for a full resync, what may have to go), from a listing made on proven credentials.

    With a `snapshot_sink`, complete tickets the listing brings go to it as they stream and are
    marked `prefetched`; without one they are dropped and fetched like the rest.
    """
    system = integration.name
    prove_credentials(integration, fresh=full)
    listed_at = datetime.now(UTC)
    previous = persistence.get_cursor(system)
    if full:
        since_used = None
    elif since is not None:
        since_used = since if since.tzinfo else since.replace(tzinfo=UTC)
    elif use_cursor and previous is not None:
        since_used = previous - timedelta(seconds=integration.resync_overlap_seconds)
    else:
        since_used = None
    listed: list[TicketRef] = []
    prefetched: set[str] = set()

    def complete_tickets() -> Iterator[TicketSnapshot]:
        for ref in integration.iter_changed(since_used):
            listed.append(TicketRef(ref.ticket_id, ref.updated_at))  # the plan never holds a snapshot
            if ref.snapshot is not None and snapshot_sink is not None:
                prefetched.add(ref.ticket_id)
                yield ref.snapshot
            else:
                prefetched.discard(ref.ticket_id)  # listed again without its content: fetch it

    tickets = complete_tickets()
    if snapshot_sink is not None:
        snapshot_sink(tickets)
    for _ in tickets:  # the rest of the listing, when there is no sink (or it stopped on refused credentials)
        pass
    refs = _dedupe(listed)
    times = [ref.updated_at for ref in refs if ref.updated_at is not None]
    new_cursor = max([*times, *([previous] if previous else [])], default=None)
    to_delete: set[str] = set()
    stored = 0
    if full:
        prove_credentials(integration, fresh=True)  # still accepted now that the listing is complete
        stored_ids = persistence.ticket_ids(system)
        stored = len(stored_ids)
        to_delete = stored_ids - {ref.ticket_id for ref in refs}
    return ResyncPlan(system, refs, full, since_used, previous, new_cursor, to_delete, listed_at, stored, prefetched)


class _TicketRunner:
    """Runs one callable per ticket on a bounded pool; failures are counted, never raised.

    A refused credential proof stops the run: it fails the system, and nothing more is tried.
    """

    def __init__(self, summary: ResyncSummary, progress: Progress | None) -> None:
        self.summary = summary
        self.progress = progress
        self.lock = threading.Lock()
        self.refused = threading.Event()

    def one(self, ticket_id: str, work: Callable[[str], SyncOutcome | None]) -> None:
        """Run `work`; its outcome is counted now, or later through `settle` when it returns None (group commit)."""
        if self.refused.is_set():
            return
        try:
            outcome = work(ticket_id)
        except Exception as exc:
            self.settle(ticket_id, None, exc)
            return
        if outcome is not None:
            self.settle(ticket_id, outcome, None)

    def settle(self, ticket_id: str, outcome: SyncOutcome | None, error: Exception | None) -> None:
        """Count one ticket's outcome or failure (from any thread)."""
        if isinstance(error, CredentialsRefused):
            self.refused.set()
            log.error("resync %s: credentials refused: %s", self.summary.system, error)
            with self.lock:
                self.summary.error = self.summary.error or f"credentials refused: {error}"
            return
        if error is not None or outcome is None:  # one ticket's failure never stops the others; it is reported
            log.warning("resync %s %s failed: %s", self.summary.system, ticket_id, error)
            with self.lock:
                self.summary.failed += 1
                self.summary.failures.append({"ticket_id": ticket_id, "error": f"{type(error).__name__}: {error}"})
            if self.progress:
                self.progress(ticket_id, None)
            return
        with self.lock:
            self.summary.fetched += 1
            self.summary.count(outcome)
        if self.progress:
            self.progress(ticket_id, outcome)

    def run(self, ticket_ids: Iterable[str], work: Callable[[str], SyncOutcome | None], concurrency: int) -> None:
        workers = max(1, concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"resync-{self.summary.system}") as pool:
            in_flight: set[Future[None]] = set()
            for ticket_id in ticket_ids:  # bounded submission: memory stays flat for 100k tickets
                if self.refused.is_set():
                    break
                if len(in_flight) >= workers * 4:
                    _, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                in_flight.add(pool.submit(self.one, ticket_id, work))
            wait(in_flight)


@dataclass
class InlineDispatcher:
    """Fetches and stores every listed ticket in this process, at most `concurrency` fetches at a time.

    With `group_commit` (the default) the fetched tickets are stored in batches (`GroupCommitter`: up
    to 100 per transaction, or what arrived within 0.5 s), and `dispatch` returns only once every
    batch is durable, so the cursor, advanced after it, never passes an uncommitted ticket.
    """

    concurrency: int | None = None
    kind: str = "inline"
    group_commit: bool = True

    def dispatch(
        self,
        integration: TicketIntegration,
        persistence: TicketStore,
        plan: ResyncPlan,
        summary: ResyncSummary,
        progress: Progress | None,
    ) -> None:
        runner = _TicketRunner(summary, progress)
        ticket_ids = (ref.ticket_id for ref in plan.refs if ref.ticket_id not in plan.prefetched)
        concurrency = self.concurrency or integration.resync_concurrency
        if not self.group_commit:
            runner.run(ticket_ids, lambda ticket_id: sync_ticket(integration, persistence, ticket_id), concurrency)
            return
        with GroupCommitter(persistence, name=f"commit-{integration.name}") as committer:
            runner.run(
                ticket_ids,
                lambda ticket_id: submit_ticket(
                    integration, persistence, committer, ticket_id, partial(runner.settle, ticket_id)
                ),
                concurrency,
            )

    def snapshot_sink(
        self, integration: TicketIntegration, persistence: TicketStore, summary: ResyncSummary
    ) -> SnapshotSink:
        """Stores the listing's complete tickets as they stream, `concurrency` at a time, a few in flight."""

        def store(snapshots: Iterator[TicketSnapshot]) -> None:
            pending: dict[str, list[TicketSnapshot]] = {}  # bounded by the runner's in-flight limit
            lock = threading.Lock()
            runner = _TicketRunner(summary, None)

            def ids() -> Iterator[str]:
                for snapshot in snapshots:
                    with lock:
                        pending.setdefault(snapshot.ticket_id, []).append(snapshot)
                    yield snapshot.ticket_id

            def take(ticket_id: str) -> TicketSnapshot:
                with lock:
                    queued = pending[ticket_id]
                    snapshot = queued.pop(0)
                    if not queued:
                        del pending[ticket_id]
                return snapshot

            concurrency = self.concurrency or integration.resync_concurrency
            if not self.group_commit:
                runner.run(ids(), lambda t: store_snapshot(integration, persistence, take(t)), concurrency)
                return
            with GroupCommitter(persistence, name=f"commit-{integration.name}") as committer:

                def work(ticket_id: str) -> None:
                    submit_snapshot(integration, committer, take(ticket_id), partial(runner.settle, ticket_id))

                runner.run(ids(), work, concurrency)

        return store


def settle_candidates(
    integration: TicketIntegration,
    persistence: TicketStore,
    plan: ResyncPlan,
    summary: ResyncSummary,
    *,
    concurrency: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Fetch every stored-but-unlisted ticket and remove it only when gone or long outside the scope."""
    unchanged_since = plan.listed_at - UNLISTED_GRACE
    runner = _TicketRunner(summary, progress)
    runner.run(
        sorted(plan.to_delete),
        lambda ticket_id: reconcile_unlisted(integration, persistence, ticket_id, unchanged_since=unchanged_since),
        concurrency or integration.resync_concurrency,
    )


def _mode(full: bool, since_used: datetime | None) -> str:
    return "full" if full else ("incremental" if since_used else "all")


def resync_system(
    integration: TicketIntegration,
    persistence: TicketStore,
    *,
    since: datetime | None = None,
    full: bool = False,
    use_cursor: bool = True,
    concurrency: int | None = None,
    progress_factory: ProgressFactory | None = None,
    dispatcher: Dispatcher | None = None,
    guard: DeleteGuard | None = None,
) -> ResyncSummary:
    """Plan and run a resync of one system; every failure is reported in the summary, never raised.

    `progress_factory` sees the plan (so a progress bar knows its total) and returns the per-ticket
    callback. `dispatcher` defaults to fetching inline; `guard` to `DeleteGuard()`.
    """
    dispatcher = dispatcher or InlineDispatcher(concurrency)
    guard = guard or DeleteGuard()
    started = time.monotonic()
    system = integration.name
    summary = ResyncSummary(system=system, mode="full" if full else "incremental", dispatch=dispatcher.kind)
    sink_for = getattr(dispatcher, "snapshot_sink", None)  # only a dispatcher that stores here takes snapshots
    try:
        plan = plan_resync(
            integration,
            persistence,
            since=since,
            full=full,
            use_cursor=use_cursor,
            snapshot_sink=sink_for(integration, persistence, summary) if sink_for else None,
        )
    except CredentialsRefused as exc:
        log.error("resync %s: credentials refused: %s", system, exc)
        summary.error = f"credentials refused: {exc}"
    except Exception as exc:
        log.error("resync %s: listing failed: %s", system, exc)
        summary.error = f"listing failed: {type(exc).__name__}: {exc}"
    if summary.error:
        summary.duration_seconds = round(time.monotonic() - started, 3)
        persistence.record_resync(system, summary.as_dict())
        return summary

    summary.mode = _mode(plan.full, plan.since_used)
    summary.since = plan.since_used.isoformat() if plan.since_used else ""
    summary.listed = len(plan.refs)
    summary.deletion_candidates = len(plan.to_delete)
    progress = progress_factory(plan) if progress_factory else None
    refusal = guard.refusal(plan)
    if refusal:
        log.error("resync %s: %s", system, refusal)
        summary.error = refusal
    try:
        dispatcher.dispatch(integration, persistence, plan, summary, progress)
    except Exception as exc:  # the dispatcher itself failed (e.g. the queue is unreachable)
        log.error("resync %s: dispatch failed: %s", system, exc)
        summary.error = summary.error or f"dispatch failed: {type(exc).__name__}: {exc}"
    if plan.to_delete and not refusal and not summary.error:
        settle_candidates(integration, persistence, plan, summary, concurrency=concurrency, progress=progress)

    if summary.ok and plan.new_cursor is not None:
        persistence.set_cursor(system, plan.new_cursor)
    cursor = persistence.get_cursor(system)
    summary.cursor = cursor.isoformat() if cursor else ""
    summary.duration_seconds = round(time.monotonic() - started, 3)
    persistence.record_resync(system, summary.as_dict())
    return summary

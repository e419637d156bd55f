"""The resync engine: list, dispatch as the listing streams, settle deletion candidates, advance the cursor.

One engine, two dispatchers: `InlineDispatcher` fetches the listed tickets here with bounded,
adaptive concurrency; a bulk dispatcher (`workers.bulk`) hands each to the workers' bulk queue.
Both share the plan, the summary type and the rules below.

- The work is pipelined: the listing pages in its own thread (`read_ahead`) and each listed ticket
  is dispatched as it arrives. The full set of listed ids is needed only at the end, for deletions.
- Credentials are proven before the listing is used (and, for a full resync, again afterwards):
  a refused key often lists as the anonymous user, who sees nothing, and nothing may be removed
  on the strength of that. A refused proof fails the system's resync.
- A full resync also removes what no longer exists upstream, or no longer falls inside the
  listing's scope, and only once the listing ran to its end; every such candidate is fetched first,
  and one changed within `UNLISTED_GRACE` of the listing is kept (search indexes can lag, and
  deleting a live ticket is the worse error). Candidates are always settled inline: they are few,
  and a sync job could not tell them apart.
- The mass-deletion guard: when the candidates are more than `max_fraction` of the stored tickets
  and more than `min_count`, none is removed and the resync fails, saying how to override.
- The per-system cursor is the newest upstream update time seen, so our clock never matters, and
  it only advances when nothing failed, so a failed ticket is retried by the next incremental run.
- A listing may bring complete tickets (`TicketRef.snapshot`, e.g. Jira's search with its embedded
  comments). The inline dispatcher stores those with the same ordering guard as a fetch, and
  fetches only the rest; the plan keeps ids and times, never a snapshot, so memory stays flat
  however long the listing. The bulk dispatcher ignores snapshots and enqueues every id (a queued
  job carries only an id and always fetches).
- A 429/503 from the server halves how many tickets are worked on at once (`throttle.AdaptiveLimit`);
  a run of successes lets it grow back, one at a time, up to `resync_concurrency`.
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
from data_manager.collectors.tickets.integration import TicketIntegration, TicketRef
from data_manager.collectors.tickets.read_ahead import read_ahead
from data_manager.collectors.tickets.sync import (
    Settled,
    SyncOutcome,
    reconcile_unlisted,
    store_snapshot,
    submit_snapshot,
    submit_ticket,
    sync_ticket,
)
from data_manager.collectors.tickets.throttle import AdaptiveLimit, adapting_to

log = logging.getLogger(__name__)

Progress = Callable[[str, SyncOutcome | None], None]  # (ticket id, outcome or None on failure)
ProgressFactory = Callable[["ResyncPlan"], Progress | None]
# How many listed tickets the listing may run ahead of the work (ids, or complete tickets when the listing brings them).
READ_AHEAD = 256

# How long a stored ticket that a full listing did not return must have been unchanged before it is
# taken to be out of scope (Jira Cloud's search is eventually consistent; clocks may differ a little).
UNLISTED_GRACE = timedelta(hours=1)


@dataclass
class ResyncPlan:
    """One resync's listing, recorded as it streams, and (full resync, once complete) what may have to go.

    It keeps ids and update times, never a snapshot, so memory stays small however long the listing.
    """

    system: str
    full: bool
    since_used: datetime | None
    previous_cursor: datetime | None
    listed_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # when the listing started
    listed: dict[str, datetime | None] = field(default_factory=dict)  # every listed id -> newest update time seen
    newest: datetime | None = None  # newest update time listed
    complete: bool = False  # the listing ran to its end: only then may anything be removed or the cursor move
    error: str = ""  # the listing failed (or its credentials were refused): the whole system failed
    to_delete: set[str] = field(default_factory=set)  # stored here, not listed upstream (full only)
    stored: int = 0  # how many copies of the system were stored when the listing ended

    @property
    def refs(self) -> list[TicketRef]:
        """Every listed ticket once, with its newest update time."""
        return [TicketRef(ticket_id, updated_at) for ticket_id, updated_at in self.listed.items()]

    @property
    def new_cursor(self) -> datetime | None:
        """The newest upstream time seen, never behind the previous cursor."""
        times = [t for t in (self.newest, self.previous_cursor) if t is not None]
        return max(times, default=None)

    def stream(self, integration: TicketIntegration) -> Iterator[TicketRef]:
        """The integration's listing (from `since_used`): its tickets as they come, each once (again only when listed with a newer time).

        Listings that page by offset can repeat a ticket that changed mid-listing. A listing error is
        recorded in `error`, not raised: what was already handed out is harmless to finish, but
        nothing is removed and the cursor stays.
        """
        try:
            for ref in integration.iter_changed(self.since_used):
                updated = ref.updated_at
                if ref.ticket_id in self.listed:
                    seen = self.listed[ref.ticket_id]
                    if updated is None or (seen is not None and updated <= seen):
                        continue
                self.listed[ref.ticket_id] = updated
                if updated is not None and (self.newest is None or updated > self.newest):
                    self.newest = updated
                yield ref
        except CredentialsRefused as exc:
            log.error("resync %s: credentials refused: %s", self.system, exc)
            self.error = f"credentials refused: {exc}"
            return
        except Exception as exc:
            log.error("resync %s: listing failed: %s", self.system, exc)
            self.error = f"listing failed: {type(exc).__name__}: {exc}"
            return
        self.complete = True


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
    """Takes the listed tickets as the listing streams them: works on them here, or hands them on."""

    kind: str

    def dispatch(
        self,
        integration: TicketIntegration,
        persistence: TicketStore,
        plan: ResyncPlan,
        refs: Iterable[TicketRef],
        summary: ResyncSummary,
        progress: Progress | None,
    ) -> None: ...


def start_plan(
    integration: TicketIntegration,
    persistence: TicketStore,
    *,
    since: datetime | None = None,
    full: bool = False,
    use_cursor: bool = True,
) -> ResyncPlan:
    """Prove the credentials and choose where the listing starts (raises `CredentialsRefused`)."""
    prove_credentials(integration, fresh=full)
    listed_at = datetime.now(UTC)
    previous = persistence.get_cursor(integration.name)
    if full:
        since_used = None
    elif since is not None:
        since_used = since if since.tzinfo else since.replace(tzinfo=UTC)
    elif use_cursor and previous is not None:
        since_used = previous - timedelta(seconds=integration.resync_overlap_seconds)
    else:
        since_used = None
    return ResyncPlan(integration.name, full, since_used, previous, listed_at)


def finish_plan(integration: TicketIntegration, persistence: TicketStore, plan: ResyncPlan) -> None:
    """Once a full listing is complete: prove the credentials again and find the stored copies it did not list."""
    if plan.full and plan.complete and not plan.error:
        prove_credentials(integration, fresh=True)  # still accepted now that the listing is complete
        stored_ids = persistence.ticket_ids(plan.system)
        plan.stored = len(stored_ids)
        plan.to_delete = stored_ids - plan.listed.keys()


def plan_resync(
    integration: TicketIntegration,
    persistence: TicketStore,
    *,
    since: datetime | None = None,
    full: bool = False,
    use_cursor: bool = True,
) -> ResyncPlan:
    """The whole listing, without working on it (ids and times only); errors raise."""
    plan = start_plan(integration, persistence, since=since, full=full, use_cursor=use_cursor)
    for _ in plan.stream(integration):
        pass
    if plan.error:
        raise RuntimeError(plan.error)
    finish_plan(integration, persistence, plan)
    return plan


class _TicketRunner:
    """Runs one callable per ticket on a pool, at most `limit.current` at once; failures are counted, never raised.

    A refused credential proof stops the run: it fails the system, and nothing more is tried.
    """

    def __init__(self, summary: ResyncSummary, progress: Progress | None, limit: AdaptiveLimit) -> None:
        self.summary = summary
        self.progress = progress
        self.limit = limit
        self.lock = threading.Lock()
        self.refused = threading.Event()

    def one(self, ticket_id: str, work: Callable[[], SyncOutcome | None]) -> None:
        """Run `work`; its outcome is counted now, or later through `settle` when it returns None (group commit)."""
        if self.refused.is_set():
            return
        self.limit.started()
        try:
            outcome = work()
        except Exception as exc:
            self.settle(ticket_id, None, exc)
            return
        self.limit.succeeded()
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

    def run(self, work: Iterable[tuple[str, Callable[[], SyncOutcome | None]]]) -> None:
        """Run each (ticket id, work); `work` is read ahead by its own thread, so a slow listing overlaps the work."""
        ceiling = self.limit.ceiling
        with ThreadPoolExecutor(max_workers=ceiling, thread_name_prefix=f"resync-{self.summary.system}") as pool:
            in_flight: set[Future[None]] = set()
            items = read_ahead(work, READ_AHEAD, name=f"listing-{self.summary.system}")
            try:
                for ticket_id, call in items:
                    while len(in_flight) >= self.limit.current:  # the limit may shrink (429/503) or grow back
                        _, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    if self.refused.is_set():
                        break
                    in_flight.add(pool.submit(self.one, ticket_id, call))
            finally:
                items.close()  # on a refusal: stop the listing too
                wait(in_flight)


@dataclass
class InlineDispatcher:
    """Fetches and stores every listed ticket in this process as the listing streams, adapting its concurrency.

    A ticket the listing brings complete (`TicketRef.snapshot`) is stored as it is; the rest are fetched.
    At most `concurrency` (default: the system's `resync_concurrency`) at once, fewer while the server
    answers 429/503 (`throttle.AdaptiveLimit`). With `group_commit` (the default) the tickets are stored
    in batches (`GroupCommitter`: up to 100 per transaction, or what arrived within 0.5 s), and
    `dispatch` returns only once every batch is durable, so the cursor, advanced after it, never passes
    an uncommitted ticket.
    """

    concurrency: int | None = None
    kind: str = "inline"
    group_commit: bool = True

    def dispatch(
        self,
        integration: TicketIntegration,
        persistence: TicketStore,
        plan: ResyncPlan,
        refs: Iterable[TicketRef],
        summary: ResyncSummary,
        progress: Progress | None,
    ) -> None:
        runner = _TicketRunner(summary, progress, AdaptiveLimit(self.concurrency or integration.resync_concurrency))
        if not self.group_commit:
            run_adapting(
                integration, runner, ((ref.ticket_id, _sync_now(integration, persistence, ref)) for ref in refs)
            )
            return
        with GroupCommitter(persistence, name=f"commit-{integration.name}") as committer:
            run_adapting(
                integration,
                runner,
                (
                    (
                        ref.ticket_id,
                        _sync_batched(integration, persistence, committer, ref, partial(runner.settle, ref.ticket_id)),
                    )
                    for ref in refs
                ),
            )


def _sync_now(integration: TicketIntegration, persistence: TicketStore, ref: TicketRef) -> Callable[[], SyncOutcome]:
    """Store the listed snapshot, or fetch and store the ticket, in its own transaction."""
    snapshot = ref.snapshot
    if snapshot is not None:
        return lambda: store_snapshot(integration, persistence, snapshot)
    ticket_id = ref.ticket_id
    return lambda: sync_ticket(integration, persistence, ticket_id)


def _sync_batched(
    integration: TicketIntegration,
    persistence: TicketStore,
    committer: GroupCommitter,
    ref: TicketRef,
    settled: Settled,
) -> Callable[[], SyncOutcome | None]:
    """Hand the listed snapshot, or the fetched ticket, to the committer (None); a removal happens now."""
    snapshot = ref.snapshot
    if snapshot is not None:

        def submit() -> None:
            submit_snapshot(integration, committer, snapshot, settled)

        return submit
    ticket_id = ref.ticket_id
    return lambda: submit_ticket(integration, persistence, committer, ticket_id, settled)


def run_adapting(
    integration: TicketIntegration,
    runner: _TicketRunner,
    work: Iterable[tuple[str, Callable[[], SyncOutcome | None]]],
) -> None:
    """Run the work on `runner`, whose limit halves on each throttle answer from the system's server."""
    with adapting_to(integration, runner.limit):
        runner.run(work)
    if runner.limit.cuts:
        log.info(
            "resync %s: the server throttled us; concurrency cut %d times", runner.summary.system, runner.limit.cuts
        )


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

    def settle(ticket_id: str) -> Callable[[], SyncOutcome]:
        return lambda: reconcile_unlisted(integration, persistence, ticket_id, unchanged_since=unchanged_since)

    runner = _TicketRunner(summary, progress, AdaptiveLimit(concurrency or integration.resync_concurrency))
    run_adapting(integration, runner, ((ticket_id, settle(ticket_id)) for ticket_id in sorted(plan.to_delete)))


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
    try:
        plan = start_plan(integration, persistence, since=since, full=full, use_cursor=use_cursor)
    except CredentialsRefused as exc:
        log.error("resync %s: credentials refused: %s", system, exc)
        summary.error = f"credentials refused: {exc}"
    except Exception as exc:
        log.error("resync %s: could not start: %s", system, exc)
        summary.error = f"listing failed: {type(exc).__name__}: {exc}"
    if summary.error:
        summary.duration_seconds = round(time.monotonic() - started, 3)
        persistence.record_resync(system, summary.as_dict())
        return summary

    summary.mode = _mode(plan.full, plan.since_used)
    summary.since = plan.since_used.isoformat() if plan.since_used else ""
    progress = progress_factory(plan) if progress_factory else None
    try:  # the listing streams into the dispatcher: work starts with its first page
        dispatcher.dispatch(integration, persistence, plan, plan.stream(integration), summary, progress)
    except Exception as exc:  # the dispatcher itself failed (e.g. the queue is unreachable)
        log.error("resync %s: dispatch failed: %s", system, exc)
        summary.error = summary.error or f"dispatch failed: {type(exc).__name__}: {exc}"
    summary.listed = len(plan.listed)
    summary.error = plan.error or summary.error
    if not summary.error and not plan.complete:
        summary.error = "the listing stopped before its end"
    if not summary.error:
        try:
            finish_plan(integration, persistence, plan)
        except CredentialsRefused as exc:
            log.error("resync %s: credentials refused: %s", system, exc)
            summary.error = f"credentials refused: {exc}"
    summary.deletion_candidates = len(plan.to_delete)
    refusal = guard.refusal(plan)
    if refusal:
        log.error("resync %s: %s", system, refusal)
        summary.error = summary.error or refusal
    if plan.to_delete and not summary.error:
        settle_candidates(integration, persistence, plan, summary, concurrency=concurrency, progress=progress)

    if summary.ok and plan.new_cursor is not None:
        persistence.set_cursor(system, plan.new_cursor)
    cursor = persistence.get_cursor(system)
    summary.cursor = cursor.isoformat() if cursor else ""
    summary.duration_seconds = round(time.monotonic() - started, 3)
    persistence.record_resync(system, summary.as_dict())
    return summary

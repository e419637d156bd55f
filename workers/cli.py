"""`tickets`: resync, worker, status, changes, export, import, failed list|requeue|purge, check-config.

`--config PATH` (or TICKETS_CONFIG) picks the config file for every command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml
from redis.exceptions import RedisError

from data_manager.collectors.persistence import PersistenceError
from data_manager.collectors.postgres import redact_url
from data_manager.collectors.store import TicketStore
from data_manager.collectors.tickets.errors import ConfigError
from data_manager.collectors.tickets.model import parse_datetime
from data_manager.collectors.tickets.resync import DeleteGuard
from data_manager.config import AppConfig, config_path, load_config
from service.connection import Role, redacted_url
from service.logs import configure_logging
from service.runtime import Runtime, build_store
from workers import feed, ops, transfer
from workers.bulk import enqueue_resync
from workers.progress import ProgressReporter
from workers.worker import DEFAULT_BATCH, WorkerMode, run_worker


@dataclass
class CliState:
    path: Path
    _config: AppConfig | None = None
    _runtime: Runtime | None = field(default=None)

    @property
    def config(self) -> AppConfig:
        if self._config is None:
            try:
                self._config = load_config(self.path)
            except ConfigError as exc:
                raise click.ClickException(f"config error: {exc}") from None
        return self._config

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            try:
                self._runtime = Runtime(self.config, role=Role.CLI)
                self._runtime.manager  # noqa: B018 - surface integration config errors now
            except ConfigError as exc:
                raise click.ClickException(f"config error: {exc}") from None
        return self._runtime

    @property
    def persistence(self) -> TicketStore:
        """The configured store (the commands that read or write only the store need nothing else)."""
        return self.runtime.persistence


def _redis_or_fail(state: CliState) -> Runtime:
    runtime = state.runtime
    try:
        runtime.redis.ping()
    except RedisError as exc:
        raise click.ClickException(
            f"Redis at {redacted_url(runtime.settings.redis_url)} is not reachable ({type(exc).__name__}); "
            f"start it or set redis.url / REDIS_URL"
        ) from None
    return runtime


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $TICKETS_CONFIG, else ./config.yaml).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.pass_context
def main(ctx: click.Context, config_file: str | None, log_level: str) -> None:
    """Keep a normalised copy of every ticket from your ticket systems."""
    configure_logging(log_level)
    ctx.obj = CliState(config_path(config_file))


# -- resync ------------------------------------------------------------------------------------------
def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time (e.g. 2024-05-01T12:00:00Z)", param_hint="--since"
        ) from None


def _check_systems(state: CliState, systems: Sequence[str]) -> list[str] | None:
    enabled = state.config.enabled_systems
    unknown = [s for s in systems if s not in enabled]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} not enabled (enabled: {', '.join(enabled) or 'none'})", param_hint="--system"
        )
    return list(systems) or None


@main.command()
@click.option("--system", "systems", multiple=True, help="Only this system (repeatable). Default: every enabled one.")
@click.option("--since", help="Only tickets updated since this ISO time (default: since the stored cursor).")
@click.option("--full", is_flag=True, help="List everything, and delete what no longer exists upstream.")
@click.option("--enqueue", is_flag=True, help="Hand each ticket to the workers (bulk queue) instead of fetching here.")
@click.option(
    "--concurrency", type=click.IntRange(1, 64), help="Parallel fetches (default: the system's resync_concurrency)."
)
@click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="This run only: a full resync may remove more than resync.max_delete_fraction / max_delete_min.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def resync(
    state: CliState,
    systems: tuple[str, ...],
    since: str | None,
    full: bool,
    enqueue: bool,
    concurrency: int | None,
    allow_mass_delete: bool,
    as_json: bool,
) -> None:
    """Resync tickets: incremental from the stored cursor by default."""
    if since and full:
        raise click.UsageError("--since and --full exclude each other")
    since_at = _parse_since(since)
    selected = _check_systems(state, systems)
    runtime = state.runtime
    if not runtime.manager.systems:
        raise click.ClickException("no ticket system is enabled; enable one under data_manager.sources.tickets")
    if enqueue:
        _redis_or_fail(state)
        summaries = enqueue_resync(
            runtime, systems=selected, since=since_at, full=full, allow_mass_delete=allow_mass_delete
        )
        rows = {name: queued.as_dict() for name, queued in summaries.items()}
        ok = all(queued.ok for queued in summaries.values())
        if as_json:
            _echo_json(rows)
        else:
            for name, queued in summaries.items():
                click.echo(
                    f"{name}: listed {queued.listed}, enqueued {queued.enqueued}, already queued {queued.coalesced}, "
                    f"deletion candidates {queued.deletion_candidates} (deleted {queued.deleted}, out of scope "
                    f"{queued.out_of_scope}, failed {queued.failed})"
                    + (f" ERROR {queued.error}" if queued.error else "")
                )
        sys.exit(0 if ok else 1)

    lock = _resync_lock(runtime)
    reporter = ProgressReporter()
    try:
        result = runtime.manager.resync(
            runtime.persistence,
            systems=selected,
            since=since_at,
            full=full,
            concurrency=concurrency,
            progress_factory=reporter.factory,
            guard=DeleteGuard.from_config(runtime.config.resync, allow_mass_delete=allow_mass_delete),
        )
    finally:
        reporter.close()
        if lock is not None:
            try:
                lock.release()
            except RedisError:
                pass
    rows = {name: s.as_dict() for name, s in result.summaries.items()}
    if as_json:
        _echo_json(rows)
    else:
        for name, s in result.summaries.items():
            line = (
                f"{name} ({s.mode}{' since ' + s.since if s.since else ''}): fetched {s.fetched}, written {s.written}, "
                f"unchanged {s.unchanged}, stale {s.stale}, deleted {s.deleted}, "
                f"{f'out of scope {s.out_of_scope}, ' if s.out_of_scope else ''}failed {s.failed} "
                f"in {s.duration_seconds:.1f}s"
            )
            click.echo(line)
            if s.error:
                click.echo(f"  ERROR {s.error}")
            for failure in s.failures[:20]:
                click.echo(f"  failed {failure['ticket_id']}: {failure['error']}")
            if len(s.failures) > 20:
                click.echo(f"  ... and {len(s.failures) - 20} more")
    sys.exit(0 if result.ok else 1)


def _resync_lock(runtime: Runtime) -> Any:
    """The lock the periodic resync takes; without Redis an inline resync still runs (it needs none)."""
    try:
        lock = runtime.redis.lock(runtime.names.lock("resync"), timeout=2 * 3600, blocking=False)
        if not lock.acquire(blocking=False):
            raise click.ClickException(
                "another resync is running (a worker's periodic resync or another command); try again later"
            )
        return lock
    except RedisError as exc:
        click.echo(
            f"warning: Redis not reachable ({type(exc).__name__}); resyncing without the cross-process lock", err=True
        )
        return None


# -- worker ------------------------------------------------------------------------------------------
@main.command()
@click.option(
    "--queue", "queues", multiple=True, help="Queue(s) to work on, in priority order (default: live, then bulk)."
)
@click.option("--name", help="Worker name (default: random).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Jobs at once, in threads of the work horse (the work is I/O).",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 100),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Queued jobs of a system that fetches in batches (Bugzilla, Salesforce) taken together.",
)
@click.option(
    "--fork", is_flag=True, help="A fresh work horse per job (RQ's worker): no connection outlives a job; slower."
)
@click.option(
    "--no-fork", is_flag=True, help="Run jobs in the worker's own process (RQ's SimpleWorker): no crash isolation."
)
@click.option("--no-scheduler", is_flag=True, help="Do not run the scheduler (delayed retries need one somewhere).")
@click.option("--max-jobs", type=click.IntRange(1), help="Exit after this many jobs.")
@click.pass_obj
def worker(
    state: CliState,
    queues: tuple[str, ...],
    name: str | None,
    burst: bool,
    concurrency: int,
    batch: int,
    fork: bool,
    no_fork: bool,
    no_scheduler: bool,
    max_jobs: int | None,
) -> None:
    """Run a worker on the pipeline's queues, with the scheduler.

    By default one long-lived work horse runs the jobs and keeps its connections across them; a job that
    kills it or overruns its timeout is retried and a fresh horse takes over.
    """
    if fork and no_fork:
        raise click.UsageError("--fork and --no-fork exclude each other")
    mode = WorkerMode.FORK if fork else WorkerMode.INLINE if no_fork else WorkerMode.HORSE
    runtime = _redis_or_fail(state)
    queue_names = [
        runtime.names.live_queue if q == "live" else runtime.names.bulk_queue if q == "bulk" else q for q in queues
    ]
    try:
        run_worker(
            runtime,
            queues=queue_names or None,
            name=name,
            burst=burst,
            mode=mode,
            concurrency=concurrency,
            batch=batch,
            with_scheduler=not no_scheduler,
            max_jobs=max_jobs,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except PersistenceError as exc:
        raise click.ClickException(str(exc)) from None


# -- status ------------------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(state: CliState, as_json: bool) -> None:
    """Queue depths, workers, failed jobs and the last resync of each system."""
    runtime = _redis_or_fail(state)
    report = ops.status(runtime.redis, runtime.names, runtime.persistence, state.config.enabled_systems)
    if as_json:
        _echo_json(report)
        return
    click.echo("queues:")
    for q in report["queues"]:
        click.echo(
            f"  {q['queue']}: {q['queued']} queued, {q['scheduled']} scheduled, {q['running']} running, {q['failed']} failed"
        )
    click.echo(f"workers: {len(report['workers'])}")
    for w in report["workers"]:
        click.echo(
            f"  {w['name']} [{w['state']}{'' if w['alive'] else ', DEAD'}] on {w['queues']}, scheduler {w['scheduler']}"
            + (f" running {w['current_job']}" if w["current_job"] else "")
        )
    for problem in report["problems"]:
        click.echo(f"  WARNING {problem}")
    click.echo(f"failed jobs: {report['failed']}")
    click.echo("resync:")
    for system, info in report["resync"].items():
        last = info["last_resync"]
        if not last:
            click.echo(f"  {system}: never")
            continue
        shown = ("listed", "enqueued", "deleted", "failed") if last.get("dispatch") == "bulk" else None
        counts = ", ".join(
            f"{k} {last[k]}"
            for k in shown or ("fetched", "written", "deleted", "failed", "listed", "enqueued")
            if k in last
        )
        click.echo(
            f"  {system}: {last.get('finished_at', '?')} ({last.get('mode', '?')}) {counts}"
            + (f" ERROR {last['error']}" if last.get("error") else "")
            + f"; cursor {info['cursor'] or '-'}"
        )
    click.echo("removed in the last 24 hours (in the trash; `tickets restore SYSTEM TICKET_ID` puts one back):")
    if not any(report["removals"].values()):
        click.echo("  none")
    for system, removals in report["removals"].items():
        if not removals:
            continue
        reasons: dict[str, int] = {}
        for removal in removals:
            reasons[removal["reason"]] = reasons.get(removal["reason"], 0) + 1
        click.echo(
            f"  {system}: {len(removals)} (" + ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())) + ")"
        )
        for removal in removals[:10]:
            click.echo(f"    {removal['ticket_id']}  {removal['removed_at']}  {removal['reason']}")
        if len(removals) > 10:
            click.echo(f"    ... and {len(removals) - 10} more (`tickets status --json` lists them all)")


# -- restore -----------------------------------------------------------------------------------------
@main.command()
@click.argument("system")
@click.argument("ticket_id")
@click.pass_obj
def restore(state: CliState, system: str, ticket_id: str) -> None:
    """Put the trashed copy of a removed ticket back (the next sync of it decides its fate as usual)."""
    persistence = build_store(state.config)
    try:
        removal = persistence.restore(system, ticket_id)
        where = persistence.location(removal.hash)
    except PersistenceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        persistence.close()
    click.echo(f"restored {system} {ticket_id} (removed {removal.removed_at}: {removal.reason}) to {where}")


# -- db ----------------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The store's schema (PostgreSQL; the embedded store upgrades itself)."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(state: CliState) -> None:
    """Bring the store's schema up to date in place (safe to run again, and from several machines at once)."""
    store = build_store(state.config)
    try:
        applied = store.upgrade_schema()
    except PersistenceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    click.echo("the schema is up to date")


# -- failed ------------------------------------------------------------------------------------------
@main.group()
def failed() -> None:
    """Jobs that failed after their last attempt."""


@failed.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def failed_list(state: CliState, as_json: bool) -> None:
    """Job id, system, ticket, error, attempts and when, oldest first."""
    runtime = _redis_or_fail(state)
    jobs = ops.failed_jobs(runtime.redis, runtime.names)
    if as_json:
        _echo_json([j.as_dict() for j in jobs])
        return
    if not jobs:
        click.echo("no failed jobs")
        return
    for j in jobs:
        when = j.failed_at.isoformat(timespec="seconds") if j.failed_at else "?"
        click.echo(f"{j.job_id}  {j.system}  {j.ticket_id}  attempts={j.attempts}  {when}\n    {j.error}")


def _selection(state: CliState, all_jobs: bool, system: str | None, job_ids: tuple[str, ...]) -> tuple[Any, list[Any]]:
    if not (all_jobs or system or job_ids):
        raise click.UsageError("say which jobs: --all, --system S, or job ids")
    runtime = _redis_or_fail(state)
    chosen, missing = ops.select(
        ops.failed_jobs(runtime.redis, runtime.names), all_jobs=all_jobs, system=system, job_ids=job_ids
    )
    if missing:
        raise click.ClickException(f"not in the failed registry: {', '.join(missing)}")
    return runtime, chosen


@failed.command("requeue")
@click.option("--all", "all_jobs", is_flag=True)
@click.option("--system")
@click.argument("job_ids", nargs=-1)
@click.pass_obj
def failed_requeue(state: CliState, all_jobs: bool, system: str | None, job_ids: tuple[str, ...]) -> None:
    """Sync the failed jobs' tickets again (and remove them from the failed registry)."""
    runtime, chosen = _selection(state, all_jobs, system, job_ids)
    for job in chosen:
        new_id = ops.requeue(runtime.redis, runtime.coalescer, job)
        click.echo(f"requeued {job.job_id} ({job.system} {job.ticket_id}) as {new_id}")
    click.echo(f"{len(chosen)} job(s) requeued")


@failed.command("purge")
@click.option("--all", "all_jobs", is_flag=True)
@click.option("--system")
@click.argument("job_ids", nargs=-1)
@click.pass_obj
def failed_purge(state: CliState, all_jobs: bool, system: str | None, job_ids: tuple[str, ...]) -> None:
    """Delete failed jobs without running them again."""
    runtime, chosen = _selection(state, all_jobs, system, job_ids)
    for job in chosen:
        ops.purge(runtime.redis, job)
    click.echo(f"{len(chosen)} job(s) purged")


# -- check-config ------------------------------------------------------------------------------------
@main.command("check-config")
@click.pass_obj
def check_config(state: CliState) -> None:
    """Show what is enabled, the settings (secrets redacted), warnings and errors."""
    click.echo(f"config: {state.path}")
    try:
        config = load_config(state.path)
        runtime = Runtime(config, role=Role.PROBE)
        runtime.manager.close()
    except ConfigError as exc:
        click.echo(f"ERROR {exc}", err=True)
        sys.exit(1)
    settings = runtime.settings
    click.echo(f"data_path: {config.data_path}")
    click.echo(f"enabled systems: {', '.join(config.enabled_systems) or 'none'}")
    shown = {name: cfg for name, cfg in config.redacted_sources().items() if cfg.get("enabled")}
    if shown:
        click.echo(yaml.safe_dump({"sources": shown}, sort_keys=True, default_flow_style=False).rstrip())
    click.echo(
        f"redis: {redacted_url(settings.redis_url)} (key prefix {settings.key_prefix!r}, queues "
        f"{', '.join(settings.names.queues)})"
    )
    click.echo(f"workers: {yaml.safe_dump(config.workers, default_flow_style=True).strip()}")
    click.echo(f"resync: {yaml.safe_dump(config.resync, default_flow_style=True).strip()}")
    click.echo(f"webhooks: {yaml.safe_dump(config.webhooks, default_flow_style=True).strip()}")
    click.echo(f"persistence: {yaml.safe_dump(config.persistence, default_flow_style=True).strip()}")
    click.echo(f"store: {redact_url(str(config.store['url']))}")
    warnings = list(config.warnings)
    if not config.enabled_systems:
        warnings.append("no ticket system is enabled: the webhook service has no endpoints and resync does nothing")
    try:
        runtime.redis.ping()
    except RedisError as exc:
        warnings.append(f"Redis at {redacted_url(settings.redis_url)} is not reachable now ({type(exc).__name__})")
    for warning in warnings:
        click.echo(f"WARNING {warning}")
    click.echo("ok" if not warnings else f"ok, with {len(warnings)} warning(s)")


main.add_command(feed.changes)
main.add_command(transfer.export_command)
main.add_command(transfer.import_command)

if __name__ == "__main__":  # pragma: no cover
    main()

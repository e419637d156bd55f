"""`tickets export` and `tickets import`: the embedded file layout out of, and into, the configured store."""

from __future__ import annotations

import json

import click

from data_manager.collectors.persistence import PersistenceError
from data_manager.collectors.transfer import TransferError, export_tickets, import_tickets
from workers.feed import HasStore


@click.command("export")
@click.option("--to", "target", required=True, type=click.Path(file_okay=False), help="Directory to write tickets/ in.")
@click.option("--system", help="Only this system's tickets (its configured name).")
@click.pass_obj
def export_command(state: HasStore, target: str, system: str | None) -> None:
    """Write the store's tickets as the embedded store lays them out: DIR/tickets/<hash>.txt and .meta.yaml."""
    try:
        report = export_tickets(state.persistence, target, system)
    except (TransferError, PersistenceError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exported {report.exported} ticket(s) to {report.target}")


@click.command("import")
@click.option(
    "--from", "source", required=True, type=click.Path(file_okay=False), help="A data directory (holding tickets/)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def import_command(state: HasStore, source: str, as_json: bool) -> None:
    """Load a data directory's tickets into the configured store (safe to re-run: nothing is written twice).

    A malformed ticket is not imported; each is named, and the command exits 1.
    """
    try:
        report = import_tickets(state.persistence, source)
    except (TransferError, PersistenceError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        click.echo(
            f"read {report.read} ticket(s): {report.written} written, {report.unchanged} unchanged, "
            f"{report.stale} kept (the store's copy is newer), {len(report.malformed)} malformed"
        )
    for path, why in report.malformed:
        click.echo(f"ERROR {path}: {why}; not imported", err=True)
    if report.malformed:
        raise SystemExit(1)

"""Export a store to the embedded file layout, and import such a layout into a store (issue #13).

`export_tickets` writes `<dir>/tickets/<hash>.txt` and `<hash>.txt.meta.yaml` byte for byte as the
embedded store writes them, from any store, through the public `TicketStore` API only
(`iter_entries`, `get_by_hash`), one ticket at a time: for indexers that read files, and to take a
copy. `import_tickets` loads such a directory (a data directory of the embedded store, or an export)
into a store: the migration path from one machine to many. Each ticket is upserted with the upstream
time its metadata records, in batches (`upsert_many`), so a re-run writes nothing and a newer copy
already in the store is kept. Both stream: memory stays flat however many tickets there are.

A malformed ticket (no metadata file, metadata not in our shape, a file name that does not match the
ticket it names, text that is not UTF-8) is not imported at all; the import goes on with the rest and
reports each such file by path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_manager.collectors.file_names import CONTENT_SUFFIX, META_SUFFIX
from data_manager.collectors.persistence import (
    TICKETS_DIR,
    PersistenceError,
    StoreUnavailable,
    UpsertOutcome,
    atomic_write,
    render_metadata,
)
from data_manager.collectors.resource_base import ResourceMetadata
from data_manager.collectors.store import TicketStore, upsert_each
from data_manager.collectors.tickets.ticket_resource import TicketResource, resource_hash

IMPORT_BATCH = 100
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 10x cheaper
_IDENTITY_KEYS = ("ticket_id", "source_type", "created_at")  # TicketResource puts these into extra itself


class TransferError(Exception):
    """The source or target directory cannot be used; the message names it."""


@dataclass
class ExportReport:
    exported: int = 0
    target: str = ""


@dataclass
class ImportReport:
    read: int = 0
    written: int = 0
    unchanged: int = 0
    stale: int = 0  # the store already holds a newer copy: kept
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def count(self, outcome: UpsertOutcome) -> None:
        if outcome is UpsertOutcome.WRITTEN:
            self.written += 1
        elif outcome is UpsertOutcome.UNCHANGED:
            self.unchanged += 1
        else:
            self.stale += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "written": self.written,
            "unchanged": self.unchanged,
            "stale": self.stale,
            "malformed": [{"path": path, "error": why} for path, why in self.malformed],
        }


def export_tickets(store: TicketStore, target: str | os.PathLike[str], system: str | None = None) -> ExportReport:
    """Write every stored ticket (of `system`, when given) under `<target>/tickets/` as the embedded store does."""
    directory = Path(target) / TICKETS_DIR
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransferError(f"cannot create {directory}: {exc.strerror}") from None
    report = ExportReport(target=str(directory))
    for entry in store.iter_entries(system):
        stored = store.get_by_hash(entry.hash)
        if stored is None:  # removed since the listing
            continue
        path = directory / f"{entry.hash}{CONTENT_SUFFIX}"
        try:
            atomic_write(path, stored.content, fsync=False)
            if stored.metadata:
                meta = render_metadata(ResourceMetadata(**stored.metadata))
                atomic_write(path.with_name(path.name + META_SUFFIX), meta, fsync=False)
        except OSError as exc:
            raise TransferError(f"cannot write {path}: {exc.strerror}") from None
        report.exported += 1
    return report


def read_ticket(path: Path) -> tuple[TicketResource, str | None]:
    """A ticket file and its metadata back as the resource that wrote them, with its upstream time.

    Raises `ValueError` saying what is wrong with it.
    """
    meta_path = path.with_name(path.name + META_SUFFIX)
    try:
        content = path.read_text(encoding="utf-8")
        meta_text = meta_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValueError(f"{exc.filename} is missing") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    try:
        loaded = yaml.load(meta_text, Loader=_YAML_LOADER)
        metadata = ResourceMetadata(**loaded) if isinstance(loaded, dict) else None
    except (yaml.YAMLError, TypeError, ValueError) as exc:
        raise ValueError(f"{meta_path.name} is not ticket metadata: {exc}") from None
    if metadata is None:
        raise ValueError(f"{meta_path.name} is not ticket metadata (display_name and extra)")
    extra = dict(metadata.extra)
    ticket_id, source_type = extra.get("ticket_id"), extra.get("source_type")
    if not ticket_id or not source_type:
        raise ValueError(f"{meta_path.name} does not say which ticket it is (extra.ticket_id, extra.source_type)")
    expected = resource_hash(source_type, ticket_id)
    if path.name != expected + CONTENT_SUFFIX:
        raise ValueError(f"it holds {source_type}:{ticket_id}, whose file is {expected}{CONTENT_SUFFIX}")
    resource = TicketResource(
        ticket_id=ticket_id,
        content=content,
        source_type=source_type,
        created_at=extra.get("created_at") or None,
        metadata={
            "display_name": metadata.display_name,
            **{key: value for key, value in extra.items() if key not in _IDENTITY_KEYS},
        },
    )
    if resource.get_metadata() != metadata:  # e.g. an empty display name the resource would replace
        raise ValueError(f"{meta_path.name} cannot be stored as it is")
    return resource, extra.get("updated_at") or None


def _ticket_files(directory: Path) -> Iterator[Path]:
    """The ticket content files of a tickets directory, streamed (never a list of them all)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(CONTENT_SUFFIX) and not entry.name.startswith(".") and entry.is_file():
                yield Path(entry.path)


def import_tickets(
    store: TicketStore, source: str | os.PathLike[str], *, batch_size: int = IMPORT_BATCH
) -> ImportReport:
    """Upsert every ticket of the data directory `source` (its `tickets/`) into `store`, `batch_size` at a time."""
    directory = Path(source) / TICKETS_DIR
    if not directory.is_dir():
        raise TransferError(f"{directory} is not a directory: --from takes a data directory (holding tickets/)")
    report = ImportReport()
    batch: list[tuple[Path, TicketResource, str | None]] = []

    def flush() -> None:
        results = upsert_each(store, [(resource, updated_at) for _, resource, updated_at in batch])
        for (path, _, _), result in zip(batch, results, strict=True):
            if isinstance(result, PersistenceError) and not isinstance(result, StoreUnavailable):
                report.malformed.append((str(path), str(result)))  # refused: its file name holds another ticket
            elif isinstance(result, Exception):
                raise result  # the store is down (re-running the import is idempotent), or a bug
            else:
                report.count(result)
        batch.clear()

    for path in _ticket_files(directory):
        report.read += 1
        try:
            resource, updated_at = read_ticket(path)
        except ValueError as exc:
            report.malformed.append((str(path), str(exc)))
            continue
        batch.append((path, resource, updated_at))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report

"""`tickets export` and `tickets import` keep memory flat (#13): peak memory at 100,000 tickets against 10,000.

    python -m bench.transfer_memory [--small 10000] [--large 100000]

Each size runs in a fresh interpreter: it fills an embedded store with N memory-system tickets (files not
fsynced: the fill is set-up, not measured), then measures the peak resident size while exporting the store
to a directory and while importing that directory into a second, empty store (both through the public
`export_tickets` / `import_tickets` the CLI runs). Memory should not grow with N: goal large / small <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.memory_resync import PeakSampler, rss
from bench.table import Row, format_table, ratio
from data_manager.collectors.persistence import PersistenceService
from data_manager.collectors.tickets.integration import TicketSnapshot
from data_manager.collectors.tickets.model import Comment, TicketData
from data_manager.collectors.tickets.normalise import normalise
from data_manager.collectors.transfer import export_tickets, import_tickets

GOAL = "<= 1.2"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def fill(store: PersistenceService, count: int) -> None:
    batch = []
    for n in range(count):
        at = T0 + timedelta(seconds=n)
        snapshot = TicketSnapshot(
            ticket_id=f"T{n}",
            data=TicketData(title=f"Ticket {n}: login fails", description=f"Steps to reproduce #{n}.\n" * 4),
            comments=tuple(Comment("bob", f"Comment {j} on ticket {n}.", at) for j in range(3)),
            created_at=T0,
            updated_at=at,
        )
        batch.append((normalise("memory", snapshot), snapshot.updated_at))
        if len(batch) == 500:
            store.upsert_many(batch)
            batch.clear()
    store.upsert_many(batch)


def child(count: int) -> dict[str, float]:
    """In a fresh interpreter: peak resident size of an export and of an import of `count` tickets."""
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        source = PersistenceService(Path(tmp) / "source", fsync=False)
        fill(source, count)
        before = rss()
        with PeakSampler() as exporting:
            exported = export_tickets(source, Path(tmp) / "export")
        assert exported.exported == count, exported
        target = PersistenceService(Path(tmp) / "target", fsync=False)
        with PeakSampler() as importing:
            imported = import_tickets(target, Path(tmp) / "export")
        assert imported.written == count, imported
        return {"before": before, "export": exporting.peak, "import": importing.peak}


def measure(count: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.transfer_memory", "--child", str(count)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def compare(small: int, large: int) -> list[Row]:
    figures = {count: measure(count) for count in (small, large)}
    rows = []
    for phase in ("export", "import"):
        ours, base = figures[large][phase], figures[small][phase]
        rows.append(
            Row(
                f"tickets {phase} peak memory, {large:,} / {small:,} tickets",
                f"{ours / 2**20:.1f} MiB",
                f"{base / 2**20:.1f} MiB",
                ratio(ours, base),
                GOAL,
                f"process at its peak; {figures[large]['before'] / 2**20:.1f} MiB before the {phase} at {large:,}",
            )
        )
    return rows


def rows(quick: bool = False) -> list[Row]:
    """For `python -m bench` (quick: 2,000 against 20,000)."""
    return compare(2000, 20000) if quick else compare(10000, 100000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10000)
    parser.add_argument("--large", type=int, default=100000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    print(format_table(compare(args.small, args.large)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

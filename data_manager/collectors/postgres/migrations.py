"""Versioned schema migrations: ordered SQL files (`migrations/NNNN_name.sql`) and a version table.

`tickets db upgrade` applies the missing files in order, each in the same transaction as its version
row, under an advisory lock (two upgrades at once: the second waits, then finds nothing to do). The
web app and the workers only check the version, and refuse to start on an older schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = 0x7469636B  # pg_advisory_xact_lock key for upgrades ("tick")
UPGRADE_COMMAND = "tickets db upgrade"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; versions must run 1, 2, 3, ... without gaps."""
    found = []
    for path in directory.iterdir():
        match = _FILE.fullmatch(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations in {directory} are not numbered 1..n: {[m.path.name for m in found]}")
    return found


def latest_version(directory: Path = MIGRATIONS_DIR) -> int:
    return len(migrations(directory))


def current_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The database's schema version (0: no schema yet)."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(str(row[0])) if row else 0


def upgrade(
    conn: psycopg.Connection[tuple[object, ...]], *, target: int | None = None, directory: Path = MIGRATIONS_DIR
) -> list[Migration]:
    """Apply the missing migrations up to `target` (default: all), each in its own transaction."""
    applied = []
    for migration in migrations(directory):
        if target is not None and migration.version > target:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_version (
                       version    INTEGER PRIMARY KEY,
                       name       TEXT NOT NULL,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            if current_version(conn) >= migration.version:
                continue
            conn.execute(sql.SQL(migration.sql()))  # our own files, never input
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
        applied.append(migration)
    return applied

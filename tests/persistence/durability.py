"""What a write made durable: each fsync (the path it named) and each sync of the whole file system, in order."""

from __future__ import annotations

import os

import pytest

from data_manager.collectors import staging

FILE_SYSTEM = "file system"  # what `record_syncs` lists for a syncfs(2)


def record_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, list the target of every fsync ("<dir>/#<inode> (deleted)" for an unnamed inode) and every syncfs."""
    synced: list[str] = []
    real_fsync, real_syncfs = os.fsync, staging._syncfs

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def syncfs(fd: int) -> int:
        synced.append(FILE_SYSTEM)
        assert real_syncfs is not None
        return real_syncfs(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if real_syncfs is not None:
        monkeypatch.setattr(staging, "_syncfs", syncfs)
    return synced

"""Files written and fsynced before they become visible: the first half of every atomic write.

A staged file is, where the file system can make one, an unnamed inode (Linux's `O_TMPFILE`) that
`publish` links into place; elsewhere a named temp file ".<final name>.<random>.tmp" beside its final
path that `publish` renames into place. The unnamed kind is cheaper and safer:
- creating it takes no lock on the directory, so parallel stagers do not queue on it;
- fsyncing it does not sync the directory (ext4 without a journal syncs the parent of a new name);
- a new file is published with one directory operation (a link) instead of two (create, rename);
- a process killed before publishing leaves nothing behind (the kernel frees the inode).
An existing file is still replaced atomically: the inode is linked under a temp name and renamed.
Holding unnamed inodes keeps a descriptor open each until published, so a caller staging many
files at once asks for named ones (see `UNNAMED_FILES_LIMIT`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

TEMP_SUFFIX = ".tmp"  # named temp files are ".<final name>.<random>.tmp" beside their final path
UNNAMED_FILES_LIMIT = 256  # open descriptors one batch may hold; a larger batch stages named temp files
FILE_MODE = 0o600  # as tempfile.mkstemp makes them
SYNC_FILE_SYSTEM_MIN_FILES = 32  # from this many staged files on, one syncfs(2) replaces their fsyncs

_unnamed_support: dict[str, bool] = {}


class StagedFile:
    """New bytes for `path`, durable (when fsynced) but not visible until `publish`; `discard` drops them."""

    __slots__ = ("_fd", "_temp_name", "path")

    def __init__(self, path: Path, fd: int | None, temp_name: str | None) -> None:
        self.path = path
        self._fd = fd  # an unnamed inode, open until published or discarded
        self._temp_name = temp_name  # or a named temp file beside `path`

    def __repr__(self) -> str:
        return f"StagedFile({str(self.path)!r}, {'unnamed' if self._fd is not None else 'named'})"

    def publish(self, directory_fd: int | None = None) -> None:
        """Make the staged bytes visible at `path`, atomically replacing any file there.

        `directory_fd`, an open descriptor of `path`'s directory, saves opening one per file.
        """
        if self._temp_name is not None:
            os.replace(self._temp_name, self.path)
            self._temp_name = None
            return
        if self._fd is None:
            raise ValueError(f"{self!r} was already published or discarded")
        with open_directory(self.path.parent, directory_fd) as dir_fd:
            try:
                _link(self._fd, self.path.name, dir_fd)
            except FileExistsError:
                self._replace(dir_fd)
        self._close()

    def discard(self) -> None:
        """Drop the staged bytes (safe to call after `publish`, and more than once)."""
        if self._temp_name is not None:
            with suppress(OSError):
                os.unlink(self._temp_name)
            self._temp_name = None
        self._close()

    def _replace(self, dir_fd: int) -> None:
        assert self._fd is not None
        while True:
            temp_name = f".{self.path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
            try:
                _link(self._fd, temp_name, dir_fd)
                break
            except FileExistsError:
                continue
        try:
            os.replace(temp_name, self.path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp_name, dir_fd=dir_fd)
            raise

    def _close(self) -> None:
        if self._fd is not None:
            with suppress(OSError):
                os.close(self._fd)
            self._fd = None


def stage_files(files: Sequence[tuple[Path, str]], *, fsync: bool = True, unnamed: bool = True) -> list[StagedFile]:
    """Write each text for its path, then fsync them all; the staged files, in order.

    Every file is written before the first fsync, so one write-back can carry them all. `unnamed`
    allows unnamed inodes where the directory supports them. On any failure nothing is left behind.
    """
    staged: list[StagedFile] = []
    try:
        for path, text in files:
            fd, temp_name = _create(path, unnamed and supports_unnamed(path.parent))
            staged.append(StagedFile(path, fd, temp_name))  # a named one keeps its descriptor until fsynced
            view = memoryview(text.encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
        if fsync:
            for file in staged:
                assert file._fd is not None
                os.fsync(file._fd)
    except BaseException:
        for file in staged:
            file.discard()
        raise
    for file in staged:
        if file._temp_name is not None:
            file._close()
    return staged


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2), where it reports write-back errors (5.8 and later; before, it could lose one silently)."""
    if sys.platform != "linux":
        return None
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
        function: Callable[[int], int] | None = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    except (ValueError, OSError):
        return None
    return function if (major, minor) >= (5, 8) else None


_syncfs = _load_syncfs()


def can_sync_file_system() -> bool:
    return _syncfs is not None


def sync_file_system(directory: Path) -> None:
    """Make every file written so far on `directory`'s file system durable: one call for a whole batch.

    Staged files written without their own fsync become durable here, with one write-back and one device
    cache flush instead of one of each per file. The cost is shared with whatever else is dirty on that
    file system, which is why only batches of `SYNC_FILE_SYSTEM_MIN_FILES` or more use it.
    """
    if _syncfs is None:
        raise OSError(errno.ENOSYS, "syncfs is not available here")
    with open_directory(directory) as fd:
        if _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fspath(directory))


def supports_unnamed(directory: Path) -> bool:
    """Whether `directory` can hold unnamed inodes that link into place (probed once per directory)."""
    key = os.fspath(directory)
    known = _unnamed_support.get(key)
    if known is None:
        known = _probe(directory)
        if known is not None:
            _unnamed_support[key] = known
    return bool(known)


def _probe(directory: Path) -> bool | None:
    """Make an unnamed inode, link it under a temp name and remove it: any refusal means named temp files.

    None when the directory cannot be written at all (missing, no permission): nothing is learnt then.
    """
    if not hasattr(os, "O_TMPFILE"):
        return False
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, FILE_MODE)
    except OSError as exc:
        return None if exc.errno in (errno.ENOENT, errno.EACCES, errno.EROFS, errno.ENOSPC) else False
    try:
        with open_directory(directory) as dir_fd:
            name = f".probe.{secrets.token_hex(4)}{TEMP_SUFFIX}"
            _link(fd, name, dir_fd)
            os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _create(path: Path, unnamed: bool) -> tuple[int, str | None]:
    """An open descriptor to write to, and the temp file's name when it is a named one."""
    if unnamed:
        try:
            return os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, FILE_MODE), None
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    return fd, temp_name


def _link(fd: int, name: str, dir_fd: int) -> None:
    """Give the inode open as `fd` the name `name` in `dir_fd` (linkat with AT_SYMLINK_FOLLOW via /proc).

    A `dst_dir_fd` makes Python call linkat(2); without one it calls link(2), which would link the
    /proc symlink itself and fail across devices.
    """
    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)


@contextmanager
def open_directory(directory: Path, dir_fd: int | None = None) -> Iterator[int]:
    """An open descriptor of `directory` (for a batch of `publish` calls), or `dir_fd` when one is given."""
    if dir_fd is not None:
        yield dir_fd
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)

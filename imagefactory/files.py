"""The one way this project writes a file that others read, and the one way it takes a lock.

`atomic_write` writes a temp file in the same folder, fsyncs it, renames it over the target and fsyncs
the folder: a reader sees the old file or the new one, never a torn one, even after a crash.
`locked` holds an exclusive inter-process lock (`filelock`, flock(2) on Linux) on `<path>.lock`,
optionally bounded in time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from imagefactory.errors import FactoryError


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably; the new file gets `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def lock_path(path: Path) -> Path:
    """The lock file that guards `path` (beside it, `<name>.lock`)."""
    return path.with_name(path.name + ".lock")


@contextmanager
def locked(path: Path, *, timeout: float | None = None, what: str | None = None) -> Iterator[None]:
    """Hold the exclusive lock guarding `path` (waiting at most `timeout` seconds; None waits forever)."""
    lock_file = lock_path(path)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file), timeout=-1 if timeout is None else timeout)
    try:
        lock.acquire()
    except Timeout:
        raise FactoryError(f"{what or path} is locked by another imagefactory process ({lock_file})",
                           f"wait for it to finish (gave up after {timeout:.0f} s)") from None
    try:
        yield
    finally:
        lock.release()

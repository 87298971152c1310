"""The data directory belongs to one process at a time.

A node (and ``gantry migrate``) holds an exclusive ``flock`` on ``DATA_DIR/LOCK`` while it runs;
a second process pointed at the same directory — even on other ports — is refused instead of
writing to the same SQLite file and Raft log. The kernel drops the lock when the holder exits,
kill -9 included, so there is nothing stale to clean up.
"""

from __future__ import annotations

import fcntl
import os
import pathlib


class DataDirInUse(RuntimeError):
    """Another live process holds the data directory."""


class DataDirLock:
    """``acquire()`` takes the lock (raises :class:`DataDirInUse`); ``release()`` drops it."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.path = directory / "LOCK"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirInUse(
                f"data directory {self.path.parent} is in use by {holder}; stop that node first "
                "(two processes on one data directory would corrupt it)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

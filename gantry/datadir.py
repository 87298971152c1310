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
    """``acquire()`` takes the lock (raises :class:`DataDirInUse`); ``release()`` drops it;
    ``holder()`` asks who holds it without taking it."""

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
            raise self.in_use_error(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def holder(self) -> str | None:
        """Who holds the lock now: the ``pid N`` line the holder wrote (or "another process"),
        or ``None`` when no live process holds it or there is no ``LOCK`` file. Tested with a
        non-blocking shared ``flock``, released at once: nothing is created or written."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            return None
        finally:
            os.close(fd)

    def in_use_error(self, holder: str) -> DataDirInUse:
        """The error :meth:`acquire` raises when ``holder`` holds the lock."""
        return DataDirInUse(
            f"data directory {self.path.parent} is in use by {holder}; stop that node first "
            "(two processes on one data directory would corrupt it)")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

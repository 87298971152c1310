"""SQLite access for one node: the single read-write connection, read-only connections, and the
applied-index watermark that links them.

Invariant (rqlite's "two connections, one writer"): only the WriterActor holds a read-write
connection; every other reader opens the file ``mode=ro`` with ``PRAGMA query_only`` and reads
concurrently under WAL. The :class:`Watermark` is the one number readers may wait on: the highest
log index whose effect is committed to the file.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import pathlib
import sqlite3
import threading
import time
from typing import Any

BUSY_TIMEOUT_MS = 5000
#: ``PRAGMA journal_size_limit`` of the writer (bytes): SQLite truncates the WAL file back to this
#: when it restarts the log. Normal operation stays below it (the automatic checkpoint runs every
#: 1000 pages, ~4 MB); above it, a long reader held the WAL back and the writer truncates it once
#: nothing blocks (see actors/writer.py).
WAL_SIZE_LIMIT_BYTES = 8 * 2**20


def fsync_dir(path: str | pathlib.Path) -> None:
    """fsync the directory holding ``path``, so a file created or renamed there survives power
    loss (POSIX: the rename lives in the directory, not the file)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | pathlib.Path) -> None:
    """fsync the file at ``path`` and the directory holding it (its data and its name survive
    power loss). Raises ``OSError``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path)


def open_rw(path: pathlib.Path) -> sqlite3.Connection:
    """Open the node's read-write connection: WAL, ``synchronous=NORMAL`` (a crashed process loses
    nothing committed; power loss may drop the last transactions, which the Raft journal replays
    because the applied index rolls back with them), foreign keys on, autocommit mode so the
    writer controls transactions explicitly; ``journal_size_limit`` so the WAL file shrinks
    back after a long reader let it grow."""
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def open_ro(path: pathlib.Path) -> sqlite3.Connection:
    """Open a read-only connection (``mode=ro`` URI, ``PRAGMA query_only``), usable from any thread
    that owns it. Raises ``sqlite3.OperationalError`` when the file does not exist."""
    uri = f"file:{path.resolve()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute("PRAGMA query_only=1")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


#: Abandoned loop-side waits a Watermark keeps before pruning them.
PRUNE_AFTER = 1024


class Watermark:
    """A monotonic "applied log index" that the writer advances and readers wait on.

    Thread-safe. ``wait_for(index, timeout_s)`` (a thread) and ``await wait_async(index,
    timeout_s)`` (a coroutine on an event loop) return True once the watermark is ≥ ``index``,
    False when ``timeout_s`` (seconds) passes first or once :meth:`close` was called (the node
    is stopping: check :attr:`closed`).

    Loop-side waiters cost no thread: they sit in a heap by index, and each :meth:`advance` (the
    writer calls it once per applied batch) hands every waiter it satisfies to its loop in one
    ``call_soon_threadsafe`` — none when nobody waits at or below the new value.
    """

    def __init__(self, value: int = 0) -> None:
        self._value = value
        self._cond = threading.Condition()
        self._closed = False
        #: (index, tie-breaker, future) of loop-side waiters, smallest index first.
        self._aio: list[tuple[int, int, asyncio.Future[bool]]] = []
        self._seq = itertools.count()
        self._abandoned = 0
        #: Loop hand-offs made so far (tests count them: one per batch that wakes someone).
        self.handoffs = 0

    @property
    def value(self) -> int:
        return self._value

    def advance(self, index: int) -> None:
        """Raise the watermark to ``index`` (never lowers it, except through :meth:`reset`)."""
        with self._cond:
            if index > self._value:
                self._value = index
                self._cond.notify_all()
                due = self._due_locked()
            else:
                due = []
        self._wake(due, True)

    def reset(self, index: int) -> None:
        """Set the watermark to exactly ``index`` (after a snapshot restore replaced the file)."""
        with self._cond:
            self._value = index
            self._cond.notify_all()
            due = self._due_locked()
        self._wake(due, True)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Wake every waiter now and make later waits below the watermark return False at once
        (shutdown: nobody should wait for an index this node will not apply any more)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            due = [f for _, _, f in self._aio]
            self._aio.clear()
        self._wake(due, False)

    def wait_for(self, index: int, timeout_s: float | None) -> bool:
        """True once the watermark is ≥ ``index``; False after ``timeout_s`` seconds or when
        the watermark is closed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._value < index:
                if self._closed:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    async def wait_async(self, index: int, timeout_s: float | None) -> bool:
        """Coroutine form of :meth:`wait_for` for the running event loop: no thread waits."""
        if self._value >= index:
            return True
        if self._closed:
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._value >= index:
                return True
            if self._closed:
                return False
            heapq.heappush(self._aio, (index, next(self._seq), fut))
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            return False
        finally:
            if fut.cancelled():  # deadline or client gone: its heap entry is now dead weight
                self._forget_one()

    def _forget_one(self) -> None:
        """Count one abandoned loop-side waiter; once they are most of the heap (and over
        :data:`PRUNE_AFTER`), drop them all: waits on an index far ahead (a bogus
        ``x-gantry-min-log-index``) must not pile up until the node reaches it."""
        with self._cond:
            self._abandoned += 1
            if self._abandoned > PRUNE_AFTER and 2 * self._abandoned > len(self._aio):
                self._aio = [e for e in self._aio if not e[2].done()]
                heapq.heapify(self._aio)
                self._abandoned = 0

    def _due_locked(self) -> list[asyncio.Future[bool]]:
        due = []
        while self._aio and self._aio[0][0] <= self._value:
            due.append(heapq.heappop(self._aio)[2])
        return due

    def _wake(self, futs: list[asyncio.Future[bool]], value: bool) -> None:
        if not futs:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[bool]]] = {}
        for f in futs:
            by_loop.setdefault(f.get_loop(), []).append(f)
        for loop, batch in by_loop.items():
            self.handoffs += 1
            try:
                loop.call_soon_threadsafe(_set_all, batch, value)
            except RuntimeError:  # the loop is closed: nobody waits on it any more
                pass


def _set_all(futs: list[asyncio.Future[Any]], value: Any) -> None:
    for f in futs:
        if not f.done():
            f.set_result(value)


class ReadPool:
    """Per-thread read-only connections to the node's database.

    gRPC handler threads call :meth:`conn` and get their own ``mode=ro`` connection, opened on
    first use. A snapshot restore writes into the live file through SQLite's backup API, so these
    connections stay valid across it; :meth:`close` ends them all at shutdown.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self._path = path
        self._local = threading.local()
        self._generation = 0
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None or self._local.generation != self._generation:
            if c is not None:
                c.close()
            c = open_ro(self._path)
            self._local.conn = c
            self._local.generation = self._generation
            with self._lock:
                self._all.append(c)
        return c

    def close(self) -> None:
        with self._lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._generation += 1

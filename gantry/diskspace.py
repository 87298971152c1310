"""Disk full: one node's NOSPACE alarm (etcd's, per node), raised by whatever write did not fit.

Purpose: a full file system used to surface as an exception deep in the Raft tick or the apply
loop, and the node stopped. Now the two writers of a node's disk report it here instead — the
Raft log when an append does not fit (:class:`~gantry.consensus.journal.DurableJournal`), the
writer when SQLite answers ``SQLITE_FULL`` (:class:`~gantry.actors.writer.WriterActor`) — and
while any of them is out of space the node refuses new proposals at the front door with
``RESOURCE_EXHAUSTED`` :data:`MESSAGE`, keeps serving reads from SQLite, and clears the alarm by
itself once the refused write fits again (the writer retries its batch, the journal probes for
room): no restart.

Invariants: a write that did not fit left nothing behind — the journal cuts a partial record
before it raises :class:`DiskFull`, the writer's transaction rolls back and the same batch is
retried, in order, later; nothing is skipped and nothing is applied twice. A node never
acknowledges an entry it could not append.

Trade-off: the alarm is this node's only (etcd raises it cluster-wide). A follower that is full
stops acknowledging and the others carry on; a full leader refuses every write of the cluster
until it has room again.
"""

from __future__ import annotations

import errno
import os
import pathlib
import sqlite3
import threading

import structlog

log = structlog.get_logger("gantry.disk")

#: The stable status message of a write refused while the disk is full (RESOURCE_EXHAUSTED;
#: the refusal is :class:`gantry.consensus.errors.NoSpace`, ErrorInfo reason ``DISK_FULL``).
MESSAGE = "disk full: writes refused until space is freed"

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: The alarm part the writer raises while SQLite has no room for a batch it holds (the Raft log
#: then refuses appends too: :meth:`gantry.consensus.journal.DurableJournal.add`).
DATABASE_PART = "database"
_SQLITE_FULL = 13


def is_space_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means "no space left": ``OSError``
    ENOSPC/EDQUOT, or SQLite's ``SQLITE_FULL`` ("database or disk is full")."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in SPACE_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorcode", None)
            if (code is not None and code & 0xFF == _SQLITE_FULL) or "disk is full" in str(exc):
                return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class DiskFull(OSError):
    """An append to the Raft log did not fit (ENOSPC/EDQUOT); nothing of it was left in the file.
    ``command`` is the entry's command bytes."""

    def __init__(self, err: OSError, command: bytes = b"") -> None:
        super().__init__(err.errno, f"no space for a Raft log append: {err.strerror}")
        self.command = command


class DiskSpace:
    """Thread-safe alarm: which parts of this node (``"raft-log"``, ``"database"``, and
    ``"filesystem"`` from :class:`FreeSpace`) could not write, or would not, for lack of
    space. :attr:`full` is True while any of them is out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._out: dict[str, str] = {}

    @property
    def full(self) -> bool:
        return bool(self._out)

    def where(self) -> dict[str, str]:
        """Part → the error it got, for the parts out of space now."""
        with self._lock:
            return dict(self._out)

    def report_full(self, part: str, error: str) -> None:
        with self._lock:
            new = part not in self._out
            self._out[part] = error
        if new:
            log.error("disk_full", part=part, error=error,
                      hint="writes are refused (RESOURCE_EXHAUSTED) until space is freed on "
                           "this node's data directory; reads keep working; no restart needed")

    def report_ok(self, part: str) -> None:
        with self._lock:
            gone = self._out.pop(part, None)
            still = sorted(self._out)
        if gone is not None:
            log.info("disk_space_recovered", part=part, still_full=still)


#: A write is refused up front while a data file system has less than this free (bytes): the
#: room one more Raft record and one SQLite transaction need, so the first write after the disk
#: fills is refused at once instead of being appended, held by the writer and timing out.
LOW_SPACE_BYTES = 1024 * 1024


class FreeSpace:
    """The up-front check: whether any of ``paths``' file systems has less than
    ``min_free_bytes`` (``--min-free-bytes``, default LOW_SPACE_BYTES; 0 disables it) free for
    unprivileged writers (``statvfs``'s ``f_bavail``), read at every call: one cheap system call
    per data file system (µs against a write's milliseconds); a reused reading let the first
    write after the disk filled through. A low reading raises ``alarm``'s ``"filesystem"`` part
    and a later reading with room clears it, so the refusal, the log lines and the metrics are
    the alarm's. Called on proposing threads, without a lock: only a transition takes one. It
    narrows the window, it does not close it: a write that passes it and then does not fit takes
    the journal's and the writer's paths (refused, or held and retried)."""

    PART = "filesystem"

    def __init__(self, alarm: DiskSpace, paths: list[pathlib.Path],
                 min_free_bytes: int = LOW_SPACE_BYTES) -> None:
        self._alarm = alarm
        self._min = min_free_bytes
        self._paths = list(dict.fromkeys(paths))
        self._low = False
        self._lock = threading.Lock()  # transitions only

    def check(self) -> bool:
        """True while the file systems are low on space (and the alarm part is raised)."""
        if not self._min:
            return False
        low = ""
        for p in self._paths:
            try:
                st = os.statvfs(p)
            except OSError:
                continue
            free = st.f_bavail * st.f_frsize
            if free < self._min:
                low = f"{p}: {free} bytes free (< {self._min})"
                break
        if bool(low) != self._low:
            with self._lock:
                if low and not self._low:
                    self._alarm.report_full(self.PART, low)
                elif not low and self._low:
                    self._alarm.report_ok(self.PART)
                self._low = bool(low)
        return bool(low)

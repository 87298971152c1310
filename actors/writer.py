"""WriterActor: the node's only read-write SQLite connection and the apply loop.

Purpose: drain committed Raft log entries in log order and apply them through the pure state
machine (:mod:`gantry.statemachine`), then wake whoever waits on them.
Invariants:
- Entries arrive from the Raft tick thread through :class:`EntryQueue` strictly in log order;
  the writer applies them in that order, several per transaction when they queue up, and records
  the applied index in the same transaction.
- After the transaction commits (never before) the watermark advances and the proposer's future
  resolves with ``(ApplyResult, log index)``.
- A non-deterministic failure (I/O error, corrupt file, undecodable entry) never skips an entry:
  the writer calls ``on_fatal`` and stops; the node exits and the journal replays on restart.
Trade-off: batching adds no latency when idle (a lone entry commits at once) and amortises the
commit under load; MAX_BATCH bounds how long one transaction holds the write lock.
"""

from __future__ import annotations

import collections
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import structlog

from gantry import snapshot, statemachine, store
from gantry.proposals import Proposals

log = structlog.get_logger("gantry.writer")

#: Most entries applied in one SQLite transaction.
MAX_BATCH = 512


class EntryQueue:
    """Hand-off from the Raft tick thread to the writer. ``put`` never blocks and never raises.

    ``put`` returns True when the writer must be woken (the queue went from idle to busy).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: collections.deque[tuple[int, bytes]] = collections.deque()
        self._scheduled = False

    def put(self, index: int, data: bytes) -> bool:
        with self._lock:
            self._items.append((index, data))
            if self._scheduled:
                return False
            self._scheduled = True
            return True

    def take(self, limit: int) -> list[tuple[int, bytes]]:
        """Pop up to ``limit`` entries; when none remain, mark the queue idle."""
        with self._lock:
            n = min(limit, len(self._items))
            batch = [self._items.popleft() for _ in range(n)]
            if not self._items:
                self._scheduled = False
            return batch

    def __len__(self) -> int:
        return len(self._items)


class _Drain:
    """Mailbox message: apply whatever the EntryQueue holds."""


DRAIN = _Drain()


class WriterActor(pykka.ThreadingActor):
    """Owns the read-write connection to ``db_path``; see the module docstring.

    ``on_fatal(reason)`` is called (from the writer thread) when applying fails for a reason that
    is not deterministic; the node must then stop.
    """

    def __init__(
        self,
        db_path: pathlib.Path,
        queue: EntryQueue,
        watermark: store.Watermark,
        proposals: Proposals,
        on_fatal: Callable[[str], None],
    ) -> None:
        super().__init__()
        self._db_path = db_path
        self._queue = queue
        self._watermark = watermark
        self._proposals = proposals
        self._on_fatal = on_fatal
        self._conn: sqlite3.Connection | None = None
        self._failed = False

    # -- lifecycle (runs on the actor thread) --
    def on_start(self) -> None:
        self._conn = store.open_rw(self._db_path)
        applied = statemachine.applied_index(self._conn)
        self._watermark.reset(applied)
        log.info("writer_started", applied_index=applied, db_path=str(self._db_path))

    def on_stop(self) -> None:
        if self._conn is not None:
            if not self._failed:
                self._drain_all()
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                log.warning("wal_checkpoint_failed", error=str(e))
            self._conn.close()
            self._conn = None
            log.info("writer_stopped", applied_index=self._watermark.value)

    def on_receive(self, message: Any) -> Any:
        if message is DRAIN:
            self._drain_all()
        return None

    # -- public API (ask through the proxy) --
    def applied_index(self) -> int:
        """The last log index committed to the database."""
        return self._watermark.value

    def checkpoint(self) -> None:
        """Run ``PRAGMA wal_checkpoint(TRUNCATE)`` (used before snapshots and on shutdown)."""
        assert self._conn is not None
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def take_snapshot(self, dest: pathlib.Path, index: int, meta_json: str) -> dict[str, int]:
        """Apply everything queued, then back the database up into ``dest`` as the snapshot for
        Raft log ``index`` (see :mod:`gantry.snapshot`). Returns ``size_bytes``/``duration_ms``;
        raises ``SnapshotError``/``sqlite3.Error`` (pysyncobj then retries compaction later)."""
        assert self._conn is not None
        self._drain_all()
        figures = snapshot.write(self._conn, dest, meta_json, index)
        log.info("snapshot_persisted", index=index, applied_index=self._watermark.value, **figures)
        return figures

    def restore_if_newer(self, path: pathlib.Path) -> int:
        """Restore the snapshot at ``path`` into the live database when it holds entries this
        database lacks; returns the applied index afterwards (log index, unchanged if older)."""
        assert self._conn is not None
        _, snap_index = snapshot.read_meta(path)
        current = statemachine.applied_index(self._conn)
        if snap_index <= current:
            return current
        t0 = time.monotonic()
        restored = snapshot.restore(path, self._conn)
        self._watermark.reset(restored)
        log.info(
            "snapshot_restored",
            applied_index=restored,
            previous_applied_index=current,
            duration_ms=int((time.monotonic() - t0) * 1000),
        )
        return restored

    # -- internals --
    def _drain_all(self) -> None:
        while not self._failed:
            batch = self._queue.take(MAX_BATCH)
            if not batch:
                return
            self._apply(batch)

    def _apply(self, batch: list[tuple[int, bytes]]) -> None:
        assert self._conn is not None
        try:
            applied = statemachine.apply_batch(self._conn, batch)
        except Exception as e:  # non-deterministic (I/O, corruption) or undecodable entry
            self._failed = True
            log.critical(
                "apply_failed",
                first_index=batch[0][0],
                last_index=batch[-1][0],
                error=repr(e),
                exc_info=True,
            )
            self._on_fatal(f"apply failed at log index {batch[0][0]}: {e!r}")
            return
        last = batch[-1][0]
        self._watermark.advance(last)
        for a in applied:
            if a.result is not None and a.proposal_id:
                self._proposals.resolve(a.proposal_id, (a.result, a.index))
        log.debug("entries_applied", count=len(batch), last_index=last)

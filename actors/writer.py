"""WriterActor: the node's only read-write SQLite connection and the apply loop.

Purpose: drain committed Raft log entries in log order and apply them through the pure state
machine (:mod:`gantry.state.statemachine`), then wake whoever waits on them.
Invariants:
- Entries arrive from the Raft tick thread through :class:`EntryQueue` strictly in log order;
  the writer applies them in that order, several per transaction when they queue up, and records
  the applied index in the same transaction.
- After the transaction commits (never before) the watermark advances and the proposer's future
  resolves with ``(ApplyResult, log index)``.
- A non-deterministic failure (I/O error, corrupt file, undecodable entry) never skips an entry:
  the writer calls ``on_fatal`` and stops; the node exits and the journal replays on restart.
- Except a full disk (``SQLITE_FULL``, ENOSPC): the batch's transaction rolled back, so the writer
  keeps that same batch and retries it, with backoff, before anything behind it, until it fits;
  meanwhile the node's :class:`~gantry.diskspace.DiskSpace` alarm refuses new proposals. No
  entry is skipped, none applied twice, no restart needed.
Trade-off: batching adds no latency when idle (a lone entry commits at once) and amortises the
commit under load; MAX_BATCH bounds how long one transaction holds the write lock.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pykka
import structlog

from gantry import db, diskspace, metrics
from gantry.consensus.proposals import Proposals
from gantry.state import migrate, snapshot, statemachine

log = structlog.get_logger("gantry.writer")

#: Most entries applied in one SQLite transaction.
MAX_BATCH = 512
#: Least time (seconds) between two attempts to truncate a WAL above the size limit.
WAL_TRUNCATE_EVERY_S = 2.0
#: First and longest wait (seconds) before retrying a batch the disk had no room for.
FULL_RETRY_FIRST_S = 0.05
FULL_RETRY_MAX_S = 1.0


@dataclass(frozen=True)
class Restore:
    """Queue item: the snapshot at ``path`` (a private hard link the writer deletes afterwards).

    ``from_leader`` is True when the leader sent it (it replaced this node's Raft log): the
    database is then restored unless it is exactly at the snapshot's applied position (index and
    term), because a database that applied anything else is not a prefix of the leader's log
    (Raft §5.3–5.4: the leader's log wins, never the other way round). False for this node's own
    dump loaded at start-up: restored only when it is ahead of the database (or at the same index
    with another term)."""

    path: pathlib.Path
    from_leader: bool = False


@dataclass(frozen=True)
class Position:
    """Queue item: the engine applied the log up to ``index`` with entries that change nothing
    in the database (a leader's no-op, a membership change), or installed a snapshot whose
    database (restored just before, in queue order) holds everything up to ``index``. Once the
    items before it are applied, the applied index (the :class:`~gantry.db.Watermark` reads wait
    on) moves to ``index``: a read index can be such an entry's — a new leader's commit index is
    its no-op's until the next write — and a read waiting for it waited for that write."""

    index: int


class SnapshotRequest:
    """Queue item: pin the database exactly as of log ``index`` for a Raft snapshot.

    Queued by the Raft tick thread behind the entries up to ``index`` (so the writer reaches it
    with exactly those applied) and polled by it, never waited on. The writer calls
    :meth:`pinned` or :meth:`failed`; ``ready`` is then set. The tick thread then takes the pinned
    state with :meth:`claim` (to build it), or gives it up with :meth:`cancel` (the node stops),
    which closes its read transaction; whichever comes second loses, under one lock.
    :meth:`supersede` (the leader's snapshot is replacing the dump) makes the attempt fail
    wherever it is, and once it returns this attempt never renames a file over the dump.
    """

    def __init__(self, index: int, meta_json: str) -> None:
        self.index = index
        self.meta_json = meta_json
        self.ready = threading.Event()
        self.pending: PendingSnapshot | None = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._claimed = False
        self._superseded = False

    @property
    def cancelled(self) -> bool:
        """The node stops or the attempt was superseded: the writer does not pin it."""
        return self._cancelled or self._superseded

    @property
    def superseded(self) -> bool:
        return self._superseded

    def supersede(self) -> None:
        """Tick thread, before the engine renames a snapshot received from the leader over the
        dump file: this attempt (at an index of this node's own, older or newer than the
        leader's) must not rename its copy over it afterwards. Pysyncobj would install the
        leader's snapshot (its Raft log, its applied index) while the dump file on disk held this
        node's: a restart, or this node as leader, would then read a snapshot that does not match
        the log. Waits only for a rename already under way (milliseconds), never for the copy.
        The attempt then reports FAILED; pysyncobj takes a new snapshot later."""
        with self._lock:
            self._superseded = True
            pending, claimed = self.pending, self._claimed
        if pending is None:
            return  # not pinned yet: the writer skips it (failed) when it gets there
        if claimed:
            pending.supersede()  # being copied: it deletes its copy instead of renaming it
        else:
            pending.discard()

    def pinned(self, pending: PendingSnapshot) -> None:
        """Writer: the database is pinned; discarded at once if the request was cancelled."""
        with self._lock:
            if not self.cancelled:
                self.pending = pending
                self.ready.set()
                return
        pending.discard()
        self.ready.set()

    def failed(self, error: BaseException) -> None:
        """Writer: pinning failed (the snapshot attempt fails; pysyncobj tries again later)."""
        self.error = error
        self.ready.set()

    def claim(self) -> PendingSnapshot | None:
        """Tick thread: the pinned state to build, or None if pinning failed or was cancelled."""
        with self._lock:
            if self.cancelled or self.pending is None:
                return None
            self._claimed = True
            return self.pending

    def cancel(self) -> None:
        """The node stops: an unclaimed pinned state is released (a claimed one is being built and
        releases itself when done)."""
        with self._lock:
            self._cancelled = True
            pending = None if self._claimed else self.pending
        if pending is not None:
            pending.discard()


QueueItem = tuple[int, bytes, int] | Restore | SnapshotRequest | Position


class EntryQueue:
    """Hand-off from the Raft tick thread to the writer. ``put`` never blocks and never raises.

    ``put`` returns True when the writer must be woken (the queue went from idle to busy).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: collections.deque[QueueItem] = collections.deque()
        self._scheduled = False

    def put(self, index: int, data: bytes, term: int = 0) -> bool:
        """Queue the committed entry at log ``index`` (Raft ``term``)."""
        return self._push((index, data, term))

    def put_restore(self, restore: Restore) -> bool:
        """Queue a snapshot restore in log order: entries queued before it apply first (and are
        then superseded), entries queued after it apply on the restored database."""
        return self._push(restore)

    def put_position(self, index: int) -> bool:
        """Queue a :class:`Position`: the applied index moves to ``index`` once every item
        queued before it is done."""
        return self._push(Position(index))

    def put_snapshot(self, request: SnapshotRequest) -> bool:
        """Queue a snapshot pin in log order: the writer pins the database once every entry
        queued before it is applied, and none after it."""
        return self._push(request)

    def _push(self, item: QueueItem) -> bool:
        with self._lock:
            self._items.append(item)
            if self._scheduled:
                return False
            self._scheduled = True
            return True

    def take(self, limit: int) -> list[tuple[int, bytes, int]] | Restore | SnapshotRequest | Position:
        """Pop up to ``limit`` entries, or one Restore, SnapshotRequest or Position if it is
        next; when nothing remains, mark the queue idle. An empty list means idle."""
        with self._lock:
            batch: list[tuple[int, bytes, int]] = []
            while self._items and len(batch) < limit:
                item = self._items[0]
                if isinstance(item, (Restore, SnapshotRequest, Position)):
                    if batch:
                        break
                    self._items.popleft()
                    if not self._items:
                        self._scheduled = False
                    return item
                batch.append(item)
                self._items.popleft()
            if not self._items:
                self._scheduled = False
            return batch

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class PendingSnapshot:
    """A read transaction pinned at a snapshot's log index, waiting to be copied.

    ``build(dest)`` runs on any thread (the Raft actor runs it on a background thread): SQLite
    online backup of the pinned state into ``dest`` (written beside it, fsync'd, then renamed into
    place), plus the Raft metadata. ``done`` is set when it finished; ``error`` holds a failure.
    """

    conn: sqlite3.Connection
    index: int
    applied_index: int
    meta_json: str
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    figures: dict[str, int] = field(default_factory=dict)
    #: Held around the rename over the dump; :meth:`supersede` takes it to set ``_superseded``.
    _publish_lock: threading.Lock = field(default_factory=threading.Lock)
    _superseded: bool = False

    def supersede(self) -> None:
        """Any thread: once this returns, :meth:`build` does not rename its copy over the
        destination (it deletes it and fails with SnapshotSuperseded). Waits for a rename in
        progress."""
        with self._publish_lock:
            self._superseded = True

    @contextlib.contextmanager
    def _publish_gate(self) -> Iterator[bool]:
        with self._publish_lock:
            yield not self._superseded

    def build(self, dest: pathlib.Path) -> dict[str, int]:
        try:
            self.figures = snapshot.write(self.conn, dest, self.meta_json, self._publish_gate)
            metrics.SNAPSHOT_DURATION.observe(self.figures["duration_ms"] / 1000)
            metrics.SNAPSHOT_WRITTEN_BYTES.set(self.figures["size_bytes"])
            log.info("snapshot_persisted", index=self.index, applied_index=self.applied_index,
                     **self.figures)
            return self.figures
        except snapshot.SnapshotSuperseded as e:
            self.error = e
            log.info("snapshot_copy_dropped", index=self.index, applied_index=self.applied_index,
                     reason="the leader's snapshot replaced the dump while this one was copied")
            raise
        except BaseException as e:
            self.error = e
            log.warning("snapshot_failed", index=self.index, error=repr(e))
            raise
        finally:
            self.discard()

    def discard(self) -> None:
        """End the read transaction and close its connection (idempotent); sets ``done``."""
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self.conn.close()
        self.done.set()


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
        watermark: db.Watermark,
        proposals: Proposals,
        on_fatal: Callable[[str], None],
        disk: diskspace.DiskSpace | None = None,
    ) -> None:
        super().__init__()
        self._disk = disk
        #: The batch SQLite had no room for, retried before anything else (None: none).
        self._held: list[tuple[int, bytes, int]] | None = None
        self._held_since = 0.0
        self._held_retry_at = 0.0
        self._held_delay = FULL_RETRY_FIRST_S
        self._held_timer: threading.Timer | None = None
        self._db_path = db_path
        self._queue = queue
        self._watermark = watermark
        self._proposals = proposals
        self._on_fatal = on_fatal
        self._conn: sqlite3.Connection | None = None
        self._failed = False
        self._wal_path = pathlib.Path(f"{db_path}-wal")
        self._wal_next_try = 0.0
        self._wal_blocked_since: float | None = None
        self._wal_retry: threading.Timer | None = None

    # -- lifecycle (runs on the actor thread) --
    def on_start(self) -> None:
        self._conn = db.open_rw(self._db_path)
        # A crash between a restore's copy and its clean-up leaves the snapshot's metadata table.
        self._conn.execute(f"DROP TABLE IF EXISTS {snapshot.META_TABLE}")
        applied = statemachine.applied_index(self._conn)
        self._watermark.reset(applied)
        log.info("writer_started", applied_index=applied, db_path=str(self._db_path))

    def on_stop(self) -> None:
        if self._wal_retry is not None:
            self._wal_retry.cancel()
        if self._held_timer is not None:
            self._held_timer.cancel()
        self._held_retry_at = 0.0  # one last try for a held batch; if it still does not fit,
        # its entries stay in the Raft log and are applied after the restart
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

    def restore_if_needed(self, path: pathlib.Path, from_leader: bool = False) -> int:
        """Restore the snapshot at ``path`` into the live database when the database is not at
        a position the snapshot allows to keep (see :class:`Restore`); returns the applied index
        afterwards (log index, unchanged when kept)."""
        assert self._conn is not None
        snap_pos = snapshot.applied_position(path)
        current = statemachine.applied_position(self._conn)
        if from_leader:
            keep = current == snap_pos
        else:
            keep = snap_pos[0] < current[0] or (
                snap_pos[0] == current[0] and (snap_pos[1] == current[1] or not snap_pos[1]
                                               or not current[1]))
        if keep:
            return current[0]
        t0 = time.monotonic()
        size = path.stat().st_size
        restored = snapshot.restore(path, self._conn)
        # The backup went through the WAL: fold it back so the disk holds one copy, not two.
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # A snapshot from a leader on an older build carries the older schema (a rolling
        # upgrade): bring it to this build's, as a start-up would, before the next entry
        # applies. One from a newer build raises SchemaError: the node stops and says to upgrade.
        upgraded = migrate.upgrade(self._db_path)
        if upgraded:
            log.info("snapshot_schema_upgraded", migrations=upgraded)
        self._watermark.reset(restored)
        metrics.RESTORE_DURATION.observe(time.monotonic() - t0)
        metrics.RESTORE_BYTES.set(size)
        log.info(
            "snapshot_restored",
            applied_index=restored,
            applied_term=snap_pos[1],
            previous_applied_index=current[0],
            previous_applied_term=current[1],
            from_leader=from_leader,
            duration_ms=int((time.monotonic() - t0) * 1000),
        )
        return restored

    # -- internals --
    def _drain_all(self) -> None:
        while not self._failed:
            if self._held is not None:
                if time.monotonic() < self._held_retry_at or not self._apply(self._held):
                    return  # still no room: the retry timer wakes the writer
                continue
            batch = self._queue.take(MAX_BATCH)
            if isinstance(batch, Restore):
                self._restore(batch)
                continue
            if isinstance(batch, SnapshotRequest):
                self._pin(batch)
                continue
            if isinstance(batch, Position):
                self._watermark.advance(batch.index)
                continue
            if batch:
                self._apply(batch)
            self._maybe_truncate_wal()
            if not batch:
                return

    def _maybe_truncate_wal(self) -> None:
        """Shrink a WAL that outgrew ``db.WAL_SIZE_LIMIT_BYTES`` (a long read transaction kept
        checkpoints from restarting it): ``wal_checkpoint(TRUNCATE)`` without waiting for readers
        (busy timeout 0), at most every WAL_TRUNCATE_EVERY_S; while a reader blocks it, a timer
        wakes the writer to try again even when no writes arrive."""
        now = time.monotonic()
        if self._conn is None or self._failed or now < self._wal_next_try:
            return
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            return
        if size <= db.WAL_SIZE_LIMIT_BYTES:
            return
        self._wal_next_try = now + WAL_TRUNCATE_EVERY_S
        busy = 1
        try:
            self._conn.execute("PRAGMA busy_timeout=0")
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as e:
            log.warning("wal_truncate_failed", error=str(e))
        finally:
            self._conn.execute(f"PRAGMA busy_timeout={db.BUSY_TIMEOUT_MS}")
        if busy:
            if self._wal_blocked_since is None:
                self._wal_blocked_since = now
                log.info("wal_truncate_blocked", wal_bytes=size,
                         hint="a read transaction holds the WAL; retrying")
            self._schedule_wal_retry()
            return
        log.info("wal_truncated", wal_bytes_before=size,
                 blocked_s=round(now - (self._wal_blocked_since or now), 3))
        self._wal_blocked_since = None

    def _wake_later(self, delay_s: float) -> threading.Timer:
        """A started daemon timer that sends DRAIN to this actor after ``delay_s`` seconds."""
        ref = self.actor_ref

        def wake() -> None:
            try:
                ref.tell(DRAIN)
            except pykka.ActorDeadError:
                pass

        timer = threading.Timer(delay_s, wake)
        timer.daemon = True
        timer.start()
        return timer

    def _schedule_wal_retry(self) -> None:
        if self._wal_retry is not None and self._wal_retry.is_alive():
            return
        self._wal_retry = self._wake_later(WAL_TRUNCATE_EVERY_S)

    def _hold(self, batch: list[tuple[int, bytes, int]], error: BaseException) -> None:
        """SQLite had no room for ``batch`` (rolled back, nothing applied): keep it, retry it
        after a backoff, raise the node's disk-full alarm."""
        now = time.monotonic()
        if self._held is None:
            self._held, self._held_since = batch, now
            self._held_delay = FULL_RETRY_FIRST_S
            log.error("apply_deferred_disk_full", first_index=batch[0][0],
                      last_index=batch[-1][0], error=str(error),
                      hint="retried until it fits; free space on the database's file system")
            if self._disk is not None:
                self._disk.report_full(diskspace.DATABASE_PART, f"{self._db_path}: {error}")
        else:
            self._held_delay = min(self._held_delay * 2, FULL_RETRY_MAX_S)
        self._held_retry_at = now + self._held_delay
        if self._held_timer is None or not self._held_timer.is_alive():
            self._held_timer = self._wake_later(self._held_delay)

    def _pin(self, request: SnapshotRequest) -> None:
        """Pin a read transaction: the database exactly as of the request's log index (every
        entry before it in the queue is applied, none after). Cheap (milliseconds): the copy
        happens later, off this thread and off the tick thread, in :meth:`PendingSnapshot.build`."""
        if request.cancelled:  # the node stops, or the leader's snapshot took this one's place
            request.failed(snapshot.SnapshotSuperseded(f"snapshot at log index {request.index}"))
            return
        t0 = time.monotonic()
        conn: sqlite3.Connection | None = None
        try:
            conn = db.open_ro(self._db_path)
            conn.execute("BEGIN")
            applied = statemachine.applied_index(conn)  # the first read pins the WAL snapshot
        except Exception as e:  # e.g. an I/O error: this attempt fails, pysyncobj retries
            log.warning("snapshot_pin_failed", index=request.index, error=repr(e))
            if conn is not None:
                conn.close()
            request.failed(e)
            return
        request.pinned(PendingSnapshot(conn, request.index, applied, request.meta_json))
        log.info("snapshot_started", index=request.index, applied_index=applied,
                 pause_ms=round((time.monotonic() - t0) * 1000, 3))

    def _restore(self, item: Restore) -> None:
        try:
            self.restore_if_needed(item.path, item.from_leader)
        except Exception as e:  # a snapshot we cannot restore: stop rather than diverge
            self._failed = True
            log.critical("snapshot_restore_failed", path=str(item.path), error=repr(e),
                         exc_info=True)
            self._on_fatal(f"snapshot restore failed: {e!r}")
        finally:
            item.path.unlink(missing_ok=True)

    def _apply(self, batch: list[tuple[int, bytes, int]]) -> bool:
        """Apply ``batch`` in one transaction; False when it did not fit (held for a retry) or
        failed for good (the node stops)."""
        assert self._conn is not None
        t0 = time.perf_counter()
        try:
            applied = statemachine.apply_batch(self._conn, batch)
        except Exception as e:  # non-deterministic (I/O, corruption) or undecodable entry
            if diskspace.is_space_error(e):
                self._hold(batch, e)
                return False
            self._failed = True
            log.critical(
                "apply_failed",
                first_index=batch[0][0],
                last_index=batch[-1][0],
                error=repr(e),
                exc_info=True,
            )
            advice = ("; the database file is damaged: restore this node from a peer (README, "
                      "Damaged files)" if type(e) is sqlite3.DatabaseError else "")
            self._on_fatal(f"apply failed at log index {batch[0][0]}: {e!r}{advice}")
            return False
        metrics.APPLY_DURATION.observe(time.perf_counter() - t0)
        metrics.APPLY_BATCH_ENTRIES.observe(len(batch))
        if self._held is not None:
            log.info("apply_resumed", first_index=batch[0][0], last_index=batch[-1][0],
                     held_s=round(time.monotonic() - self._held_since, 3))
            self._held = None
            if self._disk is not None:
                self._disk.report_ok(diskspace.DATABASE_PART)
        last = batch[-1][0]
        self._watermark.advance(last)
        # One call for the whole batch: waiting API calls are handed to the event loop at once.
        self._proposals.resolve_batch([(a.proposal_id, (a.result, a.index)) for a in applied
                                       if a.result is not None and a.proposal_id])
        log.debug("entries_applied", count=len(batch), last_index=last)
        return True

"""RaftActor: owns the PySyncObj node — the Raft log (journal file), elections, replication,
membership and snapshots — and hands committed entries to the writer in log order.

Invariants:
- :class:`GantrySyncObj` is a thin shim (rqlite's fsm.go): its one replicated method forwards the
  entry bytes and their log index to the :class:`~gantry.actors.writer.EntryQueue` and decides nothing.
  It never raises (pysyncobj would retry a raising method forever and drop its callback).
- Log indexes handed to the writer strictly increase (``raftLastApplied + 1`` inside the method;
  pysyncobj 0.3.17 is pinned for this).
- Snapshots are SQLite backups taken by the writer (:mod:`gantry.state.snapshot`); the Raft metadata in
  them is JSON, never pickle.
- Futures flow one way: this actor asks the writer (snapshot, restore) and never the front door.

Threads (issue 8 item 2). pysyncobj's **tick thread owns the engine**: every read of its state and
every call into it runs there, with one exception, :class:`Proposer` (pysyncobj's command queue is
a locked ``FastQueue`` the tick thread drains, so a proposal may be handed in from any thread).
The actor's own thread never touches the engine: its public methods queue a function as an
*ask* (:class:`_TickAsks`), which the tick thread runs at the end of its next tick (≤ one tick,
5 ms by default, and woken at once through pysyncobj's pipe notifier), and wait on its Future.
The tick thread never waits on anybody: a snapshot is pinned by the writer through the entry
queue (:class:`~gantry.actors.writer.SnapshotRequest`) and polled from pysyncobj's
``serializeChecker``. The only other value read across threads is :class:`TickView`, an
immutable record the tick thread replaces (never mutates) when the leader or the SERVING verdict
changes.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pykka
import structlog
from pysyncobj import SERIALIZER_STATE, SyncObjConf, replicated
from pysyncobj.node import TCPNode

from gantry import diskspace, metrics
from gantry.config import Config
from gantry.consensus.errors import (
    ConsensusError,
    LeaderChanged,
    NoSpace,
    RequestDenied,
    Stopping,
    failure,
    membership_failure,
    transfer_failure,
)
from gantry.consensus.journal import DurableJournal
from gantry.consensus.proposals import Proposals
from gantry.consensus.pysyncobj_compat import (
    SafeSyncObj,
    align_journal_to_dump,
    check_snapshot_position,
    gantry_payload,
    installed,
    is_engine_entry,
    transport_for,
)
from gantry.db import fsync_file
from gantry.state import commands, snapshot

from .writer import DRAIN, EntryQueue, PendingSnapshot, Restore, SnapshotRequest

log = structlog.get_logger("gantry.raft")

#: How long the actor's thread waits for the tick thread to answer an ask (seconds).
ASK_TIMEOUT_S = 5.0

#: The longest pause between two attempts to (re)connect to a member (seconds; etcd's rafthttp
#: retries after 100 ms). pysyncobj waits 5 s after a failed attempt, and only the member with the
#: higher address connects: a follower restarted after kill -9 heard from no leader for up to 5 s,
#: passed its election timeout and started an election that deposed a healthy leader.
CONNECT_RETRY_S = 0.1


#: An engine request's outcome: None (success) or its typed error (not the domain Outcome).
EngineOutcome = Future["ConsensusError | None"]


def _outcome_future(decode: Callable[[int], ConsensusError | None] = failure
                    ) -> tuple[EngineOutcome, Callable[[Any, int], None]]:
    """A Future of an engine request's outcome (None: success, else its typed error, decoded by
    :mod:`gantry.consensus.errors`) and the engine ``callback(result, err)`` that resolves it."""
    fut: EngineOutcome = Future()

    def done(_res: Any, err: int) -> None:
        if not fut.done():
            fut.set_result(decode(err))

    return fut, done


#: A follower stops being SERVING when its applied index is more than this many entries behind
#: the leader's commit index for longer than an election timeout (a replica stuck behind, or
#: catching up from far behind), and becomes SERVING again once within SERVING_RESUME_LAG.
SERVING_MAX_LAG = 1000
SERVING_RESUME_LAG = 100

#: A leader whose Raft log has had no room this long (seconds) hands leadership over, at most
#: once every FULL_HANDOVER_EVERY_S (gantry/diskspace.py).
FULL_HANDOVER_AFTER_S = 1.0
FULL_HANDOVER_EVERY_S = 5.0



def _restore_command(cfg: Config) -> str:
    """The ``gantry restore`` that seeds a new data directory from this node's own database:
    on a one-member cluster the lossless way back when its Raft files cannot be used."""
    return f"gantry restore {cfg.database} --data-dir NEW_DIR --raft-addr {cfg.raft_addr}"

class GantrySyncObj(SafeSyncObj):
    """The pysyncobj node (with :class:`~gantry.consensus.pysyncobj_compat.SafeSyncObj`'s Raft fixes).
    ``on_entry(log_index, entry_bytes, term)`` receives each committed Gantry entry, on the tick
    thread, in log order; ``on_position(log_index)`` each committed entry of pysyncobj's own (a
    no-op, a membership change), in the same order."""

    def __init__(
        self,
        self_addr: str,
        peers: list[str],
        conf: SyncObjConf,
        on_entry: Callable[[int, bytes, int], None],
        journal: DurableJournal | None = None,
        snapshot_arriving: Callable[[], None] | None = None,
        on_position: Callable[[int], None] | None = None,
    ) -> None:
        self._on_entry = on_entry
        self._on_position = on_position
        self._last_index = 0
        self.snapshot_arriving = snapshot_arriving
        if journal is None:
            super().__init__(self_addr, peers, conf)
            return
        with installed(journal):
            super().__init__(self_addr, peers, conf, transportClass=transport_for(journal))

    def received_snapshot_meta(self, path: str) -> str | None:
        """The Raft metadata JSON of the snapshot file at ``path``, or None when it cannot be
        read (:func:`gantry.state.snapshot.read_meta`)."""
        try:
            return snapshot.read_meta(pathlib.Path(path))[0]
        except snapshot.SnapshotError:
            return None

    def _SyncObj__doApplyCommand(self, command: bytes) -> Any:  # noqa: N802 - pysyncobj's name
        """pysyncobj applies one committed entry (a Gantry one through :meth:`apply_entry`); one
        of its own (no-op, membership change, version) is reported to ``on_position`` too."""
        result = super()._SyncObj__doApplyCommand(command)
        if self._on_position is not None and is_engine_entry(command):
            try:
                self._on_position(self.raftLastApplied + 1)  # counted after this returns
            except Exception:  # never raise into pysyncobj
                log.exception("position_handoff_failed", index=self.raftLastApplied + 1)
        return result

    @replicated  # type: ignore[misc]
    def apply_entry(self, data: bytes) -> int:
        """Replicated method: one encoded ``gantry.command.v1.Command`` per log entry."""
        index = self.raftLastApplied + 1
        try:
            if index <= self._last_index:
                log.error("log_index_not_increasing", index=index, previous=self._last_index)
            self._last_index = index
            self._on_entry(index, data, self.term_at(index))
        except Exception:  # never raise into pysyncobj
            log.exception("entry_handoff_failed", index=index)
        return index


@dataclass(frozen=True)
class TickView:
    """What the tick thread publishes for other threads: the leader's Raft address as of the last
    tick (None: unknown, or unreachable for an election timeout) and the SERVING verdict.
    Replaced as a whole, never mutated, so a reader on any thread sees one consistent pair."""

    leader: str | None = None
    serving: bool = False


class Proposer:
    """Hands proposals to the engine from any thread (the gRPC handlers' own): no mailbox hop.

    ``propose(proposal_id, data)`` pickles (protocol 5, :meth:`~gantry.consensus.pysyncobj_compat.
    SafeSyncObj.propose_call`) and queues ``data`` (an encoded Command) into
    pysyncobj's locked command queue; the outcome reaches the proposal's Future in
    :class:`~gantry.consensus.proposals.Proposals` (resolved by the writer after apply, or failed
    on the tick thread). After :meth:`close` (the node is stopping) a proposal fails at once with
    ``Stopping``.
    """

    def __init__(self, sync: GantrySyncObj, proposals: Proposals,
                 on_result: Callable[[str, Any, int], None]) -> None:
        self._sync = sync
        self._proposals = proposals
        self._on_result = on_result
        self._closed = False

    def propose(self, proposal_id: str, data: bytes) -> None:
        if self._closed:
            self._proposals.fail(proposal_id, Stopping())
            return
        self._sync.propose_call("apply_entry", data, functools.partial(self._on_result, proposal_id))

    def close(self) -> None:
        self._closed = True


class ReadIndexSource:
    """Read indexes without log entries (Raft §6.4, :class:`~gantry.consensus.readindex.
    ReadRounds`), requested from any thread: :meth:`request` hands the request to the tick thread
    (no wait, no mailbox hop) and returns its ``Future[int]`` — a log index the leader had
    committed after the request began, confirmed by a round (or this node's own commit index
    when it alone is a majority). It fails with ``ReadIndexUnsupported`` (use a barrier entry:
    an older build leads, or its voting majority does not echo rounds), ``NoLeader``,
    ``NotLeader``, ``LeaderChanged``, ``TimeoutError`` (the leader did not answer) or
    ``Stopping``."""

    def __init__(self, asks: _TickAsks) -> None:
        self._asks = asks

    def request(self) -> Future[int]:
        out: Future[int] = Future()

        def on_tick(s: GantrySyncObj) -> None:
            s.reads.request(s, out)

        def posted(p: Future[Any]) -> None:
            exc = p.exception()
            if exc is not None and not out.done():
                out.set_exception(exc)

        self._asks.post(on_tick).add_done_callback(posted)
        return out

    def end_waits(self) -> None:
        """The node is stopping: every read still waiting for a read index here fails with
        ``Stopping`` (on the tick thread, without waiting for it)."""
        self._asks.post(lambda s: s.reads.close(Stopping()))


class _TickAsks:
    """Functions queued by other threads to run on the tick thread with the engine as argument;
    each caller waits on its own Future. Closed when the engine stops: pending and later asks
    fail with ``Stopping``."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[Any], Any], Future[Any]]] = (
            queue.SimpleQueue())
        self._wake = wake
        self._closed = False

    def ask(self, fn: Callable[[Any], Any], timeout_s: float = ASK_TIMEOUT_S) -> Any:
        """``fn(engine)`` as run on the tick thread; raises what it raised, or
        ``concurrent.futures.TimeoutError`` when the tick thread did not get to it in time."""
        return self.post(fn).result(timeout=timeout_s)

    def post(self, fn: Callable[[Any], Any]) -> Future[Any]:
        """Queue ``fn(engine)`` for the tick thread without waiting: the Future of its result
        (``Stopping`` once the engine stopped). Safe on any thread, the tick thread included."""
        fut: Future[Any] = Future()
        self._queue.put((fn, fut))
        if self._closed:
            self.close()
        else:
            self._wake()
        return fut

    def run(self, engine: Any) -> None:
        """Tick thread: answer every queued ask."""
        while True:
            try:
                fn, fut = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn(engine))
            except Exception as e:  # the asker gets it; the tick goes on
                fut.set_exception(e)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                _fn, fut = self._queue.get_nowait()
            except queue.Empty:
                return
            if not fut.done():
                fut.set_exception(Stopping())


@dataclass(frozen=True)
class RaftStatus:
    """A point-in-time view of this node's Raft state (indexes are log indexes)."""

    node_id: str
    raft_addr: str
    role: str
    leader: str | None
    term: int
    commit_index: int
    last_applied: int
    applied_index: int
    members: list[str]
    connected: list[str]
    log_size: int
    last_snapshot_index: int


class RaftActor(pykka.ThreadingActor):
    """Owns :class:`GantrySyncObj`. ``on_health(serving: bool)`` is called when the node starts
    or stops being fit to serve (a leader is known and the log is applied up to it)."""

    def __init__(
        self,
        config: Config,
        queue: EntryQueue,
        writer: pykka.ActorRef[Any],
        proposals: Proposals,
        watermark: Any,
        on_health: Callable[[bool], None],
        disk: diskspace.DiskSpace | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._disk = disk
        self._on_fatal = on_fatal
        self._fatal_reported = False
        self._queue = queue
        self._writer = writer
        self._proposals = proposals
        self._watermark = watermark
        self._on_health = on_health
        self._sync: GantrySyncObj | None = None
        self._journal: DurableJournal | None = None
        self._transport: Any = None
        self._dump_path = ""
        #: Why on_start failed (bind error), or "" when the node runs.
        self.start_error = ""
        self._wake: Any = None
        self._asks = _TickAsks(self._wake_tick)
        self._proposer: Proposer | None = None
        self._read_source = ReadIndexSource(self._asks)
        #: Published by the tick thread (see the module docstring); read by any thread.
        self._view = TickView()
        # -- the rest is the tick thread's own --
        self._pending_snapshot: SnapshotRequest | None = None
        self._last_snapshot_index = 0
        self._snapshot_thread: threading.Thread | None = None
        self._last_leader: str | None = None
        self._leader_lost_at: float | None = None
        self._serving = False
        self._caught_up = False
        self._lagging_since: float | None = None
        self._full_since: float | None = None
        self._next_full_transfer = 0.0

    # -- lifecycle --
    def on_start(self) -> None:
        cfg = self._config
        data_dir = pathlib.Path(cfg.data_dir)
        self._dump_path = str(data_dir / "raft.snapshot")
        # Leftovers of a crash mid-restore or mid-snapshot; the dump itself is always complete.
        for stale in [*data_dir.glob("restore-*.db"), *data_dir.glob("raft.snapshot.*")]:
            stale.unlink()
        self._journal = DurableJournal(str(data_dir / "raft.log"), fsync=cfg.raft_fsync,
                                       disk=self._disk)
        known = self._journal[-1][1] if len(self._journal) else 0
        if os.path.exists(self._dump_path):
            try:
                meta_json, snap_applied = snapshot.read_meta(pathlib.Path(self._dump_path))
                known = max(known, snap_applied, int(json.loads(meta_json)["last"][1]))
                last, prev, _ = snapshot.decode_meta(meta_json, TCPNode)
                dropped = align_journal_to_dump(self._journal, prev, last)
                if dropped:
                    log.info("raft_log_compacted_to_snapshot", dropped_entries=dropped,
                             snapshot_index=last[1])
            except (snapshot.SnapshotError, ValueError, KeyError):
                pass
        if self._watermark.value > known:
            # The database has entries this node's Raft log never held: its files come from
            # different places (a database copied in, a log deleted). Every new entry would be
            # skipped as "already applied" and writes would hang: refuse instead.
            if self._journal.torn_copy is not None:
                # The cut tail held entries the database had already applied: they had been
                # fsync'd (nothing is applied before a majority holds it), so the disk lost
                # confirmed data. One history, one node short of its own log's end.
                self.start_error = (
                    f"the torn tail cut from raft.log (bytes kept in {self._journal.torn_copy}) "
                    f"held entries up to log index {self._watermark.value} that {cfg.database} "
                    f"had already applied; the log now ends at {known} (the disk lost data it had "
                    "confirmed written). " + (
                        "This node is its cluster's only member: those entries exist only in "
                        "gantry.db, so seed a new data directory from it, which keeps them "
                        f"(`{_restore_command(cfg)}`, then start the node on NEW_DIR); keep a "
                        "copy of this directory first." if not cfg.peers else
                        "In a cluster: move gantry.db (and -wal, -shm) aside and start again, "
                        "the node rebuilds it from its snapshot and the leader."))
            else:
                self.start_error = (
                    f"database {cfg.database} is at log index {self._watermark.value} but this "
                    f"node's Raft log ends at {known}: the data directory mixes a database and a "
                    "Raft log of different histories. " + (
                        "This node is its cluster's only member, so its database is the copy to "
                        f"keep: seed a new data directory from it (`{_restore_command(cfg)}`, "
                        "then start the node on NEW_DIR); keep a copy of this directory first."
                        if not cfg.peers else
                        "Restore both from one node, or move gantry.db (and -wal, -shm) aside "
                        "and let the node rebuild it from the cluster."))
            log.error("raft_log_behind_database", applied_index=self._watermark.value,
                      log_index=known)
            self._journal.close()
            self._journal = None
            return
        conf = SyncObjConf(
            journalFile=str(data_dir / "raft.log"),
            fullDumpFile=self._dump_path,
            serializer=self._serialize,
            deserializer=self._deserialize,
            serializeChecker=self._serialize_checker,
            dynamicMembershipChange=True,
            autoTickPeriod=cfg.raft_tick_s,
            appendEntriesPeriod=cfg.raft_append_period_s,
            appendEntriesUseBatch=cfg.raft_batch,
            raftMinTimeout=cfg.raft_min_timeout_s,
            raftMaxTimeout=cfg.raft_max_timeout_s,
            connectionTimeout=max(3.5, cfg.raft_max_timeout_s),
            # Reconnect well within the shortest election timeout (see CONNECT_RETRY_S).
            connectionRetryTime=min(CONNECT_RETRY_S, cfg.raft_min_timeout_s / 4),
            # A leader that hears from no majority for an election timeout steps down (etcd's
            # CheckQuorum); pysyncobj's default keeps an isolated leader for 30 s.
            leaderFallbackTimeout=cfg.raft_max_timeout_s,
            logCompactionMinEntries=cfg.snapshot_entries,
            logCompactionMinTime=cfg.snapshot_interval_s,
            onStateChanged=self._on_state_changed,
            # Without a leader a proposal fails at once (UNAVAILABLE) instead of queueing.
            commandsWaitLeader=False,
            password=cfg.raft_password or None,
            # Listen on the Raft address's own host only: pysyncobj's default is every interface
            # (0.0.0.0), which would expose the pickle transport beyond loopback.
            bindAddress=cfg.raft_addr,
            # Fail start-up within ~1 s when the Raft port is taken, instead of retrying forever.
            bindRetryTime=0.2,
            maxBindRetries=5,
        )
        self._sync = GantrySyncObj(cfg.raft_addr, list(cfg.peers), conf, self._on_entry,
                                   self._journal, self._snapshot_arriving, self._on_position)
        try:
            self._sync.waitBinded()
        except Exception:
            self._sync.destroy_synchronous()
            self._sync = None
            self.start_error = f"cannot listen on Raft address {cfg.raft_addr} (in use?)"
            log.error("raft_bind_failed", raft_addr=cfg.raft_addr)
            return
        self._transport = self._sync.transport()
        # pysyncobj's pipe notifier (present when appendEntriesUseBatch is off) wakes its poller.
        self._wake = self._sync.pipe_notifier()
        self._proposer = Proposer(self._sync, self._proposals, self._on_result)
        self._sync.addOnTickCallback(self._on_tick)
        log.info("raft_started", raft_addr=cfg.raft_addr, peers=list(cfg.peers))

    def on_stop(self) -> None:
        if self._proposer is not None:
            self._proposer.close()
        if self._sync is not None:
            self._sync.destroy_synchronous()  # the tick thread has ended when this returns
            self._sync.reads.close(Stopping())  # no tick thread any more: reads end here
            self._sync = None
        self._asks.close()
        if self._pending_snapshot is not None:  # never built: release its read transaction
            self._pending_snapshot.cancel()
            self._pending_snapshot = None
        # Temporary snapshot files (an interrupted incoming transfer, a build in progress) are
        # never needed after a stop; the dump itself is always complete.
        data_dir = pathlib.Path(self._config.data_dir)
        for stale in data_dir.glob("raft.snapshot.*"):
            if stale.name != "raft.snapshot.meta":
                stale.unlink(missing_ok=True)
        self._proposals.fail_all(Stopping())
        log.info("raft_stopped")

    # -- public API --
    def get_start_error(self) -> str:
        """"" when the Raft node started; otherwise why it could not (e.g. port in use)."""
        return self.start_error

    def proposer(self) -> Proposer:
        """The thread-safe way in for proposals (see :class:`Proposer`); valid once started."""
        assert self._proposer is not None
        return self._proposer

    def read_index_source(self) -> ReadIndexSource:
        """The thread-safe way in for read indexes (see :class:`ReadIndexSource`)."""
        return self._read_source

    def status(self) -> RaftStatus:
        """This node's role, leader, term and log indexes, as of the tick thread's next tick.
        Raises ``concurrent.futures.TimeoutError`` if the tick thread does not answer within
        ASK_TIMEOUT_S, ``Stopping`` once the engine stopped."""
        status: RaftStatus = self._asks.ask(self._status_now)
        return status

    def entry_at(self, index: int) -> tuple[int, str] | None:
        """``(term, entry digest)`` of this node's log entry at ``index``, None when its log does
        not hold it (:meth:`SafeSyncObj.entry_at`). Raises as :meth:`status`."""
        entry: tuple[int, str] | None = self._asks.ask(lambda s: s.entry_at(index))
        return entry

    def noops_match(self, pairs: list[tuple[int, int]]) -> bool:
        """Whether this node's log holds a no-op at each ``(log index, term)`` of ``pairs``
        (:meth:`SafeSyncObj.noops_match`, one ask). Raises as :meth:`status`."""
        match: bool = self._asks.ask(lambda s: s.noops_match(pairs))
        return match

    def solo_read_index(self) -> int | None:
        """The commit index, when this node leads a one-member cluster and has committed its
        term's no-op (None otherwise, or when the engine stopped): every write such a cluster
        acknowledged is committed at or below it, so it is a read index (Raft §6.4) obtained
        without a log entry — what a linearizable read uses while this node's database is full
(gantry/node.py:Node._read_barrier; otherwise :class:`ReadIndexSource`)."""

        def now(s: GantrySyncObj) -> int | None:
            noop = s.noop_index()
            if s.is_leader() and not s.otherNodes and noop and s.raftCommitIndex >= noop:
                return int(s.raftCommitIndex)
            return None

        try:
            index: int | None = self._asks.ask(now)
        except Exception:  # noqa: BLE001 - stopping, or the tick thread did not answer in time
            return None
        return index

    def change_membership(self, op: str, raft_addr: str) -> EngineOutcome:
        """Propose adding (``op="add"``) or removing (``"remove"``) the node at ``raft_addr``.
        The future resolves with None once this node applied the change, or its typed error (a
        refusal of the strict reconfig check is RequestDenied with the reason, read on the tick
        thread when the engine refused)."""
        if self._sync is None:
            fut: EngineOutcome = Future()
            fut.set_result(RequestDenied(why="node stopping"))
            return fut
        sync = self._sync
        fut, done = _outcome_future(
            lambda err: membership_failure(err, lambda: sync.change_refusal))

        def change(s: GantrySyncObj) -> None:
            if op == "add":
                s.addNodeToCluster(raft_addr, callback=done)
            else:
                s.removeNodeFromCluster(raft_addr, callback=done)

        self._asks.ask(change)
        log.info("membership_change_proposed", op=op, raft_addr=raft_addr)
        return fut

    def transfer_leadership(self, raft_addr: str | None) -> EngineOutcome:
        """Ask this node (it must be the leader) to hand leadership to ``raft_addr`` (None = the
        most caught-up follower that answers). Resolves with None once the request is sent, or
        its typed error (``RequestDenied`` whose ``why`` names a target that does not answer,
        empty for one not caught up); the new leader shows in :meth:`leader` a moment later."""
        sync = self._sync
        # The reason is read on the tick thread, which runs the callback (override 25).
        fut, done = _outcome_future(lambda err: transfer_failure(
            err, lambda: sync.transfer_refusal if sync is not None else ""))
        if sync is None:
            fut.set_result(Stopping())
        else:  # pysyncobj reads Raft state and sends right here: only on the tick thread
            self._asks.ask(lambda s: s.transferLeadership(raft_addr or None, callback=done))
        return fut

    def begin_drain(self) -> None:
        """The node is stopping: stop campaigning and refuse forwarded commands (see
        :class:`~gantry.consensus.pysyncobj_compat.DurableTransport`), so leadership can move and
        stay moved."""
        if self._sync is not None:
            self._asks.ask(lambda s: setattr(s.transport(), "draining", True))
            log.info("raft_draining")

    def leader(self) -> str | None:
        """The leader's Raft address as of the last tick, or None (also when a follower has not
        been able to reach its last known leader for an election timeout)."""
        return self._view.leader

    # -- internals --
    def _wake_tick(self) -> None:
        """Any thread: end the tick thread's poll now (an ask is waiting)."""
        wake = self._wake
        if wake is not None:
            wake.notify()

    def _status_now(self, s: GantrySyncObj) -> RaftStatus:
        """Tick thread: :meth:`status`'s answer."""
        st = s.getStatus()
        members = sorted({self._config.raft_addr, *(n.id for n in s.otherNodes)})
        role = {0: "follower", 1: "candidate", 2: "leader"}.get(st.get("state"), "unknown")
        return RaftStatus(
            node_id=self._config.node_id,
            raft_addr=self._config.raft_addr,
            role=role,
            # This node's own verdict (see _on_tick), not pysyncobj's: pysyncobj keeps naming a
            # leader it has not reached for long after a majority is gone (operator trial).
            leader=self._last_leader,
            term=int(st.get("raft_term", 0)),
            commit_index=int(st.get("commit_idx", 0)),
            last_applied=int(st.get("last_applied", 0)),
            applied_index=self._watermark.value,
            members=members,
            connected=s.reachable_members(self._config.raft_max_timeout_s),
            log_size=int(st.get("log_len", 0)),
            last_snapshot_index=self._last_snapshot_index,
        )

    def _on_result(self, proposal_id: str, result: Any, err: int) -> None:
        # Tick thread (or the proposing thread when pysyncobj's queue is full). Success is
        # resolved by the writer after apply; only failures land here.
        error = failure(err, self._view.leader)
        if error is not None:
            self._proposals.fail(proposal_id, error)

    def _refuse(self, command: bytes) -> None:
        """Tick thread: a proposal whose append did not fit (the disk is full) was never in the
        log; fail it here, if it is this node's own (a forwarded one waits for its deadline)."""
        try:
            payload = gantry_payload(command)
            pid = commands.decode(payload).proposal_id if payload is not None else ""
        except ValueError:
            return
        if pid:
            self._proposals.fail(pid, NoSpace(self._view.leader))

    def _hand_over_if_full(self, s: GantrySyncObj, journal: DurableJournal) -> None:
        """Tick thread: a leader whose Raft log has had no room (or whose file system the up-front
        check found low, :class:`~gantry.diskspace.FreeSpace`) for FULL_HANDOVER_AFTER_S hands
        leadership to a caught-up follower (at most every FULL_HANDOVER_EVERY_S), so that the
        cluster keeps taking writes while this node waits for space (it then refuses writes
        itself and acknowledges nothing it cannot append)."""
        low = self._disk is not None and diskspace.FreeSpace.PART in self._disk.where()
        if not (journal.full or low) or not s.otherNodes or not s.is_leader():
            self._full_since = None
            return
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        if now - self._full_since < FULL_HANDOVER_AFTER_S or now < self._next_full_transfer:
            return
        self._next_full_transfer = now + FULL_HANDOVER_EVERY_S

        def done(_res: Any, err: int) -> None:
            error = failure(err)
            log.info("leadership_handover_disk_full",
                     result="SUCCESS" if error is None else error.reason)

        s.transferLeadership(None, callback=done)

    def _fatal(self, reason: str) -> None:
        """Tick thread: the Raft log cannot be trusted any more (a failed fsync or term write).
        ``on_fatal`` must end the process at once — not a graceful stop, during which this node
        could still commit and acknowledge (gantry/node.py passes an immediate exit)."""
        if not self._fatal_reported:
            self._fatal_reported = True
            log.critical("raft_log_failed", reason=reason)
            if self._on_fatal is not None:
                self._on_fatal(reason)

    def _on_entry(self, index: int, data: bytes, term: int) -> None:
        if self._queue.put(index, data, term):
            self._writer.tell(DRAIN)

    def _on_position(self, index: int) -> None:
        if self._queue.put_position(index):
            self._writer.tell(DRAIN)

    def _on_state_changed(self, old: int, new: int) -> None:
        names = {0: "follower", 1: "candidate", 2: "leader"}
        log.info("raft_role_changed", old_role=names.get(old), role=names.get(new))

    def _on_tick(self) -> None:
        s = self._sync
        if s is None:
            return
        # Group commit: one fsync for everything this tick appended, before the next tick can
        # count this node's copy toward a commit (followers sync before acknowledging).
        journal = self._journal
        if journal is not None:
            try:
                journal.sync()
                self._transport.flush_acks()
            except OSError:  # the journal is marked failed: the transport stays silent
                pass
            if journal.failed is not None:
                # Before the next tick: a leader counts its own copy toward the commit, and a
                # commit applied here acknowledges writes. Nothing more may come of this log.
                self._fatal(f"Raft log or metadata write failed: {journal.failed!r}")
            if journal.full:
                journal.probe_space()
            self._hand_over_if_full(s, journal)
            for command in s.take_refused():
                self._refuse(command)
        if self._wake is not None and s.raftCommitIndex < s.last_log_index():
            # Single-node cluster: an entry appended this tick commits on the next tick; wake the
            # poller now instead of sleeping a whole tick period (pysyncobj waits otherwise).
            if not s.otherNodes and s.is_leader():
                self._wake.notify()
        node = s.leader_node()
        leader = node.id if node is not None else None
        if node is not None and leader != self._config.raft_addr and not s.isNodeConnected(node):
            # pysyncobj keeps a follower's last leader while it cannot reach anyone (it only
            # campaigns when connected to someone); proposals forwarded to it are silently lost.
            # After an election timeout without a connection, treat the leader as gone.
            now = time.monotonic()
            if self._leader_lost_at is None:
                self._leader_lost_at = now
            elif now - self._leader_lost_at > self._config.raft_min_timeout_s:
                leader = None
        else:
            self._leader_lost_at = None
        if leader != self._last_leader:
            previous, self._last_leader = self._last_leader, leader
            self._view = TickView(leader, self._serving)
            log.info("leader_changed", leader=leader, previous_leader=previous,
                     term=s.raftCurrentTerm)
            if leader is not None:
                metrics.LEADER_CHANGES.inc()
            if previous is not None:
                # Proposals sent to (or accepted by) the old leader may be lost or may still
                # commit: answer now rather than at the deadline; retries carry request ids.
                self._proposals.fail_all(LeaderChanged(leader))
        serving = leader is not None and self._caught_up_now(s, leader)
        if serving != self._serving:
            self._serving = serving
            self._view = TickView(leader, serving)
            self._on_health(serving)
        s.reads.tick(s)  # ReadIndex: start rounds that waited, fail what a leader change ended
        self._asks.run(s)

    def _caught_up_now(self, s: GantrySyncObj, leader: str) -> bool:
        """Whether this node has applied the log close enough to the leader's commit index to
        serve (tick thread). Re-evaluated every tick, so a replica that falls behind for good
        (or was never caught up) says NOT_SERVING instead of timing out every call."""
        if leader == self._config.raft_addr and s.raftLastApplied < s.noop_index():
            return False  # a new leader serves once its own term's no-op is applied (Raft §8)
        lag = max(0, s.leader_commit_index() - s.raftLastApplied) + len(self._queue)
        now = time.monotonic()
        if lag <= SERVING_RESUME_LAG:
            self._caught_up, self._lagging_since = True, None
        elif lag > SERVING_MAX_LAG:
            if self._lagging_since is None:
                self._lagging_since = now
            if not self._serving or now - self._lagging_since > self._config.raft_max_timeout_s:
                self._caught_up = False
        else:
            self._lagging_since = None
        return self._caught_up

    # -- snapshots (all on the tick thread, except PendingSnapshot.build) --
    #
    # pysyncobj renames ``tmp_path`` over the dump file the moment the serializer returns and
    # streams the dump file to lagging followers once the serializeChecker reports SUCCESS. So the
    # serializer hard-links the *previous* snapshot to ``tmp_path`` (O(1): the dump stays a complete
    # snapshot if we crash now) and queues a SnapshotRequest behind the entries up to the
    # snapshot's index: the writer pins the database there (milliseconds) without the tick thread
    # waiting. The checker polls the request, then copies the pinned state on a background thread
    # and renames the finished file over the dump before reporting SUCCESS. Heartbeats never wait
    # for the pin or the copy.

    def _serialize(self, tmp_path: str, raft_meta: tuple[Any, Any, Any]) -> None:
        # The request is in place before anything can fail: pysyncobj's serializer, once this
        # raised, reports SERIALIZING until the checker says SUCCESS or FAILED — without a
        # request the checker said NOT_SERIALIZING for ever, and the node never took another
        # snapshot nor sent one to a follower (found by a code audit: an ENOSPC on the link).
        index = int(raft_meta[0][1])
        request = SnapshotRequest(index, "")
        self._pending_snapshot = request
        self._snapshot_thread = None
        try:
            request.meta_json = snapshot.encode_meta(raft_meta)
            dump = pathlib.Path(self._dump_path)
            tmp = pathlib.Path(tmp_path)
            tmp.unlink(missing_ok=True)
            if dump.exists():
                os.link(dump, tmp)
            else:
                tmp.write_bytes(b"")  # no snapshot yet: the journal still holds the whole log
        except Exception as e:
            log.warning("snapshot_failed", index=index, error=repr(e))
            request.failed(e)  # the checker reports FAILED; pysyncobj tries again later
            raise
        if self._queue.put_snapshot(request):
            self._writer.tell(DRAIN)

    def _serialize_checker(self) -> int:
        request = self._pending_snapshot
        if request is None:
            return SERIALIZER_STATE.NOT_SERIALIZING
        if self._snapshot_thread is None:
            if not request.ready.is_set():
                return SERIALIZER_STATE.SERIALIZING  # the writer has not reached the index yet
            pending = request.claim()
            if pending is None:  # the writer could not pin it
                self._pending_snapshot = None
                return SERIALIZER_STATE.FAILED
            # pysyncobj renamed our tmp link over the dump; rename() between two links of one file
            # does nothing (POSIX), so the link would stay and pin the old snapshot's blocks.
            tmp = pathlib.Path(self._dump_path + ".tmp")
            try:
                if tmp.exists() and os.path.samefile(tmp, self._dump_path):
                    tmp.unlink()
            except OSError:
                pass
            self._snapshot_thread = threading.Thread(
                target=self._build_snapshot, args=(pending,), name="snapshot", daemon=True)
            self._snapshot_thread.start()
            return SERIALIZER_STATE.SERIALIZING
        pending = request.pending
        assert pending is not None
        if not pending.done.is_set():
            return SERIALIZER_STATE.SERIALIZING
        self._pending_snapshot = None
        self._snapshot_thread = None
        if pending.error or request.superseded:
            # Superseded after its rename: the leader's snapshot went over it, and pysyncobj must
            # not compact its (new) log to this attempt's index.
            return SERIALIZER_STATE.FAILED
        sync = self._sync
        if sync is not None and not sync.log_holds_snapshot(request.meta_json):
            # pysyncobj compacts to the snapshot's previous entry on SUCCESS; the log no longer
            # holds it as the snapshot has it (truncated meanwhile): compacting would cut past
            # the log's end and empty it. The dump is newer than the log; the start-up aligns
            # them (align_journal_to_dump), and the next snapshot compacts.
            log.warning("snapshot_not_compacted", index=request.index,
                        last_log_index=sync.last_log_index())
            return SERIALIZER_STATE.FAILED
        self._last_snapshot_index = pending.index
        if sync is not None:
            # A transfer in progress streams the file it opened, the previous snapshot: the
            # follower would install it and then need this one too (pysyncobj's own
            # fork-serializer restarts transfers on success; its checker path does not).
            sync.cancel_snapshot_transfers()
        return SERIALIZER_STATE.SUCCESS

    def _build_snapshot(self, pending: PendingSnapshot) -> None:
        try:
            pending.build(pathlib.Path(self._dump_path))
        except Exception:  # reported through pending.error → FAILED; pysyncobj retries later
            pass

    def _snapshot_arriving(self) -> None:
        """Tick thread (pysyncobj_compat override 16): the last chunk of the leader's snapshot is
        in; the engine renames the file over the dump and installs it next. This node's own
        snapshot in progress must not land on the dump after it (see SnapshotRequest.supersede)."""
        request = self._pending_snapshot
        if request is not None and not request.superseded:
            request.supersede()
            log.info("snapshot_superseded", index=request.index,
                     reason="the leader's snapshot is being installed")

    def _deserialize(self, path: str) -> tuple[Any, Any, Any]:
        # At every start-up, and when a snapshot arrived from the leader. Raises on an empty or
        # unreadable dump (pysyncobj then keeps its journal, which still holds the whole log).
        p = pathlib.Path(path)
        from_leader = self._sync.loading_from_leader if self._sync is not None else False
        if from_leader:
            # pysyncobj renamed the received file into place without an fsync and clears the
            # Raft log next: make the snapshot durable first, or a power cut leaves neither.
            fsync_file(p)
        # Restore from a private hard link, in log order through the writer's queue (no waiting
        # on the tick thread). The link comes first and the metadata is read from it: the Raft
        # position pysyncobj installs and the database the writer restores are then one file's,
        # even if the dump is replaced meanwhile (they once came from two files: the leader's
        # metadata and this node's older database, and the entries between were never applied).
        private = p.with_name(f"restore-{uuid.uuid4().hex}.db")
        os.link(p, private)
        try:
            meta_json, applied = snapshot.read_meta(private)
            meta = snapshot.decode_meta(meta_json, TCPNode)
            check_snapshot_position(meta, applied)
            # A file from the network, or one the writer is about to restore: whole before it
            # is used (a damaged one is refused, and the leader's sent again: override 17).
            if from_leader or self._watermark.value < applied:
                problem = snapshot.damage(private)
                if problem:
                    log.error("snapshot_damaged", path=str(p), from_leader=from_leader,
                              problem=problem)
                    raise snapshot.SnapshotError(f"snapshot {p} is damaged: {problem}")
        except BaseException:
            private.unlink(missing_ok=True)
            raise
        if self._queue.put_restore(Restore(private, from_leader)):
            self._writer.tell(DRAIN)
        # pysyncobj's applied index after the load is the snapshot's last entry (meta[0]); the
        # database restored (or kept) holds every command up to it, no-ops there or not.
        self._last_snapshot_index = int(meta[0][1])
        self._on_position(self._last_snapshot_index)
        if self._sync is not None:  # pysyncobj restarts delivery after the snapshot's index
            self._sync._last_index = 0
        return meta

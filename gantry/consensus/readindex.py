"""Read index (Raft thesis §6.4) for linearizable reads, without log entries.

Purpose: a linearizable read must reflect every write acknowledged before it began, on any node,
even on a leader that has been deposed without knowing it yet. The read gets a *read index* — a
log index at least as high as every such write — and then waits until this node has applied it
(:class:`gantry.db.Watermark`, :mod:`gantry.api.reads`). No entry is written for a read: a
read-only load does not grow the log.

How the read index is obtained (etcd's ``linearizableReadLoop`` and raft's ``ReadIndex`` with a
heartbeat context; the thesis §6.4 steps 1-4):

1. The leader serves read indexes only once it has committed an entry of its current term (its
   no-op). Before that its commit index may lag entries committed by earlier leaders; reads that
   arrive meanwhile wait (they are not refused).
2. It records its commit index as the read index of a *round*.
3. It confirms it is still the leader with ONE round of append_entries sent to every member at
   once (not at the next heartbeat), each stamped with the round id (:data:`ROUND_KEY`). A
   follower that accepts an append_entries (its term not above the message's) remembers
   ``(term, round)`` of the sender and echoes it in every ``next_node_idx`` it sends back
   (:data:`ECHO_KEY`). The round is confirmed once the leader itself plus voting members whose
   echo carries the leader's current term *and* a round id at least the round's form a majority
   of the voting members (non-voting members' echoes do not count; a membership change during the
   round needs a majority of both configurations). Every read waiting when the round started
   shares it; reads arriving during a round wait for the next one.
4. The read waits until the local applied index reaches the read index.

A follower asks the leader (:data:`REQUEST` over the Raft transport, answered on the leader's
tick thread with :data:`RESPONSE` carrying ``(index, term)``) and then waits locally. One request
per batch of reads: :class:`ReadIndex` coalesces the reads of one node, and the leader's round
coalesces the requests of all nodes.

Safety (why a frozen or partitioned old leader never serves a stale read). Let a read arrive at
leader L of term T at real time t0, and let W be a write acknowledged before t0. W was committed
before t0 by the leader of some term T' (Raft commits through an entry of the committing
leader's own term, stored by a majority M1 of members while in term T'). Suppose T' > T: every
member of M1 had adopted a term ≥ T' > T before t0. The members M2 that confirmed the round each
accepted a message of this round — stamped with a round id assigned after t0, so sent after t0,
with term T — so each had a term ≤ T at some moment after t0. Terms never decrease (they are
persisted), so no member is in both M1 and M2; yet two majorities intersect. Hence T' ≤ T: no
newer leader existed when the read arrived. If T' < T, W is in L's log (Leader Completeness)
before L's no-op, and L's commit index covers the no-op (step 1); if T' = T, L committed W
itself before t0. Either way the read index — the commit index recorded after t0 — is at least
W's index, and the read, which waits until it is applied, sees W. A response to a message sent
before the round started carries a lower round id and never counts, so acknowledgements from
members that have since moved to a newer leader cannot be mistaken for a confirmation; a
response echoing another term never counts either. The argument uses no clock: timeouts only
ever *fail* a round (no leader lease, so a paused process or a drifting clock cannot make a read
stale). A frozen old leader (SIGSTOP) that wakes up still believing it leads records its old
commit index, but the members that moved to the newer term ignore its append_entries (pysyncobj
answers nothing to a lower term), so the round is never confirmed: it fails when the newer
leader's first message deposes L, or after an election timeout. A partitioned old leader hears
nothing back at all.

Why the no-op is required: a new leader's commit index may be below entries committed by its
predecessor (it learns the commit point only when it commits an entry of its own term, Raft
§5.4.2); a read index taken before that could miss an acknowledged write.

Fallbacks. The barrier entry of earlier builds (:func:`barrier_future`) is still used when the
leader is an older build (its append_entries carry no :data:`ROUND_KEY`), when the leader's own
voting majority does not echo rounds yet (older followers during a rolling upgrade) — the request
then fails with :class:`ReadIndexUnsupported` and :func:`with_fallback` proposes a barrier — and
for the disk-full cases of ``gantry/node.py:Node._read_barrier``.

Threads: :class:`ReadIndex` is called from any thread. :class:`ReadRounds` is the engine's and
runs only on pysyncobj's tick thread (its futures are resolved there).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from gantry import metrics
from gantry.consensus.errors import ConsensusError, LeaderChanged, NoLeader, NotLeader

#: Key of the round id (int) Gantry adds to every append_entries a leader sends.
ROUND_KEY = "gantry_ri_round"
#: Key of the ``(term, round id)`` a follower echoes in its next_node_idx replies: the term and
#: round of the last append_entries it accepted from that leader.
ECHO_KEY = "gantry_ri_echo"
#: Raft transport message, follower → leader: ``{"type", "request_id": int}``.
REQUEST = "gantry_read_index"
#: Leader → follower: ``{"type", "request_id", "index": int, "term": int}`` or
#: ``{"type", "request_id", "error": reason}`` (a ConsensusError reason, or :data:`UNSUPPORTED`).
RESPONSE = "gantry_read_index_response"
UNSUPPORTED = "READ_INDEX_UNSUPPORTED"


class ReadIndexUnsupported(Exception):
    """This cluster cannot confirm a read index without a log entry right now (the leader is an
    older build, or a majority of voters does not echo rounds): use a barrier entry instead."""


class ReadIndex:
    """Coalesces one node's linearizable reads onto shared read-index requests.

    ``obtain()`` starts one request (a ReadIndex round through :class:`ReadRounds`, or a barrier
    entry) and returns a Future of a log index committed no earlier than the request started
    (raising a typed ConsensusError, ``TimeoutError`` or whatever ``obtain`` raised). At most one
    request is in flight; reads arriving while it flies wait for the next one, which starts as
    soon as the current one finishes. ``get() -> Future[int]`` is the whole interface.
    """

    def __init__(self, obtain: Callable[[], Future[int]]) -> None:
        self._obtain = obtain
        self._lock = threading.Lock()
        self._inflight = False
        self._started_at = 0.0
        self._next: Future[int] | None = None

    #: A request still unresolved after this long (seconds) no longer holds back new reads.
    STUCK_AFTER_S = 5.0

    def get(self) -> Future[int]:
        """A future of a read index obtained by a request that began after this call did."""
        metrics.READ_INDEX_WAITS.inc()
        launch = None
        with self._lock:
            if self._next is None:
                self._next = Future()
            fut = self._next
            if self._inflight and time.monotonic() - self._started_at > self.STUCK_AFTER_S:
                self._inflight = False
            if not self._inflight:
                launch = self._claim_locked()
        if launch is not None:
            self._launch(launch)
        return fut

    def _claim_locked(self) -> Future[int] | None:
        """Take the reads waiting for the next request (None: nobody waits; not in flight)."""
        waiting, self._next = self._next, None
        if waiting is None:
            self._inflight = False
            return None
        self._inflight = True
        self._started_at = time.monotonic()
        return waiting

    def _launch(self, waiting: Future[int]) -> None:
        # Never under self._lock: the request may fail (or succeed) before obtain returns, and
        # its done-callback then runs right here and takes the lock (a proposal refused at once,
        # e.g. pysyncobj's QUEUE_FULL, deadlocked every later linearizable read).
        t0 = time.perf_counter()
        try:
            request = self._obtain()
        except BaseException as e:
            waiting.set_exception(e)
            with self._lock:  # reads that arrived meanwhile get their own attempt
                launch = self._claim_locked()
            if launch is not None:
                self._launch(launch)
            return
        request.add_done_callback(lambda f: self._done(f, waiting, t0))

    def _done(self, request: Future[int], waiting: Future[int], t0: float) -> None:
        exc = request.exception()
        if exc is not None:
            waiting.set_exception(exc)
        else:
            metrics.READ_INDEX_DURATION.observe(time.perf_counter() - t0)
            waiting.set_result(request.result())
        with self._lock:
            launch = self._claim_locked()
        if launch is not None:
            self._launch(launch)


class ReadIndexGetter(Protocol):
    """What :class:`LoopReadIndex` needs of a read index: ``get() -> Future[int]`` (a
    :class:`ReadIndex`, or a worker's view of the main process's)."""

    def get(self) -> Future[int]:
        ...


class LoopReadIndex:
    """The event loop's side of a :class:`ReadIndex`: ``await index(timeout_s)`` gives a log
    index committed after the call began, without a thread waiting for it.

    Every read coalesced onto the same barrier (the same ``ReadIndex`` future) shares ONE
    done-callback: when the barrier resolves (on the writer or tick thread), all its loop-side
    waiters are handed to the loop in a single ``call_soon_threadsafe``. Use one instance per
    loop, only from that loop's thread.
    """

    def __init__(self, read_index: ReadIndexGetter) -> None:
        self._read_index = read_index
        self._waiting: dict[Future[int], list[asyncio.Future[int]]] = {}
        #: Loop hand-offs made so far (one per barrier result that had loop-side waiters).
        self.handoffs = 0

    async def index(self, timeout_s: float) -> int:
        """The read index (log index). Raises the barrier's error (a ConsensusError: no
        leader, lost leadership, stopping) or ``TimeoutError`` after ``timeout_s`` seconds."""
        loop = asyncio.get_running_loop()
        barrier = self._read_index.get()  # may propose the barrier: a queue append, no wait
        mine: asyncio.Future[int] = loop.create_future()
        waiters = self._waiting.get(barrier)
        if waiters is None:
            self._waiting[barrier] = waiters = [mine]

            def done(f: Future[int]) -> None:  # writer / tick thread (or here, if done already)
                self.handoffs += 1
                try:
                    loop.call_soon_threadsafe(self._settle, f)
                except RuntimeError:  # the loop closed: nobody waits any more
                    pass

            barrier.add_done_callback(done)
        else:
            waiters.append(mine)
        async with asyncio.timeout(timeout_s):
            return await mine

    def _settle(self, barrier: Future[int]) -> None:
        exc = barrier.exception()
        for w in self._waiting.pop(barrier, ()):
            if w.done():  # its deadline passed
                continue
            if exc is not None:
                w.set_exception(exc)
            else:
                w.set_result(barrier.result())


def barrier_future(propose_async: Callable[[Any], Future[Any]], make: Callable[[], Any]
                   ) -> Future[int]:
    """Adapt a ``propose_async(command) -> Future[(ApplyResult, index)]`` into a Future of the
    index (a barrier entry through the log: the fallback read index)."""
    out: Future[int] = Future()

    def done(f: Future[Any]) -> None:
        exc = f.exception()
        if exc is not None:
            out.set_exception(exc)
        else:
            out.set_result(int(f.result()[1]))

    propose_async(make()).add_done_callback(done)
    return out


def with_fallback(first: Future[int], fallback: Callable[[], Future[int]]) -> Future[int]:
    """``first``'s outcome, except that when it fails with :class:`ReadIndexUnsupported` the
    outcome of ``fallback()`` (called on the thread that failed ``first``; what it raises
    becomes the outcome)."""
    out: Future[int] = Future()

    def relay(f: Future[int]) -> None:
        exc = f.exception()
        if exc is None:
            out.set_result(f.result())
        else:
            out.set_exception(exc)

    def done(f: Future[int]) -> None:
        if isinstance(f.exception(), ReadIndexUnsupported):
            metrics.READ_INDEX_FALLBACKS.inc()
            try:
                fallback().add_done_callback(relay)
            except Exception as e:  # noqa: BLE001 - the read's outcome, typed by its raiser
                out.set_exception(e)
            return
        relay(f)

    first.add_done_callback(done)
    return out


class Engine(Protocol):
    """What :class:`ReadRounds` reads of the Raft engine (``SafeSyncObj`` implements it; tests
    use a fake). Tick thread only."""

    def is_leader(self) -> bool: ...
    def current_term(self) -> int: ...
    def commit_index(self) -> int: ...
    def noop_committed(self) -> bool:
        """Whether this leader has committed the no-op of its current term."""
        ...
    def voter_ids(self) -> frozenset[str]:
        """The other voting members' Raft addresses (non-voting members excluded)."""
        ...
    def leader_id(self) -> str | None: ...
    def send_to(self, node_id: str, message: dict[str, Any]) -> bool: ...
    def heartbeat_now(self) -> None:
        """Send append_entries to every member now."""
        ...


#: A read waiting for a round: a local Future, or a follower's request ``(node id, request id)``.
Waiter = Future[int] | tuple[str, int]


@dataclass
class Round:
    """One confirmation round: ``id`` (stamped on append_entries), ``term``, ``index`` (the read
    index: the commit index at the start), ``voters`` (the other voting members then), ``acks``
    (members whose echo confirmed it), ``started`` (monotonic seconds) and its waiters."""

    id: int
    term: int
    index: int
    voters: frozenset[str]
    started: float
    waiters: list[Waiter]
    acks: set[str] = field(default_factory=set)

    def confirmed(self, voters_now: frozenset[str]) -> bool:
        """Whether the leader plus ``acks`` are a majority of the voting members both at the
        start and now (``voters_now``); each set excludes the leader itself."""
        return all(1 + len(self.acks & v) > (len(v) + 1) / 2 for v in (self.voters, voters_now))


@dataclass
class _Outstanding:
    """A follower's request to its leader: ``leader``, ``sent`` (monotonic s), its futures."""

    leader: str
    sent: float
    waiters: list[Future[int]]


class ReadRounds:
    """The engine side of ReadIndex, on pysyncobj's tick thread (see the module docstring).

    Leader: :meth:`request` queues a waiter and starts a round when none is in flight;
    :meth:`stamp` adds the current round id to outgoing append_entries; :meth:`on_ack` counts
    echoes; :meth:`tick` starts waiting rounds (once the no-op committed), and fails rounds and
    waiters when leadership is lost, the term changed or a round is not confirmed within
    ``round_timeout_s`` seconds (:class:`~gantry.consensus.errors.LeaderChanged`).
    Follower: :meth:`on_append_entries` records what to echo and whether the leader stamps
    rounds; :meth:`request` sends a :data:`REQUEST` (or fails with :class:`ReadIndexUnsupported`
    / :class:`~gantry.consensus.errors.NoLeader`), :meth:`on_response` resolves it, and
    :meth:`tick` fails it with ``TimeoutError`` after ``2 * round_timeout_s`` (the status a
    barrier timeout gives) or :class:`~gantry.consensus.errors.LeaderChanged` when the leader
    changes.
    """

    def __init__(self, round_timeout_s: float = 1.4) -> None:
        self.round_timeout_s = round_timeout_s
        self._ids = itertools.count(1)
        #: The id of the latest round started (stamped on every append_entries sent from now).
        self.round_id = 0
        self._round: Round | None = None
        self._waiting: list[Waiter] = []
        self._waiting_since = 0.0
        self._leading_term: int | None = None  # the term this node leads in, as last seen
        #: Leader: node id → whether its last next_node_idx carried an echo (a build that does).
        self.echoes: dict[str, bool] = {}
        # Follower: node id → (term, round) to echo; the stamping leader as (node id, term).
        self._seen: dict[str, tuple[int, int]] = {}
        self._stamping: tuple[str, int] | None = None
        self._requests = itertools.count(1)
        self._outstanding: dict[int, _Outstanding] = {}
        self._followed: str | None = None

    # -- transport hooks --
    def stamp(self, message: dict[str, Any]) -> dict[str, Any]:
        """An outgoing append_entries with the current round id added (a copy)."""
        return {**message, ROUND_KEY: self.round_id}

    def echo(self, node_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """An outgoing next_node_idx to ``node_id`` with the echo of the last round this node
        accepted from it (a copy; unchanged when it never stamped one)."""
        seen = self._seen.get(node_id)
        return message if seen is None else {**message, ECHO_KEY: seen}

    def on_append_entries(self, node_id: str, message: dict[str, Any]) -> None:
        """An append_entries from ``node_id`` that this node accepts (its term is not above the
        message's): remember its term and round, before the reply is sent."""
        term = int(message["term"])
        if ROUND_KEY in message:
            self._seen[node_id] = (term, int(message[ROUND_KEY]))
            self._stamping = (node_id, term)
        else:  # an older build leads: no echo, and followers fall back to barriers
            self._seen.pop(node_id, None)
            self._stamping = None

    # -- leader --
    def on_ack(self, engine: Engine, node_id: str, message: dict[str, Any]) -> None:
        """A next_node_idx received while leading: count its echo toward the round."""
        echo = message.get(ECHO_KEY)
        self.echoes[node_id] = echo is not None
        rnd = self._round
        if rnd is None or echo is None:
            return
        term, round_id = echo
        if term != rnd.term or term != engine.current_term() or round_id < rnd.id:
            return  # another term, or a reply to a message sent before the round started
        if node_id not in rnd.voters:
            return  # a non-voting member
        rnd.acks.add(node_id)
        if rnd.confirmed(engine.voter_ids()):
            self._complete(engine)

    def on_request(self, engine: Engine, node_id: str, message: dict[str, Any]) -> None:
        """A follower's :data:`REQUEST`: join the next round, or answer at once."""
        self.request(engine, (node_id, int(message["request_id"])))

    def request(self, engine: Engine, waiter: Waiter) -> None:
        """Get a read index for ``waiter`` (a local Future or a follower's request)."""
        if engine.is_leader():
            self._check_term(engine)
            if not self._waiting:
                self._waiting_since = time.monotonic()
            self._waiting.append(waiter)
            self._maybe_start(engine)
            return
        if isinstance(waiter, tuple):  # a request sent to a node that no longer leads
            self._answer(engine, waiter, NotLeader(engine.leader_id()))
            return
        leader = engine.leader_id()
        if leader is None:
            waiter.set_exception(NoLeader())
            return
        if self._stamping is None or self._stamping[0] != leader:
            waiter.set_exception(ReadIndexUnsupported())  # an older build leads
            return
        rid = next(self._requests)
        self._outstanding[rid] = _Outstanding(leader, time.monotonic(), [waiter])
        if not engine.send_to(leader, {"type": REQUEST, "request_id": rid}):
            self._outstanding.pop(rid, None)
            waiter.set_exception(NoLeader(leader))

    def _check_term(self, engine: Engine) -> None:
        term = engine.current_term()
        if self._leading_term != term:  # a new term of leadership: nothing of the old survives
            self._fail_leader(engine, LeaderChanged(engine.leader_id()))
            self._leading_term = term

    def _maybe_start(self, engine: Engine) -> None:
        if self._round is not None or not self._waiting or not engine.noop_committed():
            return
        voters = engine.voter_ids()
        # Members known to echo (their last reply carried one) and this node: a majority?
        if 1 + sum(1 for v in voters if self.echoes.get(v)) <= (len(voters) + 1) / 2:
            waiting, self._waiting = self._waiting, []
            for w in waiting:
                self._answer(engine, w, ReadIndexUnsupported())
            return
        self.round_id = next(self._ids)
        waiting, self._waiting = self._waiting, []
        self._round = Round(self.round_id, engine.current_term(), engine.commit_index(), voters,
                            time.monotonic(), waiting)
        metrics.READ_INDEX_ROUNDS.inc()
        if self._round.confirmed(voters):  # a one-member cluster: the majority is this node
            self._complete(engine)
        else:
            engine.heartbeat_now()

    def _complete(self, engine: Engine) -> None:
        rnd, self._round = self._round, None
        assert rnd is not None
        for w in rnd.waiters:
            self._answer(engine, w, rnd.index, rnd.term)
        self._maybe_start(engine)

    def _answer(self, engine: Engine, waiter: Waiter, result: int | BaseException,
                term: int = 0) -> None:
        if isinstance(waiter, tuple):
            node_id, rid = waiter
            msg: dict[str, Any] = {"type": RESPONSE, "request_id": rid}
            if isinstance(result, BaseException):
                msg["error"] = (UNSUPPORTED if isinstance(result, ReadIndexUnsupported)
                                else getattr(result, "reason", LeaderChanged.reason))
            else:
                msg.update(index=result, term=term)
            engine.send_to(node_id, msg)
        elif not waiter.done():
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

    def _fail_leader(self, engine: Engine, error: ConsensusError) -> None:
        rnd, self._round = self._round, None
        waiting, self._waiting = self._waiting, []
        for w in [*(rnd.waiters if rnd is not None else ()), *waiting]:
            self._answer(engine, w, error)
        if rnd is not None:
            metrics.READ_INDEX_ROUNDS_FAILED.inc()

    # -- follower --
    def on_response(self, engine: Engine, node_id: str, message: dict[str, Any]) -> None:
        """The leader's :data:`RESPONSE` to one of this node's requests."""
        rid = int(message.get("request_id", -1))
        out = self._outstanding.get(rid)
        if out is None or out.leader != node_id:
            return
        del self._outstanding[rid]
        error = message.get("error")
        for w in out.waiters:
            if w.done():
                continue
            if error is None:
                w.set_result(int(message["index"]))
            elif error == UNSUPPORTED:
                w.set_exception(ReadIndexUnsupported())
            else:
                w.set_exception(_ERRORS.get(error, LeaderChanged)(engine.leader_id()))

    # -- every tick --
    def tick(self, engine: Engine) -> None:
        """Start a round that waited for the no-op; fail what leadership loss, a term change, a
        leader change or a timeout ended."""
        now = time.monotonic()
        if engine.is_leader():
            self._check_term(engine)
            rnd = self._round
            if rnd is not None and now - rnd.started > self.round_timeout_s:
                self._fail_leader(engine, LeaderChanged(None))  # the round was not confirmed
            elif self._waiting and now - self._waiting_since > self.round_timeout_s:
                self._fail_leader(engine, LeaderChanged(None))  # the no-op did not commit
            self._maybe_start(engine)
        elif self._round is not None or self._waiting or self._leading_term is not None:
            self._fail_leader(engine, LeaderChanged(engine.leader_id()))
            self._leading_term = None
        leader = engine.leader_id()
        if leader != self._followed:
            self._followed = leader
            self._fail_requests(lambda o: o.leader != leader,
                                lambda: LeaderChanged(leader))
        self._fail_requests(lambda o: now - o.sent > 2 * self.round_timeout_s,
                            lambda: TimeoutError("the leader did not answer the read index"))

    def _fail_requests(self, which: Callable[[_Outstanding], bool],
                       error: Callable[[], BaseException]) -> None:
        for rid in [r for r, o in self._outstanding.items() if which(o)]:
            for w in self._outstanding.pop(rid).waiters:
                if not w.done():
                    w.set_exception(error())

    def close(self, error: BaseException) -> None:
        """The engine stops: every waiter fails with ``error``."""
        waiters: Iterable[Waiter] = [*(self._round.waiters if self._round else ()),
                                     *self._waiting,
                                     *(w for o in self._outstanding.values() for w in o.waiters)]
        self._round, self._waiting, self._outstanding = None, [], {}
        for w in waiters:
            if isinstance(w, Future) and not w.done():
                w.set_exception(error)


_ERRORS: dict[str, type[ConsensusError]] = {
    c.reason: c for c in (NotLeader, LeaderChanged, NoLeader)}

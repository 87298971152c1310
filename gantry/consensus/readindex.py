"""Read index (Raft §6.4) for linearizable reads: a barrier entry committed by a majority under
the current leader and applied here proves this node has every write acknowledged before the read
began; concurrent reads share one barrier.

Invariant: a read waits for a barrier *proposed after it arrived* (never one already in flight), so
the index it gets is at least the commit index at its start. Trade-off: every batch of
linearizable reads writes an entry to the log (pysyncobj has no leader lease and no ReadIndex
RPC), so a read-only load still grows the log. The consistency levels a call may ask for, and the
wait on the watermark, are :mod:`gantry.api.reads`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from gantry import metrics


class ReadIndex:
    """Coalesces linearizable reads onto shared barrier entries.

    ``propose_barrier()`` starts one barrier through the log and returns a Future of its log
    index (raising the proposal's error). At most one barrier is in flight; reads arriving while
    it flies wait for the next one, which starts as soon as the current one finishes.
    """

    def __init__(self, propose_barrier: Callable[[], Future[int]]) -> None:
        self._propose = propose_barrier
        self._lock = threading.Lock()
        self._inflight = False
        self._started_at = 0.0
        self._next: Future[int] | None = None

    #: A barrier still unresolved after this long (seconds) no longer holds back new reads.
    STUCK_AFTER_S = 5.0

    def get(self) -> Future[int]:
        """A future of a log index committed after this call began."""
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
        """Take the reads waiting for the next barrier (None: nobody waits; not in flight)."""
        waiting, self._next = self._next, None
        if waiting is None:
            self._inflight = False
            return None
        self._inflight = True
        self._started_at = time.monotonic()
        return waiting

    def _launch(self, waiting: Future[int]) -> None:
        # Never under self._lock: the barrier may fail (or succeed) before propose returns, and
        # its done-callback then runs right here and takes the lock (a proposal refused at once,
        # e.g. pysyncobj's QUEUE_FULL, deadlocked every later linearizable read).
        t0 = time.perf_counter()
        try:
            barrier = self._propose()
        except BaseException as e:
            waiting.set_exception(e)
            with self._lock:  # reads that arrived meanwhile get their own attempt
                launch = self._claim_locked()
            if launch is not None:
                self._launch(launch)
            return
        barrier.add_done_callback(lambda f: self._done(f, waiting, t0))

    def _done(self, barrier: Future[int], waiting: Future[int], t0: float) -> None:
        exc = barrier.exception()
        if exc is not None:
            waiting.set_exception(exc)
        else:
            metrics.READ_INDEX_DURATION.observe(time.perf_counter() - t0)
            waiting.set_result(barrier.result())
        with self._lock:
            launch = self._claim_locked()
        if launch is not None:
            self._launch(launch)


class LoopReadIndex:
    """The event loop's side of a :class:`ReadIndex`: ``await index(timeout_s)`` gives a log
    index committed after the call began, without a thread waiting for it.

    Every read coalesced onto the same barrier (the same ``ReadIndex`` future) shares ONE
    done-callback: when the barrier resolves (on the writer or tick thread), all its loop-side
    waiters are handed to the loop in a single ``call_soon_threadsafe``. Use one instance per
    loop, only from that loop's thread.
    """

    def __init__(self, read_index: ReadIndex) -> None:
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
    index, for :class:`ReadIndex`."""
    out: Future[int] = Future()

    def done(f: Future[Any]) -> None:
        exc = f.exception()
        if exc is not None:
            out.set_exception(exc)
        else:
            out.set_result(int(f.result()[1]))

    propose_async(make()).add_done_callback(done)
    return out

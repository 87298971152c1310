"""Futures of in-flight proposals on this node, keyed by the Command's ``proposal_id``.

The front door registers a future before proposing; the writer resolves it with
``(ApplyResult, log index)`` once the entry is applied here; the Raft node fails it with a typed
:class:`~gantry.consensus.errors.ConsensusError` when pysyncobj reports the proposal lost (not
leader, discarded, queue full), when leadership changes, or when the node stops. Only the
proposing node has a future for an entry; every other node applies it without anyone waiting.

Two kinds of waiter: a ``concurrent.futures.Future`` (:meth:`Proposals.register`, for threads:
registrations, the cradle monitor, read barriers) and an ``asyncio.Future`` of the gRPC event
loop (:meth:`Proposals.register_async`, for the API's calls). An asyncio future is only ever
completed on its loop: whoever resolves or fails a set of them from another thread (the writer,
once per applied batch; the tick thread) hands the whole set to the loop with ONE
``loop.call_soon_threadsafe`` — no thread is woken per call (issue 10: waking each call's own
thread was 28 % of the GIL under 16 concurrent writes).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

#: Loop-side work of one hand-off: ``(future, value, exception)``; exactly one of value and
#: exception is meaningful (exception None: set the value).
Settlement = tuple["asyncio.Future[Any]", Any, BaseException | None]


def settle_all(items: list[Settlement]) -> None:
    """On the loop: complete every future of ``items`` that is still pending (a waiter whose
    deadline passed cancelled its own future; it is skipped)."""
    for fut, value, exc in items:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)


def hand_off(items: list[Settlement]) -> int:
    """Send ``items`` to their loops, one ``call_soon_threadsafe`` per loop (normally one);
    returns the number of hand-offs. A loop that is already closed (the server stopped) is
    skipped: nobody waits on it any more."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Settlement]] = {}
    for item in items:
        by_loop.setdefault(item[0].get_loop(), []).append(item)
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(settle_all, batch)
        except RuntimeError:  # loop closed
            pass
    return len(by_loop)


class Proposals:
    """Thread-safe registry: ``register`` → Future[(ApplyResult, int)]; ``register_async`` →
    asyncio.Future of the calling loop; ``resolve`` / ``resolve_batch``; ``fail``; ``fail_all``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[str, Future[Any]] = {}
        self._async: dict[str, asyncio.Future[Any]] = {}

    def register(self, proposal_id: str) -> Future[Any]:
        """A thread-side future for ``proposal_id`` (any thread)."""
        fut: Future[Any] = Future()
        with self._lock:
            self._futures[proposal_id] = fut
        return fut

    def register_async(self, proposal_id: str) -> asyncio.Future[Any]:
        """A future of the running event loop for ``proposal_id``; call it on that loop.
        Raises RuntimeError outside a running loop."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._async[proposal_id] = fut
        return fut

    def discard(self, proposal_id: str) -> None:
        """Forget ``proposal_id`` (its waiter gave up: deadline)."""
        with self._lock:
            self._futures.pop(proposal_id, None)
            self._async.pop(proposal_id, None)

    def resolve(self, proposal_id: str, value: Any) -> None:
        """Resolve one proposal with ``value`` (see :meth:`resolve_batch`)."""
        self.resolve_batch(((proposal_id, value),))

    def resolve_batch(self, pairs: Iterable[tuple[str, Any]]) -> int:
        """Resolve every ``(proposal_id, value)`` of an applied batch; ids nobody waits for are
        skipped. Thread-side futures are set here; loop-side ones are handed to their loop in
        one call. Returns the number of loop hand-offs (0 or 1 normally)."""
        threads: list[tuple[Future[Any], Any]] = []
        loop_side: list[Settlement] = []
        with self._lock:
            for pid, value in pairs:
                afut = self._async.pop(pid, None)
                if afut is not None:
                    loop_side.append((afut, value, None))
                    continue
                fut = self._futures.pop(pid, None)
                if fut is not None:
                    threads.append((fut, value))
        for fut, value in threads:
            if not fut.done():
                fut.set_result(value)
        return hand_off(loop_side) if loop_side else 0

    def fail(self, proposal_id: str, exc: BaseException) -> None:
        """Fail one proposal with ``exc`` (a ConsensusError)."""
        with self._lock:
            fut = self._futures.pop(proposal_id, None)
            afut = self._async.pop(proposal_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        if afut is not None:
            hand_off([(afut, None, exc)])

    def fail_all(self, exc: BaseException) -> None:
        """Fail every waiting proposal with ``exc`` (leader changed, node stopping); the
        loop-side ones in one hand-off."""
        with self._lock:
            futs = list(self._futures.values())
            afuts = list(self._async.values())
            self._futures.clear()
            self._async.clear()
        for fut in futs:
            if not fut.done():
                fut.set_exception(exc)
        if afuts:
            hand_off([(f, None, exc) for f in afuts])

    def __len__(self) -> int:
        """Proposals waiting for their outcome (for metrics; a dict's size reads atomically)."""
        return len(self._futures) + len(self._async)

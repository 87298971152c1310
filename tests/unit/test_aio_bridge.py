"""The hand-off between the node's threads and the gRPC event loop (issue 10 part 2): waiting
calls are asyncio futures, and whoever completes a set of them from another thread (the writer
per applied batch, the tick thread, the read index) does it in ONE ``call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest

from gantry.consensus.errors import NoLeader, Stopping
from gantry.consensus.proposals import Proposals
from gantry.consensus.readindex import LoopReadIndex, ReadIndex
from gantry.db import PRUNE_AFTER, Watermark

T = TypeVar("T")
N = 200


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the callbacks other threads hand it."""

    def __init__(self) -> None:
        super().__init__()
        self.handoffs = 0

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                             context: Any = None) -> asyncio.Handle:
        if threading.current_thread() is not _LOOP_THREADS.get(id(self)):
            self.handoffs += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


_LOOP_THREADS: dict[int, threading.Thread] = {}


class Loop:
    """A CountingLoop running in a thread; ``run(coro)`` runs a coroutine there."""

    def __init__(self) -> None:
        self.loop = CountingLoop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        _LOOP_THREADS[id(self.loop)] = self.thread
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def settled(self) -> None:
        """Returns once every callback queued so far has run (one more trip through the loop)."""
        self.run(asyncio.sleep(0))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def _register(loop: Loop, proposals: Proposals, ids: list[str]) -> list[asyncio.Future[Any]]:
    async def reg() -> list[asyncio.Future[Any]]:
        return [proposals.register_async(i) for i in ids]

    return loop.run(reg())


def test_a_batch_of_resolutions_is_one_hand_off(loop: Loop) -> None:
    proposals = Proposals()
    ids = [f"p{i}" for i in range(N)]
    futs = _register(loop, proposals, ids)
    thread_side = proposals.register("t")  # a registration's or the cradle monitor's wait
    before = loop.loop.handoffs
    # The writer resolves its batch (some ids nobody waits for: proposed by another node).
    assert proposals.resolve_batch([(i, (i, n)) for n, i in enumerate(ids)]
                                   + [("t", "ok"), ("other-node", None)]) == 1
    assert loop.loop.handoffs - before == 1
    loop.settled()
    assert [f.result() for f in futs] == [(i, n) for n, i in enumerate(ids)]
    assert thread_side.result(timeout=0) == "ok"
    assert len(proposals) == 0


def test_fail_all_is_one_hand_off_and_fail_one_reaches_its_waiter(loop: Loop) -> None:
    proposals = Proposals()
    futs = _register(loop, proposals, [f"p{i}" for i in range(N)])
    proposals.fail("p0", NoLeader())
    before = loop.loop.handoffs
    proposals.fail_all(Stopping())
    assert loop.loop.handoffs - before == 1
    loop.settled()
    assert isinstance(futs[0].exception(), NoLeader)
    assert all(isinstance(f.exception(), Stopping) for f in futs[1:])


def test_a_waiter_past_its_deadline_is_skipped_not_failed(loop: Loop) -> None:
    proposals = Proposals()

    async def wait_briefly() -> str:
        fut = proposals.register_async("late")
        try:
            await asyncio.wait_for(fut, 0.01)
        except TimeoutError:
            proposals.discard("late")
            return "timed out"
        return "resolved"

    assert loop.run(wait_briefly()) == "timed out"
    assert proposals.resolve_batch([("late", 1)]) == 0  # forgotten: nothing handed off


def test_watermark_wakes_the_waiters_it_reached_once_per_advance(loop: Loop) -> None:
    wm = Watermark(10)
    results: list[Future[bool]] = [loop.spawn(wm.wait_async(11 + i % 4, 10)) for i in range(N)]
    assert loop.run(wm.wait_async(5, 1))  # already reached: no wait at all

    def waiting() -> int:
        return len(wm._aio)  # noqa: SLF001 - the heap of loop-side waiters

    _poll(lambda: waiting() == N)
    before = loop.loop.handoffs
    wm.advance(12)  # one applied batch: the waiters on 11 and 12, in one hand-off
    assert loop.loop.handoffs - before == 1
    _poll(lambda: sum(r.done() for r in results) == N // 2)
    before = loop.loop.handoffs
    wm.advance(12)  # no progress: nothing handed off
    assert loop.loop.handoffs == before
    loop.settled()
    assert sum(r.done() for r in results) == N // 2
    wm.close()  # shutdown: the rest answer False (the caller then reports "node stopping")
    assert [r.result(5) for r in results].count(False) == N // 2
    assert loop.run(wm.wait_async(100, 1)) is False


def test_watermark_wait_times_out_and_abandoned_waits_do_not_pile_up(loop: Loop) -> None:
    wm = Watermark(0)
    assert loop.run(wm.wait_async(1, 0.02)) is False
    assert not wm.closed

    async def many() -> list[bool]:
        return await asyncio.gather(*(wm.wait_async(10**12, 0.01) for _ in range(3000)))

    assert not any(loop.run(many()))
    assert len(wm._aio) <= 2 * PRUNE_AFTER + 2  # noqa: SLF001 - pruned, not 3001


def test_reads_on_one_barrier_share_one_hand_off(loop: Loop) -> None:
    barriers: list[Future[int]] = []

    def propose() -> Future[int]:
        f: Future[int] = Future()
        barriers.append(f)
        return f

    ri = LoopReadIndex(ReadIndex(propose))
    first = loop.spawn(ri.index(10))
    _poll(lambda: len(barriers) == 1)
    # Reads arriving while the first barrier flies share the next one.
    rest = [loop.spawn(ri.index(10)) for _ in range(N)]
    loop.settled()
    before = ri.handoffs
    barriers[0].set_result(7)  # the writer applied the barrier (its thread: here)
    assert first.result(5) == 7
    _poll(lambda: len(barriers) == 2)  # ReadIndex launched the next barrier for the others
    assert ri.handoffs - before == 1
    barriers[1].set_exception(NoLeader())  # lost: all N readers get it from one hand-off
    for r in rest:
        with pytest.raises(NoLeader):
            r.result(5)
    assert ri.handoffs - before == 2


def test_read_index_times_out(loop: Loop) -> None:
    ri = LoopReadIndex(ReadIndex(lambda: Future()))
    with pytest.raises(TimeoutError):
        loop.run(ri.index(0.02))


def _poll(pred: Callable[[], bool], timeout_s: float = 5.0) -> None:
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not pred():
            if done.wait(0.002):
                raise AssertionError("condition not reached in time")
    finally:
        deadline.cancel()

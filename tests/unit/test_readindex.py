"""Unit tests of :class:`gantry.consensus.readindex.ReadIndex` with fake barriers."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from gantry.consensus.errors import ConsensusError, NoLeader, Overloaded
from gantry.consensus.readindex import ReadIndex


def test_a_barrier_that_fails_before_propose_returns_does_not_deadlock() -> None:
    # pysyncobj answers QUEUE_FULL on the proposing thread, so the barrier's Future can be done
    # before propose returns; its callback used to take the ReadIndex lock it was called under.
    calls = []

    def propose() -> Future[int]:
        calls.append(1)
        f: Future[int] = Future()
        if len(calls) == 1:
            f.set_exception(Overloaded())
        else:
            f.set_result(42)
        return f

    ri = ReadIndex(propose)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(ri.get()), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "ReadIndex.get deadlocked"
    first = result[0]
    assert isinstance(first, Future)
    with pytest.raises(ConsensusError):
        first.result(timeout=1)
    assert ri.get().result(timeout=1) == 42  # the next read gets a fresh barrier


def test_reads_share_the_barrier_proposed_after_them() -> None:
    pending: list[Future[int]] = []

    def propose() -> Future[int]:
        f: Future[int] = Future()
        pending.append(f)
        return f

    ri = ReadIndex(propose)
    a = ri.get()           # starts barrier 1
    b, c = ri.get(), ri.get()  # wait for barrier 2 (proposed after they arrived)
    assert len(pending) == 1
    pending[0].set_result(10)
    assert a.result(timeout=1) == 10
    assert len(pending) == 2 and not b.done()
    pending[1].set_result(11)
    assert b.result(timeout=1) == c.result(timeout=1) == 11


def test_a_refused_barrier_fails_its_reads_and_the_next_read_tries_again() -> None:
    n = []

    def propose() -> Future[int]:
        n.append(1)
        if len(n) == 1:
            raise NoLeader()
        f: Future[int] = Future()
        f.set_result(7)
        return f

    ri = ReadIndex(propose)
    with pytest.raises(ConsensusError):
        ri.get().result(timeout=1)
    assert ri.get().result(timeout=1) == 7

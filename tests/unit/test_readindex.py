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


# -- ReadRounds: the engine side of ReadIndex (Raft thesis §6.4), with a fake engine --

from typing import Any  # noqa: E402

from gantry.consensus.errors import LeaderChanged, NotLeader  # noqa: E402
from gantry.consensus.readindex import (  # noqa: E402
    ECHO_KEY,
    REQUEST,
    RESPONSE,
    ROUND_KEY,
    ReadIndexUnsupported,
    ReadRounds,
    with_fallback,
)


class FakeEngine:
    """What ReadRounds reads of the engine; ``sent`` records messages, ``heartbeats`` rounds."""

    def __init__(self, voters: set[str], leader: bool = True, term: int = 5, commit: int = 100,
                 noop: bool = True) -> None:
        self.voters = frozenset(voters)
        self.leader, self.term, self.commit, self.noop = leader, term, commit, noop
        self.leader_addr: str | None = "me" if leader else "L"
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.heartbeats = 0

    def is_leader(self) -> bool:
        return self.leader

    def current_term(self) -> int:
        return self.term

    def commit_index(self) -> int:
        return self.commit

    def noop_committed(self) -> bool:
        return self.leader and self.noop

    def voter_ids(self) -> frozenset[str]:
        return self.voters

    def leader_id(self) -> str | None:
        return self.leader_addr

    def send_to(self, node_id: str, message: dict[str, Any]) -> bool:
        self.sent.append((node_id, message))
        return True

    def heartbeat_now(self) -> None:
        self.heartbeats += 1


def _ack(rounds: ReadRounds, eng: FakeEngine, node: str, term: int, round_id: int) -> None:
    rounds.on_ack(eng, node, {"type": "next_node_idx", ECHO_KEY: (term, round_id)})


def _leader(voters: set[str], **kw: Any) -> tuple[ReadRounds, FakeEngine]:
    eng = FakeEngine(voters, **kw)
    rounds = ReadRounds()
    for v in voters:  # every member runs this build: its replies carry an echo
        _ack(rounds, eng, v, eng.term, 0)
    return rounds, eng


def test_a_round_is_confirmed_by_a_majority_echoing_its_round_and_term() -> None:
    rounds, eng = _leader({"a", "b", "c", "d"})  # five voters: the leader and two more
    f: Future[int] = Future()
    rounds.request(eng, f)
    assert eng.heartbeats == 1, "the round is sent at once, not at the next heartbeat"
    rid = rounds.round_id
    assert rounds.stamp({"type": "append_entries"})[ROUND_KEY] == rid
    eng.commit = 150  # the read index is the commit index at the start of the round
    _ack(rounds, eng, "a", 5, rid)
    assert not f.done()
    _ack(rounds, eng, "a", 5, rid)  # the same member twice is one vote
    assert not f.done()
    _ack(rounds, eng, "b", 5, rid + 0)
    assert f.result(timeout=0) == 100


def test_stale_round_responses_do_not_count() -> None:
    rounds, eng = _leader({"a", "b"})
    first: Future[int] = Future()
    rounds.request(eng, first)
    r1 = rounds.round_id
    _ack(rounds, eng, "a", 5, r1)
    assert first.result(timeout=0) == 100
    second: Future[int] = Future()
    rounds.request(eng, second)
    r2 = rounds.round_id
    assert r2 > r1
    # Replies to messages sent before round 2 started (they echo round 1, or none) never count.
    _ack(rounds, eng, "a", 5, r1)
    _ack(rounds, eng, "b", 5, r1)
    rounds.on_ack(eng, "a", {"type": "next_node_idx"})
    assert not second.done()
    _ack(rounds, eng, "b", 5, r2)
    assert second.result(timeout=0) == 100


def test_responses_of_another_term_do_not_count() -> None:
    rounds, eng = _leader({"a", "b"})
    f: Future[int] = Future()
    rounds.request(eng, f)
    rid = rounds.round_id
    _ack(rounds, eng, "a", 4, rid)  # a member that saw this round id from an earlier term
    _ack(rounds, eng, "b", 6, rid)  # ... or from a later one
    assert not f.done()
    _ack(rounds, eng, "b", 5, rid)
    assert f.done()


def test_non_voting_members_do_not_count_toward_the_majority() -> None:
    rounds, eng = _leader({"a", "b"})
    f: Future[int] = Future()
    rounds.request(eng, f)
    rid = rounds.round_id
    for learner in ("r1", "r2", "r3"):  # pysyncobj read-only nodes also reply to append_entries
        _ack(rounds, eng, learner, 5, rid)
    assert not f.done()
    _ack(rounds, eng, "a", 5, rid)
    assert f.result(timeout=0) == 100


def test_a_membership_change_during_the_round_needs_both_majorities() -> None:
    rounds, eng = _leader({"a", "b"})
    f: Future[int] = Future()
    rounds.request(eng, f)
    rid = rounds.round_id
    eng.voters = frozenset({"a", "b", "c", "d"})  # grew to five during the round
    _ack(rounds, eng, "a", 5, rid)
    assert not f.done(), "a majority of the old three is not one of the new five"
    _ack(rounds, eng, "b", 5, rid)
    assert f.done()


def test_one_member_needs_no_round_but_its_no_op_committed() -> None:
    eng = FakeEngine(set(), noop=False)
    rounds = ReadRounds()
    f: Future[int] = Future()
    rounds.request(eng, f)
    assert not f.done(), "no read index before the leader's no-op is committed"
    eng.noop, eng.commit = True, 101
    rounds.tick(eng)
    assert f.result(timeout=0) == 101
    assert eng.heartbeats == 0


def test_reads_arriving_during_a_round_wait_for_the_next_one() -> None:
    rounds, eng = _leader({"a", "b"})
    a: Future[int] = Future()
    b: Future[int] = Future()
    rounds.request(eng, a)
    r1 = rounds.round_id
    eng.commit = 120
    rounds.request(eng, b)
    assert rounds.round_id == r1
    _ack(rounds, eng, "a", 5, r1)
    assert a.result(timeout=0) == 100 and not b.done()
    assert rounds.round_id == r1 + 1 and eng.heartbeats == 2
    _ack(rounds, eng, "b", 5, r1 + 1)
    assert b.result(timeout=0) == 120


def test_a_leader_that_steps_down_or_changes_term_fails_its_reads() -> None:
    rounds, eng = _leader({"a", "b"})
    f: Future[int] = Future()
    rounds.request(eng, f)
    eng.leader, eng.leader_addr = False, "b"
    rounds.tick(eng)
    with pytest.raises(LeaderChanged):
        f.result(timeout=0)
    eng.leader, eng.term = True, 7  # leads again, in a later term: a reply of term 5 is useless
    g: Future[int] = Future()
    rounds.request(eng, g)
    for v in ("a", "b"):
        _ack(rounds, eng, v, 5, rounds.round_id)
    assert not g.done()
    eng.term = 8
    rounds.tick(eng)
    with pytest.raises(LeaderChanged):
        g.result(timeout=0)


def test_an_unconfirmed_round_times_out() -> None:
    rounds, eng = _leader({"a", "b"})
    rounds.round_timeout_s = 0.0
    f: Future[int] = Future()
    rounds.request(eng, f)
    rounds.tick(eng)
    with pytest.raises(LeaderChanged):
        f.result(timeout=0)


def test_a_follower_asks_its_leader_and_gets_index_and_term() -> None:
    eng = FakeEngine({"L", "x"}, leader=False)
    rounds = ReadRounds()
    rounds.on_append_entries("L", {"type": "append_entries", "term": 5, ROUND_KEY: 9})
    assert rounds.echo("L", {"type": "next_node_idx"})[ECHO_KEY] == (5, 9)
    f: Future[int] = Future()
    rounds.request(eng, f)
    [(to, req)] = eng.sent
    assert to == "L" and req["type"] == REQUEST
    rounds.on_response(eng, "x", {"type": RESPONSE, "request_id": req["request_id"],
                                  "index": 1, "term": 5})  # not from the leader asked
    assert not f.done()
    rounds.on_response(eng, "L", {"type": RESPONSE, "request_id": req["request_id"],
                                  "index": 321, "term": 5})
    assert f.result(timeout=0) == 321


def test_the_leader_answers_a_follower_after_its_round() -> None:
    rounds, eng = _leader({"a", "b"})
    rounds.on_request(eng, "a", {"type": REQUEST, "request_id": 3})
    _ack(rounds, eng, "b", 5, rounds.round_id)
    assert eng.sent == [("a", {"type": RESPONSE, "request_id": 3, "index": 100, "term": 5})]
    follower = FakeEngine({"a"}, leader=False)
    rounds2 = ReadRounds()
    rounds2.on_request(follower, "a", {"type": REQUEST, "request_id": 4})
    assert follower.sent[0][1]["error"] == NotLeader.reason


def test_a_follower_whose_leader_does_not_answer_fails_with_a_timeout() -> None:
    eng = FakeEngine({"L"}, leader=False)
    rounds = ReadRounds()
    rounds.on_append_entries("L", {"type": "append_entries", "term": 5, ROUND_KEY: 0})
    rounds.round_timeout_s = 0.0
    f: Future[int] = Future()
    rounds.request(eng, f)
    rounds.tick(eng)
    with pytest.raises(TimeoutError):
        f.result(timeout=0)
    g: Future[int] = Future()
    rounds.round_timeout_s = 60.0
    rounds.request(eng, g)
    eng.leader_addr = "M"  # a new leader: the request to the old one is over
    rounds.tick(eng)
    with pytest.raises(LeaderChanged):
        g.result(timeout=0)


def test_older_builds_fall_back_to_a_barrier() -> None:
    # A leader that does not stamp rounds (an older build): the follower asks nothing.
    eng = FakeEngine({"L"}, leader=False)
    rounds = ReadRounds()
    rounds.on_append_entries("L", {"type": "append_entries", "term": 5})
    f: Future[int] = Future()
    rounds.request(eng, f)
    assert not eng.sent
    with pytest.raises(ReadIndexUnsupported):
        f.result(timeout=0)
    # A leader whose voting majority replies without echoes (older followers) does no round.
    lead = FakeEngine({"a", "b"})
    rounds = ReadRounds()
    rounds.on_ack(lead, "a", {"type": "next_node_idx"})
    rounds.on_ack(lead, "b", {"type": "next_node_idx"})
    g: Future[int] = Future()
    rounds.request(lead, g)
    assert lead.heartbeats == 0
    barrier: Future[int] = Future()
    barrier.set_result(77)
    assert with_fallback(g, lambda: barrier).result(timeout=0) == 77
    # ... and a follower's request to it is answered so that the follower falls back too.
    rounds.on_request(lead, "a", {"type": REQUEST, "request_id": 1})
    answer = lead.sent[-1][1]
    follower = FakeEngine({"L"}, leader=False)
    fr = ReadRounds()
    fr.on_append_entries("L", {"type": "append_entries", "term": 5, ROUND_KEY: 0})
    h: Future[int] = Future()
    fr.request(follower, h)
    fr.on_response(follower, "L", {**answer, "request_id": follower.sent[0][1]["request_id"]})
    with pytest.raises(ReadIndexUnsupported):
        h.result(timeout=0)

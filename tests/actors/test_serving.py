"""The Raft actor's SERVING verdict is re-evaluated every tick (issue 7 item 2): a replica that
falls far behind the leader's commit index, or never caught up, says NOT_SERVING instead of
timing out every call; it serves again once within SERVING_RESUME_LAG."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gantry.actors import raft
from gantry.actors.raft import SERVING_MAX_LAG, SERVING_RESUME_LAG, RaftActor
from gantry.actors.writer import EntryQueue
from gantry.config import Config


class _Engine:
    """The three figures the verdict reads from pysyncobj."""

    def __init__(self) -> None:
        self.raftLastApplied = 0
        self.commit = 0

    def leader_commit_index(self) -> int:
        return self.commit

    def noop_index(self) -> int:
        return 1


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(raft.time, "monotonic", lambda: now[0])
    return now


def _verdict(actor: RaftActor, s: Any) -> bool:
    serving = actor._caught_up_now(s, "127.0.0.1:1")  # a follower's view of leader :1
    actor._serving = serving
    return serving


def test_serving_follows_the_lag_both_ways(clock: list[float]) -> None:
    actor = RaftActor(Config(), EntryQueue(), None, None, None, lambda _s: None)  # type: ignore[arg-type]
    s = _Engine()
    s.commit, s.raftLastApplied = 5000, 10  # joined far behind: not serving
    assert not _verdict(actor, s)
    s.raftLastApplied = 5000 - SERVING_RESUME_LAG
    assert _verdict(actor, s)
    # Falls behind for good (a stuck replica): still serving within an election timeout, then not.
    s.commit = s.raftLastApplied + SERVING_MAX_LAG + 1
    assert _verdict(actor, s)
    for t in itertools.count():
        clock[0] += 0.1
        if not _verdict(actor, s):
            break
        assert t < 100
    assert clock[0] - 1000.0 > Config().raft_max_timeout_s
    s.raftLastApplied = s.commit
    assert _verdict(actor, s)

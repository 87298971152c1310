"""The durable Raft log: records survive reopen, a torn tail is dropped, compaction is atomic,
term and vote are persisted synchronously, and sync() fsyncs only when something changed."""

from __future__ import annotations

import os
import pathlib

from gantry.journal import DurableJournal


def _entries(j: DurableJournal) -> list[tuple[bytes, int, int]]:
    return [j[i] for i in range(len(j))]


def test_entries_survive_reopen(tmp_path: pathlib.Path) -> None:
    p = str(tmp_path / "raft.log")
    j = DurableJournal(p)
    for i in range(1, 101):
        j.add(b"cmd-%d" % i, i, 1 + i // 50)
    assert j.sync() is True
    assert j.sync() is False  # nothing new: no second fsync
    want = _entries(j)
    j._destroy()
    assert _entries(DurableJournal(p)) == want


def test_torn_tail_is_truncated(tmp_path: pathlib.Path) -> None:
    p = str(tmp_path / "raft.log")
    j = DurableJournal(p)
    for i in range(1, 11):
        j.add(b"x" * 100, i, 1)
    j._destroy()
    size = os.path.getsize(p)
    with open(p, "r+b") as f:  # a crash halfway through writing the last record
        f.truncate(size - 50)
    j2 = DurableJournal(p)
    assert [e[1] for e in _entries(j2)] == list(range(1, 10))
    j2.add(b"y", 10, 2)
    j2._destroy()
    assert [e[1:] for e in _entries(DurableJournal(p))][-1] == (10, 2)


def test_corrupt_record_stops_the_log_there(tmp_path: pathlib.Path) -> None:
    p = str(tmp_path / "raft.log")
    j = DurableJournal(p)
    for i in range(1, 6):
        j.add(b"abcdef", i, 1)
    off = j._offsets[3]
    j._destroy()
    with open(p, "r+b") as f:
        f.seek(off + 25)
        f.write(b"\xff")
    assert [e[1] for e in _entries(DurableJournal(p))] == [1, 2, 3]


def test_delete_from_and_to(tmp_path: pathlib.Path) -> None:
    p = str(tmp_path / "raft.log")
    j = DurableJournal(p)
    for i in range(1, 21):
        j.add(b"c%d" % i, i, 1)
    j.deleteEntriesFrom(15)  # follower drops a conflicting suffix: keeps indexes 1..15
    j.add(b"new", 16, 2)
    j.deleteEntriesTo(10)  # compaction: keeps list positions ≥ 10 → indexes 11..16
    assert [e[1] for e in _entries(j)] == [11, 12, 13, 14, 15, 16]
    j.add(b"after", 17, 2)
    j._destroy()
    reopened = DurableJournal(p)
    assert [e[1] for e in _entries(reopened)] == [11, 12, 13, 14, 15, 16, 17]
    assert reopened[5] == (b"new", 16, 2)
    assert not os.path.exists(p + ".compact")


def test_term_and_vote_persist_immediately(tmp_path: pathlib.Path) -> None:
    p = str(tmp_path / "raft.log")
    j = DurableJournal(p)
    j.setCurrentTerm(7, "127.0.0.1:7001")
    # No _destroy(): a crash right after voting must still remember the vote.
    j2 = DurableJournal(p)
    assert (j2.getCurrentTerm(), j2.getVotedForNodeId()) == (7, "127.0.0.1:7001")
    j.setRaftCommitIndex(42)
    j.onOneSecondTimer()
    assert DurableJournal(p).getRaftCommitIndex() == 42

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


def _fill(j: DurableJournal, n: int, term: int = 1) -> None:
    for i in range(1, n + 1):
        j.add(b"\x00c%d" % i, i, term)


def test_resent_matching_entries_do_not_shrink_the_log(tmp_path: pathlib.Path) -> None:
    p = str(tmp_path / "raft.log")
    j = DurableJournal(p)
    _fill(j, 10)
    j.sync()
    # pysyncobj: a leader resends from index 6 with only entries 6..7 in this batch.
    j.deleteEntriesFrom(5)
    j.add(b"\x00c6", 6, 1)
    j.add(b"\x00c7", 7, 1)
    assert len(j) == 10  # 8..10 match the leader as far as anyone knows: kept, as Raft §5.3 says
    assert j.conflicts == 0
    j._destroy()
    assert len(DurableJournal(p)) == 10


def test_conflicting_entry_truncates_from_there(tmp_path: pathlib.Path) -> None:
    j = DurableJournal(str(tmp_path / "raft.log"))
    _fill(j, 10)
    j.deleteEntriesFrom(5)
    j.add(b"\x00c6", 6, 1)
    j.add(b"\x00other", 7, 2)  # same index, newer term: conflict
    assert [e[1] for e in _entries(j)] == [1, 2, 3, 4, 5, 6, 7]
    assert j[6] == (b"\x00other", 7, 2)
    assert j.conflicts == 1


def test_membership_entry_in_kept_tail_is_truncated(tmp_path: pathlib.Path) -> None:
    j = DurableJournal(str(tmp_path / "raft.log"))
    _fill(j, 6)
    j.add(b"\x02membership", 7, 1)
    j.deleteEntriesFrom(5)  # pysyncobj already rolled back the membership change in memory
    j.add(b"\x00c6", 6, 1)
    assert len(j) == 6  # so the log drops it too, matching pysyncobj's view

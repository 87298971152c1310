"""The durable Raft log: records survive reopen, a torn tail is dropped (a copy kept), damage
before the end is refused and never rewritten (repair_log cuts it explicitly, keeping a copy),
a damaged meta file is refused, compaction is atomic, term and vote are persisted synchronously,
and sync() fsyncs only when something changed."""

from __future__ import annotations

import os
import pathlib
import struct

import pytest

from gantry.consensus import journal as journal_mod
from gantry.consensus.journal import DurableJournal, LogCorrupt, MetaCorrupt, repair_log, scan_log


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
    torn = pathlib.Path(p).read_bytes()[j._offsets[9]:]
    j2 = DurableJournal(p)
    assert [e[1] for e in _entries(j2)] == list(range(1, 10))
    assert _torn_copies(tmp_path) == [torn]  # what was dropped is kept beside the log
    j2.add(b"y", 10, 2)
    j2._destroy()
    assert [e[1:] for e in _entries(DurableJournal(p))][-1] == (10, 2)


def _five(tmp_path: pathlib.Path) -> tuple[str, list[int]]:
    p = str(tmp_path / "raft.log")
    j = DurableJournal(p)
    for i in range(1, 6):
        j.add(b"abcdef", i, 1)
    offsets = list(j._offsets)
    j._destroy()
    return p, offsets


def _damage(p: str, offset: int, data: bytes) -> bytes:
    with open(p, "r+b") as f:
        f.seek(offset)
        f.write(data)
    return pathlib.Path(p).read_bytes()


def test_corrupt_record_in_the_middle_refuses_and_leaves_the_file_alone(
        tmp_path: pathlib.Path) -> None:
    p, offsets = _five(tmp_path)
    before = _damage(p, offsets[3] + 25, b"\xff")  # a byte of record 4; record 5 is intact
    with pytest.raises(LogCorrupt) as e:
        DurableJournal(p)
    assert pathlib.Path(p).read_bytes() == before  # never rewritten by an open
    msg = str(e.value)
    assert f"damaged at byte {offsets[3]} " in msg and "last good record before it is log index 3" in msg
    assert "1 valid-looking record(s) follow it (log index 5)" in msg
    assert "gantry repair-log --data-dir" in msg and "remove-node" in msg
    assert e.value.scan.later == [(offsets[4], 5, 1)]


def test_garbage_length_in_the_middle_is_corruption_not_a_torn_tail(tmp_path: pathlib.Path) -> None:
    # A huge length makes record 2 look incomplete, as a torn tail would: the records after it
    # give it away.
    p, offsets = _five(tmp_path)
    before = _damage(p, offsets[1], struct.pack("<I", 2**31))
    scan = scan_log(p)
    assert (scan.damage, scan.last_index, [r[1] for r in scan.later]) == ("corrupt", 1, [3, 4, 5])
    with pytest.raises(LogCorrupt):
        DurableJournal(p)
    assert pathlib.Path(p).read_bytes() == before


def test_damaged_record_followed_by_other_bytes_is_corruption(tmp_path: pathlib.Path) -> None:
    p, offsets = _five(tmp_path)
    size = os.path.getsize(p)
    before = _damage(p, offsets[3] + 25, b"\xff")
    before = _damage(p, offsets[4], b"\x01" * (size - offsets[4]))  # and record 5 is garbage
    assert scan_log(p).damage == "corrupt" and scan_log(p).later == []
    with pytest.raises(LogCorrupt):
        DurableJournal(p)
    assert pathlib.Path(p).read_bytes() == before


def _torn_copies(tmp_path: pathlib.Path) -> list[bytes]:
    return [q.read_bytes() for q in sorted(tmp_path.glob("raft.log.torn-*"))]


def test_bad_last_record_is_a_torn_tail_and_a_copy_is_kept(tmp_path: pathlib.Path) -> None:
    p, offsets = _five(tmp_path)
    before = _damage(p, offsets[4] + 25, b"\xff")  # complete, bad checksum, last in the file
    j = DurableJournal(p)
    assert [e[1] for e in _entries(j)] == [1, 2, 3, 4]
    assert os.path.getsize(p) == offsets[4]
    assert _torn_copies(tmp_path) == [before[offsets[4]:]]


def test_zero_filled_tail_is_torn(tmp_path: pathlib.Path) -> None:
    p, offsets = _five(tmp_path)
    size = os.path.getsize(p)
    with open(p, "ab") as f:  # blocks allocated by the file system but never written
        f.write(bytes(4096))
    assert [e[1] for e in _entries(DurableJournal(p))] == [1, 2, 3, 4, 5]
    assert os.path.getsize(p) == size and _torn_copies(tmp_path) == [bytes(4096)]


def test_repair_log_keeps_the_whole_log_and_cuts_at_the_damage(tmp_path: pathlib.Path) -> None:
    p, offsets = _five(tmp_path)
    before = _damage(p, offsets[2] + 25, b"\xff")
    r = repair_log(p)
    assert pathlib.Path(r.backup).read_bytes() == before
    assert r.backup.startswith(p + ".corrupt-")
    assert r.dropped_bytes == len(before) - offsets[2] and [x[1] for x in r.scan.later] == [4, 5]
    assert [e[1] for e in _entries(DurableJournal(p))] == [1, 2]
    assert repair_log(p).backup == ""  # intact now: nothing to do, no second copy
    assert len(list(tmp_path.glob("raft.log.corrupt-*"))) == 1


@pytest.mark.parametrize("content", [
    b"\x00\x13garbage", b"", b'{"currentTerm": 3', b"[3, null]", b'{"currentTerm": "three"}',
    b'{"currentTerm": 3, "votedForNodeId": 7}', b'{"currentTerm": -1}', b'{"term": 3}',
])
def test_damaged_meta_refuses_instead_of_forgetting_the_vote(
        tmp_path: pathlib.Path, content: bytes) -> None:
    p = str(tmp_path / "raft.log")
    DurableJournal(p)._destroy()
    pathlib.Path(p + ".meta").write_bytes(content)
    with pytest.raises(MetaCorrupt) as e:
        DurableJournal(p)
    assert str(e.value).startswith(f"Raft metadata {p}.meta ") and "vote twice" in str(e.value)
    assert pathlib.Path(p + ".meta").read_bytes() == content


def test_missing_meta_is_a_fresh_node(tmp_path: pathlib.Path) -> None:
    j = DurableJournal(str(tmp_path / "raft.log"))
    assert (j.getCurrentTerm(), j.getVotedForNodeId(), j.getRaftCommitIndex()) == (0, None, 1)


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


def test_membership_entry_in_kept_tail_is_kept_and_handed_back(tmp_path: pathlib.Path) -> None:
    j = DurableJournal(str(tmp_path / "raft.log"))
    _fill(j, 6)
    j.add(b"\x02membership", 7, 1)
    j.add(b"\x00c8", 8, 1)
    j.deleteEntriesFrom(5)  # pysyncobj already rolled back the membership change in memory
    j.add(b"\x00c6", 6, 1)
    assert len(j) == 8  # the matching tail stays (it used to be cut at 6)
    assert j.take_kept_membership() == [b"\x02membership"]  # for the engine to apply again
    assert j.take_kept_membership() == []


def test_an_unchanged_commit_index_is_not_stored_again(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower is told the commit index on every heartbeat; an idle node must not rewrite
    and fsync ``raft.log.meta`` (and its directory) once a second for the same value."""
    p = str(tmp_path / "raft.log")
    j = DurableJournal(p)
    stores: list[object] = []
    real = journal_mod.store_meta

    def counting(meta_path: str, meta: dict[str, object]) -> None:
        stores.append(meta.get("raftCommitIndex"))
        real(meta_path, meta)

    monkeypatch.setattr(journal_mod, "store_meta", counting)
    j.setRaftCommitIndex(42)
    j.onOneSecondTimer()
    assert stores == [42]
    for _ in range(5):  # heartbeats of an idle cluster: same commit index, five seconds
        j.setRaftCommitIndex(42)
        j.onOneSecondTimer()
    assert stores == [42]
    j.setRaftCommitIndex(43)
    j.onOneSecondTimer()
    j._destroy()
    assert stores == [42, 43]
    assert DurableJournal(p).getRaftCommitIndex() == 43

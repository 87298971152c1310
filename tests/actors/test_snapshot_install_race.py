"""A follower's own snapshot in progress and the leader's snapshot arriving (pysyncobj_compat
override 16): the leader's file stays the dump, the own attempt fails, and what is installed —
the Raft position and the database — comes from one file.

The CI fault campaign of 2026-12-03 found a follower whose reads missed 80 acknowledged buckets
for good: it had installed the leader's Raft position (log index P) from the leader's snapshot
but restored its own older database (index X < P), renamed over the dump by its own snapshot
thread in between; the entries X+1..P were never applied. These tests drive the Raft actor's
snapshot hooks the way pysyncobj calls them, on real SQLite files and a real writer actor.
"""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Any

import pytest
from pysyncobj import SERIALIZER_STATE

import gantry.actors.raft as raft_module
from gantry.actors.raft import RaftActor
from gantry.actors.writer import EntryQueue, PendingSnapshot, WriterActor
from gantry.config import Config
from gantry.consensus.proposals import Proposals
from gantry.db import Watermark, open_ro, open_rw
from gantry.state import commands, migrate, snapshot, statemachine
from tests.support import damage_table, free_ports, wait_until

REGULAR, NO_OP = b"\x00", b"\x01"


class _Node:
    def __init__(self, addr: str) -> None:
        self.id = addr


class _Engine:
    """What the Raft actor's deserializer reads of the engine while pysyncobj loads a dump."""

    def __init__(self) -> None:
        self.loading_from_leader = True
        self._last_index = 0


def _meta(index: int, last_kind: bytes = REGULAR, prev_kind: bytes = REGULAR) -> tuple[Any, Any, Any]:
    return ((last_kind + b"x", index, 1), (prev_kind + b"x", index - 1, 1), {_Node("127.0.0.1:1")})


def _database(path: pathlib.Path, buckets: int) -> None:
    """A Gantry database that applied ``buckets`` CreateBucket entries at log indexes 1..n."""
    migrate.upgrade(path)
    conn = open_rw(path)
    try:
        statemachine.apply_batch(conn, [(i, commands.encode(commands.create_bucket(f"b{i}")), 1)
                                        for i in range(1, buckets + 1)])
    finally:
        conn.close()


def _snapshot_file(tmp: pathlib.Path, name: str, buckets: int, meta: tuple[Any, Any, Any]) -> pathlib.Path:
    """A snapshot file (as a leader builds it) of a database at log index ``buckets``."""
    src = tmp / f"{name}.db"
    _database(src, buckets)
    out = tmp / f"{name}.snapshot"
    conn = open_ro(src)
    try:
        conn.execute("BEGIN")
        snapshot.write(conn, out, snapshot.encode_meta(meta))
    finally:
        conn.close()
    return out


def _bucket_names(path: pathlib.Path) -> set[str]:
    conn = open_ro(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM buckets")}
    finally:
        conn.close()


@pytest.fixture()
def node(tmp_path: pathlib.Path) -> Any:
    """A writer on a database at log index 5 and a Raft actor (not started) beside it."""
    db_path = tmp_path / "data" / "gantry.db"
    db_path.parent.mkdir()
    _database(db_path, 5)
    queue, proposals = EntryQueue(), Proposals()
    watermark = Watermark(5)
    writer = WriterActor.start(db_path, queue, watermark, proposals, lambda _r: None)
    try:
        actor = RaftActor(Config(data_dir=db_path.parent), queue, writer, proposals, watermark,
                          lambda _s: None)
        actor._dump_path = str(db_path.parent / "raft.snapshot")
        yield actor, db_path, watermark
    finally:
        writer.stop()


def _install_from_leader(actor: RaftActor, leader_file: pathlib.Path) -> tuple[Any, Any, Any]:
    """What pysyncobj does with the leader's last chunk: override 16's hook, then the rename of
    the received file over the dump, then the load (deserializer) with the provenance flag."""
    sync = actor._sync
    actor._sync = _Engine()  # type: ignore[assignment]
    try:
        actor._snapshot_arriving()
        os.replace(leader_file, actor._dump_path)
        return actor._deserialize(actor._dump_path)
    finally:
        actor._sync = sync


def test_own_snapshot_pinned_before_the_leaders_arrives_never_replaces_it(node: Any,
                                                                          tmp_path: pathlib.Path) -> None:
    actor, db_path, watermark = node
    # This node starts its own snapshot at index 5; the writer pins it.
    actor._serialize(actor._dump_path + ".tmp", _meta(5))
    request = actor._pending_snapshot
    assert request is not None and request.ready.wait(10)
    # The leader's snapshot at index 9 arrives before the checker started the copy.
    leader_file = _snapshot_file(tmp_path, "leader", 9, _meta(9))
    meta = _install_from_leader(actor, leader_file)
    assert meta[0][1] == 9
    # Before the fix the checker copied the pinned state (index 5) over the dump and reported
    # SUCCESS: pysyncobj compacted to index 4 while the dump held index 5, not the leader's 9.
    state = wait_until(lambda: (st := actor._serialize_checker()) != SERIALIZER_STATE.SERIALIZING
                       and st, 20, 0.01, "own snapshot attempt ended")
    assert state == SERIALIZER_STATE.FAILED
    meta_json, applied = snapshot.read_meta(pathlib.Path(actor._dump_path))
    assert (snapshot.decode_meta(meta_json, _Node)[0][1], applied) == (9, 9)
    wait_until(lambda: watermark.value == 9, 20, 0.01, "the leader's snapshot restored")
    assert _bucket_names(db_path) == {f"b{i}" for i in range(1, 10)}
    assert actor._serialize_checker() == SERIALIZER_STATE.NOT_SERIALIZING


def test_own_snapshot_finished_but_not_reported_is_not_reported_as_success(
        node: Any, tmp_path: pathlib.Path) -> None:
    actor, _db_path, watermark = node
    actor._serialize(actor._dump_path + ".tmp", _meta(5))
    request = actor._pending_snapshot
    assert request is not None and request.ready.wait(10)
    assert actor._serialize_checker() == SERIALIZER_STATE.SERIALIZING  # the copy starts
    pending = request.pending
    assert pending is not None and pending.done.wait(20) and pending.error is None
    # The copy is renamed over the dump; before pysyncobj's next check the leader's arrives.
    meta = _install_from_leader(actor, _snapshot_file(tmp_path, "leader", 9, _meta(9)))
    assert meta[0][1] == 9
    # SUCCESS would make pysyncobj compact its new log (from the leader's index) to index 4.
    assert actor._serialize_checker() == SERIALIZER_STATE.FAILED
    meta_json, applied = snapshot.read_meta(pathlib.Path(actor._dump_path))
    assert (snapshot.decode_meta(meta_json, _Node)[0][1], applied) == (9, 9)
    wait_until(lambda: watermark.value == 9, 20, 0.01, "the leader's snapshot restored")


def test_own_snapshot_being_copied_drops_its_copy(tmp_path: pathlib.Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The copy is under way when the leader's file is renamed over the dump: the copy finishes
    # but is deleted, not renamed, and the attempt fails.
    src = tmp_path / "gantry.db"
    _database(src, 5)
    dest = tmp_path / "raft.snapshot"
    leader_file = _snapshot_file(tmp_path, "leader", 9, _meta(9))
    conn = open_ro(src)
    conn.execute("BEGIN")
    statemachine.applied_index(conn)
    pending = PendingSnapshot(conn, 5, 5, snapshot.encode_meta(_meta(5)))
    started, go = threading.Event(), threading.Event()
    real_write = snapshot.write

    def slow_write(*args: Any) -> dict[str, int]:  # the copy takes a while
        started.set()
        go.wait(10)
        return real_write(*args)

    errors: list[BaseException] = []

    def build() -> None:
        try:
            pending.build(dest)
        except BaseException as e:  # noqa: BLE001 - reported through pending.error too
            errors.append(e)

    monkeypatch.setattr(snapshot, "write", slow_write)
    t = threading.Thread(target=build, daemon=True)
    t.start()
    try:
        assert started.wait(10)
        pending.supersede()
        os.replace(leader_file, dest)
    finally:
        go.set()
        t.join(10)
    assert pending.done.is_set()
    assert isinstance(pending.error, snapshot.SnapshotSuperseded) and errors
    meta_json, applied = snapshot.read_meta(dest)
    assert (snapshot.decode_meta(meta_json, _Node)[0][1], applied) == (9, 9)
    assert not list(tmp_path.glob("*.building"))


def test_metadata_and_database_come_from_one_file(node: Any, tmp_path: pathlib.Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    actor, db_path, watermark = node
    leader_file = _snapshot_file(tmp_path, "leader", 9, _meta(9))
    own_file = _snapshot_file(tmp_path, "own", 7, _meta(7))
    real_fsync = raft_module.fsync_file

    def fsync_then_replaced(path: Any) -> None:
        # Another thread renames a snapshot over the dump while the deserializer works (before
        # override 16, this node's own snapshot thread could): whatever it reads must be one
        # file's metadata and database.
        real_fsync(path)
        if own_file.exists():
            os.replace(own_file, actor._dump_path)

    monkeypatch.setattr(raft_module, "fsync_file", fsync_then_replaced)
    meta = _install_from_leader(actor, leader_file)
    installed = int(meta[0][1])
    wait_until(lambda: watermark.value == installed, 20, 0.01, "the snapshot restored")
    # Before the fix: the metadata said 9 (the leader's), the database restored was at 7, and
    # entries 8 and 9 were never applied on this node.
    assert installed == 7
    assert _bucket_names(db_path) == {f"b{i}" for i in range(1, installed + 1)}


@pytest.mark.parametrize(("meta", "content", "ok"), [
    (_meta(9), 9, True),
    (_meta(9), 10, True),  # the database ahead (entries replayed after a restart)
    (_meta(9, last_kind=NO_OP), 8, True),  # behind only across a no-op
    (_meta(9, last_kind=NO_OP, prev_kind=NO_OP), 7, True),
    (_meta(9), 7, False),  # a Gantry entry at 9 the database never applied
    (_meta(9, last_kind=NO_OP), 7, False),  # the Gantry entry at 8
])
def test_a_snapshot_older_than_its_metadata_is_refused(node: Any, tmp_path: pathlib.Path,
                                                       meta: Any, content: int, ok: bool) -> None:
    actor, _db_path, watermark = node
    leader_file = _snapshot_file(tmp_path, "leader", content, meta)
    if ok:
        assert _install_from_leader(actor, leader_file)[0][1] == 9
        return
    with pytest.raises(snapshot.SnapshotError, match="mixes two snapshots"):
        _install_from_leader(actor, leader_file)
    assert not list(pathlib.Path(actor._dump_path).parent.glob("restore-*.db"))
    assert watermark.value == 5


# -- override 17 and the serializer's error paths (found by a code audit, 2026-12-03) --


def _own_dump(actor: RaftActor, tmp_path: pathlib.Path) -> None:
    """This node's own dump: a snapshot at (3, 4)."""
    os.replace(_snapshot_file(tmp_path, "own", 4, ((REGULAR + b"x", 4, 1), (REGULAR + b"x", 3, 1),
                                                    {_Node("127.0.0.1:1")})), actor._dump_path)


def _journal(data: pathlib.Path, indexes: range, term: Any = lambda _i: 1, current_term: int = 1,
             commit: int | None = None) -> Any:
    """This node's Raft log: a real DurableJournal in ``data`` holding Gantry entries at
    ``indexes`` (of ``term(index)``; those of another term than 1 a deposed leader's tail)."""
    from gantry.consensus.journal import DurableJournal

    journal = DurableJournal(str(data / "raft.log"))
    for i in indexes:
        journal.add(REGULAR + (b"x" if term(i) == 1 else b"stale"), i, term(i))
    journal.setCurrentTerm(current_term, None)
    if commit is not None:
        journal.setRaftCommitIndex(commit)
        journal.sync()
    return journal


def _follower(actor: RaftActor, tmp_path: pathlib.Path,
              term: Any = lambda _i: 1) -> tuple[Any, Any, list[Any], str]:
    """``actor`` as a follower wired to a real engine: its own dump at (3, 4), its log 3..12
    (entries of ``term(index)``), term 2, committed to 5. Returns (journal, engine, the messages
    it sends, the leader's Raft address)."""
    data = pathlib.Path(actor._dump_path).parent
    _own_dump(actor, tmp_path)
    journal = _journal(data, range(3, 13), term=term, current_term=2, commit=5)
    engine, sent, (leader, _other) = _engine(actor, data, journal)
    actor._sync = engine
    return journal, engine, sent, leader


def _leader_with_old_dump(node: Any, tmp_path: pathlib.Path) -> tuple[Any, Any, Any]:
    """An engine whose dump is a snapshot at index 3 and whose log holds 2..5: (engine, journal,
    the node of one member, as pysyncobj keys transfers)."""
    from pysyncobj.node import TCPNode

    actor, db_path, _watermark = node
    os.replace(_snapshot_file(tmp_path, "old", 3, _meta(3)), actor._dump_path)
    journal = _journal(db_path.parent, range(2, 6))
    engine, _sent, (address, _other) = _engine(actor, db_path.parent, journal)
    return engine, journal, TCPNode(address)


def _engine(actor: RaftActor, data: pathlib.Path, journal: Any,
            peers: int = 2) -> tuple[Any, list[Any], list[str]]:
    """A real GantrySyncObj (no tick thread) wired to ``actor``'s snapshot hooks, whose
    transport only records what it would send; returns (engine, sent messages, peer addrs)."""
    from pysyncobj import SyncObjConf

    from gantry.actors.raft import GantrySyncObj

    me, *others = (f"127.0.0.1:{p}" for p in free_ports(peers + 1))
    conf = SyncObjConf(autoTick=False, fullDumpFile=actor._dump_path, serializer=actor._serialize,
                       deserializer=actor._deserialize, serializeChecker=actor._serialize_checker,
                       dynamicMembershipChange=True)
    engine = GantrySyncObj(me, others, conf, actor._on_entry, journal, actor._snapshot_arriving)
    sent: list[Any] = []

    def send(_node: Any, message: Any) -> bool:
        sent.append(message)
        return True

    engine._SyncObj__transport.send = send
    return engine, sent, others


def test_a_leader_snapshot_that_fails_to_load_is_not_acknowledged(node: Any, tmp_path: pathlib.Path) -> None:
    from gantry import preflight

    actor, db_path, watermark = node
    data = db_path.parent
    # This follower: log 3..12 (3..5 committed at term 1, 6..12 a deposed leader's tail at term
    # 2, never committed), its own dump at (3, 4).
    journal, engine, sent, leader = _follower(actor, tmp_path, term=lambda i: 1 if i < 6 else 2)
    try:
        # The leader's file is refused (its database older than its metadata: a leader on a
        # build before override 16).
        _send_snapshot(engine, leader, _snapshot_file(tmp_path, "leader", 15, _meta(20)).read_bytes())
        # Before the fix pysyncobj answered success with next_node_idx 13: the leader took the
        # stale tail 6..12 as this follower's copy and could commit its own 6..12 on it.
        replies = [m for m in sent if m.get("type") == "next_node_idx"]
        assert replies and not any(m["success"] for m in replies), replies
        assert [e[1] for e in journal[:]] == list(range(3, 13))
        assert engine.raftCommitIndex == 5
        # The dump is this node's own again (it was left the refused file: a restart refused).
        meta_json, applied = snapshot.read_meta(pathlib.Path(actor._dump_path))
        assert (snapshot.decode_meta(meta_json, _Node)[0][1], applied) == (4, 4)
        assert not list(data.glob("raft.snapshot.*"))
        assert watermark.value == 5
    finally:
        actor._sync = None
        engine._SyncObj__transport.destroy()
        journal._destroy()
    preflight.check(Config(data_dir=data))


def test_a_damaged_leader_snapshot_is_refused_before_it_is_used(node: Any,
                                                                 tmp_path: pathlib.Path) -> None:
    """Bit rot in the leader's dump (header and metadata intact): the follower installed it,
    restored it as its database and served INTERNAL on reads (a new-user trial)."""
    actor, _db_path, watermark = node
    journal, engine, sent, leader = _follower(actor, tmp_path)
    try:
        damaged = _snapshot_file(tmp_path, "leader", 300, _meta(300))
        damage_table(damaged)
        _send_snapshot(engine, leader, damaged.read_bytes())
        replies = [m for m in sent if m.get("type") == "next_node_idx"]
        assert replies and not any(m["success"] for m in replies), replies
        assert [e[1] for e in journal[:]] == list(range(3, 13))  # the log stays
        meta_json, applied = snapshot.read_meta(pathlib.Path(actor._dump_path))
        assert applied == 4  # the dump is this node's own again
        assert watermark.value == 5
    finally:
        actor._sync = None
        engine._SyncObj__transport.destroy()
        journal._destroy()


def test_a_serializer_error_does_not_stop_later_snapshots(node: Any, tmp_path: pathlib.Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from pysyncobj.serializer import Serializer

    actor, _db_path, _watermark = node
    os.replace(_snapshot_file(tmp_path, "own", 4, _meta(4)), actor._dump_path)
    ser = Serializer(actor._dump_path, 2 ** 16, False, actor._serialize, actor._deserialize,
                     actor._serialize_checker)
    real_link = os.link

    def link_enospc(*_a: Any, **_k: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", link_enospc)
    ser.serialize((None,) + _meta(5), 4)
    monkeypatch.setattr(os, "link", real_link)  # the disk has room again
    # Before the fix the checker said NOT_SERIALIZING for good and pysyncobj's serializer stayed
    # busy: no snapshot was taken or sent again until a restart.
    assert ser.checkSerializing()[0] == SERIALIZER_STATE.FAILED
    ser.serialize((None,) + _meta(5), 4)
    state = wait_until(lambda: (st := ser.checkSerializing()[0]) != SERIALIZER_STATE.SERIALIZING
                       and st, 20, 0.01, "the next snapshot")
    assert state == SERIALIZER_STATE.SUCCESS
    assert snapshot.decode_meta(snapshot.read_meta(pathlib.Path(actor._dump_path))[0], _Node)[0][1] == 5


def test_a_snapshot_success_restarts_transfers_with_the_new_file(node: Any, tmp_path: pathlib.Path) -> None:
    actor, _db_path, _watermark = node
    engine, journal, follower = _leader_with_old_dump(node, tmp_path)
    actor._sync = engine
    ser = engine._SyncObj__serializer
    try:
        first = ser.getTransmissionData(follower)  # a transfer of the old snapshot (index 3)
        assert first is not None and first[1] and not first[2]
        ser.serialize((None,) + _meta(5), 4)  # this node's own snapshot at 5
        state = wait_until(lambda: (st := ser.checkSerializing()[0]) != SERIALIZER_STATE.SERIALIZING
                           and st, 20, 0.01, "own snapshot")
        assert state == SERIALIZER_STATE.SUCCESS
        # Before the fix the transfer went on with the old file (index 3), after which the leader
        # expected the follower at 6 and had to send it the new snapshot as well.
        again = ser.getTransmissionData(follower)
        assert again is not None and again[1], "the transfer starts over"
        blob = again[0]
        while not (d := ser.getTransmissionData(follower))[2]:
            blob += d[0]
        got = tmp_path / "received.db"
        got.write_bytes(blob)
        assert snapshot.decode_meta(snapshot.read_meta(got)[0], _Node)[0][1] == 5
    finally:
        actor._sync = None
        engine._SyncObj__transport.destroy()
        journal._destroy()


def test_a_snapshot_the_log_no_longer_holds_does_not_compact(node: Any) -> None:

    actor, db_path, _watermark = node
    data = db_path.parent
    journal = _journal(data, range(2, 5))  # the log ends at 4 (truncated); the snapshot: (4, 5)
    engine, _sent, _peers = _engine(actor, data, journal)
    actor._sync = engine
    try:
        actor._serialize(actor._dump_path + ".tmp", _meta(5))
        state = wait_until(lambda: (st := actor._serialize_checker()) != SERIALIZER_STATE.SERIALIZING
                           and st, 20, 0.01, "own snapshot")
        # SUCCESS would have pysyncobj compact to index 4, past the end: an empty raft.log.
        assert state == SERIALIZER_STATE.FAILED
    finally:
        actor._sync = None
        engine._SyncObj__transport.destroy()
        journal._destroy()


def test_the_journal_never_compacts_to_nothing(tmp_path: pathlib.Path) -> None:
    from gantry.consensus.journal import DurableJournal

    journal = DurableJournal(str(tmp_path / "raft.log"))
    for i in range(1, 4):
        journal.add(NO_OP, i, 1)
    journal.deleteEntriesTo(3)
    assert [e[1] for e in journal[:]] == [1, 2, 3]
    journal.deleteEntriesTo(2)
    assert [e[1] for e in journal[:]] == [3]
    journal._destroy()
    assert [e[1] for e in DurableJournal(str(tmp_path / "raft.log"))[:]] == [3]


def test_a_snapshot_transfer_never_spans_two_connections(node: Any, tmp_path: pathlib.Path) -> None:
    """Override 18: chunks lost with a dead connection must not leave a hole in the file."""
    engine, journal, peer = _leader_with_old_dump(node, tmp_path)
    ser = engine._SyncObj__serializer
    try:
        # Leader side: the connection drops mid-transfer; the next chunk is a first chunk again.
        assert ser.getTransmissionData(peer)[1]
        assert not ser.getTransmissionData(peer)[1]
        engine._SyncObj__onNodeDisconnected(peer)
        assert ser.getTransmissionData(peer)[1], "the transfer starts over"
        # Follower side: a chunk after a reconnection, without a first chunk, is dropped.
        def received() -> int:  # bytes in the incoming file (buffered writes included)
            f = ser._Serializer__incomingTransmissionFile
            return -1 if f is None else int(f.tell())

        first = {"type": "append_entries", "term": 2, "commit_index": 5,
                 "serialized": (b"a" * 100, True, False)}
        middle = {**first, "serialized": (b"b" * 100, False, False)}
        engine._SyncObj__onMessageReceived(peer, first)
        engine._SyncObj__onMessageReceived(peer, middle)
        assert received() == 200
        engine._SyncObj__onNodeDisconnected(peer)
        engine._SyncObj__onMessageReceived(peer, middle)
        assert received() == 200, "a chunk after the hole went into the file"
    finally:
        engine._SyncObj__transport.destroy()
        journal._destroy()


def test_a_removed_member_added_back_gets_its_snapshot_from_the_first_chunk(
        node: Any, tmp_path: pathlib.Path) -> None:
    """Override 21: pysyncobj's removal closes the member's connection without the
    disconnection callback, so its transfer resumed mid-file once it was added back."""
    engine, journal, peer = _leader_with_old_dump(node, tmp_path)
    ser = engine._SyncObj__serializer
    try:
        engine._SyncObj__lastResponseTime[peer] = 1.0
        engine.last_contact[peer.id] = 1.0
        transport = engine._SyncObj__transport
        transport.batch_peers.add(peer.id)  # as if it had said it reads batches
        assert ser.getTransmissionData(peer)[1]
        assert not ser.getTransmissionData(peer)[1]  # mid-transfer
        assert engine._SyncObj__doChangeCluster(["rem", peer.id, peer])
        assert engine._SyncObj__doChangeCluster(["add", peer.id, peer])
        assert ser.getTransmissionData(peer)[1], "the transfer starts over"
        # Nothing kept of the removed member's time (this engine is no leader: not set again).
        assert peer not in engine._SyncObj__lastResponseTime and peer.id not in engine.last_contact
        assert peer.id not in transport.batch_peers  # it may come back as an older build
    finally:
        engine._SyncObj__transport.destroy()
        journal._destroy()


def _send_snapshot(engine: Any, leader: str, blob: bytes, term: int = 3) -> None:
    from pysyncobj.node import TCPNode

    half = len(blob) // 2
    for chunk in ((blob[:half], True, False), (blob[half:], False, False), (b"", False, True)):
        engine._SyncObj__onMessageReceived(TCPNode(leader), {
            "type": "append_entries", "term": term, "commit_index": 20, "serialized": chunk})


def test_a_new_member_survives_a_refused_snapshot(node: Any, tmp_path: pathlib.Path) -> None:
    """A new member's log is pysyncobj's one initial entry; a refused snapshot leaves it so, and
    that must not read as "the log was cleared and not rebuilt" (the node stopped, and did again
    at every restart while the leader's file was bad). Found by a second audit."""
    from gantry.consensus.journal import DurableJournal

    actor, db_path, _watermark = node
    journal = DurableJournal(str(db_path.parent / "raft.log"))
    engine, sent, (leader, _other) = _engine(actor, db_path.parent, journal)
    actor._sync = engine
    try:
        assert len(journal) == 1
        _send_snapshot(engine, leader, _snapshot_file(tmp_path, "leader", 15, _meta(20)).read_bytes())
        replies = [m for m in sent if m.get("type") == "next_node_idx"]
        assert replies and not any(m["success"] for m in replies)
        assert [e[1] for e in journal[:]] == [1]
        assert journal.failed is None, journal.failed
        assert not pathlib.Path(actor._dump_path).exists()  # there was none before
    finally:
        actor._sync = None
        engine._SyncObj__transport.destroy()
        journal._destroy()


@pytest.mark.parametrize("leader_file_ok", [False, True])
def test_a_crash_while_a_leader_snapshot_is_checked_is_settled_at_start_up(
        node: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, leader_file_ok: bool) -> None:
    """kill -9 after pysyncobj renamed the leader's file over the dump and before it was loaded
    or refused: the start-up puts the kept dump back when the received file would not load, and
    keeps the received file when it would (found by a second audit: the node was refused at
    start-up, and the kept dump deleted)."""
    import shutil

    from gantry import preflight

    actor, db_path, _watermark = node
    data = db_path.parent
    journal, engine, _sent, leader = _follower(actor, tmp_path)
    crashed = tmp_path / "crashed"
    real_fsync = raft_module.fsync_file

    def kill9_here(path: Any) -> None:  # the files as a kill -9 leaves them at this point
        if not crashed.exists():
            shutil.copytree(data, crashed)
        real_fsync(path)

    monkeypatch.setattr(raft_module, "fsync_file", kill9_here)
    received = _snapshot_file(tmp_path, "leader", 20 if leader_file_ok else 15, _meta(20))
    try:
        _send_snapshot(engine, leader, received.read_bytes())
    finally:
        actor._sync = None
        engine._SyncObj__transport.destroy()
        journal._destroy()
    assert (crashed / preflight.BEFORE_INSTALL).exists()
    outcome = preflight.settle_interrupted_install(crashed)
    assert outcome == ("kept" if leader_file_ok else "restored")
    assert not (crashed / preflight.BEFORE_INSTALL).exists()
    meta_json, applied = snapshot.read_meta(crashed / "raft.snapshot")
    assert (snapshot.decode_meta(meta_json, _Node)[0][1], applied) == ((20, 20) if leader_file_ok else (4, 4))
    preflight.check(Config(data_dir=crashed))
    assert preflight.settle_interrupted_install(crashed) is None


def test_a_follower_holding_the_snapshots_last_entry_keeps_its_log(node: Any, tmp_path: pathlib.Path) -> None:
    """Override 19 on the real engine and snapshot files: the log holds 3..12 (term 1), the
    leader's snapshot ends at (8, term 1): nothing is installed, the log stays, the reply says it
    matches up to 8, the commit index reaches 8 and the dump is this node's own again."""

    actor, db_path, watermark = node
    data = db_path.parent
    journal, engine, sent, leader = _follower(actor, tmp_path)
    try:
        _send_snapshot(engine, leader, _snapshot_file(tmp_path, "leader", 8, _meta(8)).read_bytes())
        assert [e[1] for e in journal[:]] == list(range(3, 13))
        replies = [m for m in sent if m.get("type") == "next_node_idx"]
        assert replies and replies[-1]["success"] and replies[-1]["next_node_idx"] == 9, replies
        assert engine.raftCommitIndex == 8
        meta_json, applied = snapshot.read_meta(pathlib.Path(actor._dump_path))
        assert (snapshot.decode_meta(meta_json, _Node)[0][1], applied) == (4, 4)
        assert not list(data.glob("raft.snapshot.*")) and not list(data.glob("restore-*"))
        assert watermark.value == 5  # nothing restored: the entries apply from the log
    finally:
        actor._sync = None
        engine._SyncObj__transport.destroy()
        journal._destroy()

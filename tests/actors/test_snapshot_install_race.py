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
from tests.support import wait_until

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

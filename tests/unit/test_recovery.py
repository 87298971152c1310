"""gantry.recovery (``serve --force-new-cluster``) on a synthetic data directory: committed
entries kept (and applied when the database lagged), the uncommitted tail dropped, a one-member
snapshot, a higher term, the old files kept, refusals that change nothing, and a second run that
finishes (or repeats) the job."""

from __future__ import annotations

import json
import pathlib
import sqlite3

import pytest
from pysyncobj import pickle as sync_pickle

from gantry import db
from gantry.config import Config
from gantry.consensus import journal
from gantry.consensus.journal import DurableJournal
from gantry.consensus.pysyncobj_compat import gantry_payload
from gantry.recovery import RecoveryError, check, force_new_cluster
from gantry.state import commands, migrate, snapshot, statemachine

SELF = "127.0.0.1:7001"


def _call(data: bytes) -> bytes:
    """A journal command as pysyncobj 0.3.17 writes a call of GantrySyncObj.apply_entry(data)."""
    return b"\x00" + sync_pickle.dumps((0, (data,)))


def _membership(kind: str, addr: str) -> bytes:
    return b"\x02" + sync_pickle.dumps([kind, addr, addr])


def _make(tmp: pathlib.Path, names: list[str], applied: int, commit: int,
          term: int = 3) -> tuple[Config, list[tuple[bytes, int, int]]]:
    """A data directory whose log holds pysyncobj's no-op (1), a membership change (2) and one
    CreateBucket per name (3, 4, …); the database applied up to ``applied``, the meta file says
    ``commit``."""
    data = tmp / "data"
    data.mkdir()
    cfg = Config(data_dir=data, raft_addr=SELF)
    entries = [(b"\x01", 1, 0), (_membership("add", "127.0.0.1:7002"), 2, 1)]
    for i, name in enumerate(names):
        entries.append((_call(commands.encode(commands.create_bucket(name))), 3 + i,
                        term if i >= 2 else 1))
    j = DurableJournal(str(data / "raft.log"))
    for e in entries:
        j.add(*e)
    j.setCurrentTerm(term, "127.0.0.1:7002")
    j.setRaftCommitIndex(commit)
    j.close()
    migrate.upgrade(cfg.database)
    conn = db.open_rw(cfg.database)
    statemachine.apply_batch(conn, [(i, gantry_payload(c) or b"", t) for c, i, t in entries
                                    if 3 <= i <= applied])
    conn.close()
    return cfg, entries


def _buckets(cfg: Config) -> list[str]:
    conn = sqlite3.connect(cfg.database)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM buckets ORDER BY name")]
    finally:
        conn.close()


def test_keeps_committed_entries_drops_the_tail_and_leaves_one_member(
        tmp_path: pathlib.Path) -> None:
    names = [f"b{i}" for i in range(6)]  # log indexes 3..8
    cfg, entries = _make(tmp_path, names, applied=4, commit=6)
    done = force_new_cluster(cfg)
    assert done.index == 6 and done.dropped == [7, 8]
    assert done.caught_up == 2  # entries 5 and 6: committed, not yet applied
    assert done.term == 4 and done.previous_term == 3
    assert _buckets(cfg) == ["b0", "b1", "b2", "b3"]
    data = pathlib.Path(cfg.data_dir)
    meta_json, snap_applied = snapshot.read_meta(data / "raft.snapshot")
    meta = json.loads(meta_json)
    assert meta["cluster"] == [SELF] and meta["last"][1] == 6 and meta["prev"][1] == 5
    assert snap_applied == 6
    assert [e[1] for e in journal.scan_log(str(data / "raft.log")).entries] == [5, 6]
    assert journal.read_meta(str(data / "raft.log.meta")) == {
        "currentTerm": 4, "votedForNodeId": None, "raftCommitIndex": 6}
    # The old files, untouched, in the backup directory.
    backup = done.backup
    assert backup.parent == data and backup.name.startswith("force-new-cluster-")
    assert journal.scan_log(str(backup / "raft.log")).entries == entries
    assert journal.read_meta(str(backup / "raft.log.meta"))["raftCommitIndex"] == 6
    conn = sqlite3.connect(backup / "gantry.db")
    assert statemachine.applied_index(conn) == 4
    conn.close()


def test_a_second_run_changes_nothing_but_the_term(tmp_path: pathlib.Path) -> None:
    cfg, _ = _make(tmp_path, [f"b{i}" for i in range(4)], applied=6, commit=6)
    first = force_new_cluster(cfg)
    second = force_new_cluster(cfg)  # e.g. after a crash mid-way, or run twice by mistake
    assert (second.index, second.dropped, second.caught_up) == (first.index, [], 0)
    assert second.term == first.term + 1
    assert _buckets(cfg) == ["b0", "b1", "b2", "b3"]


def test_database_rebuilt_from_the_log_when_moved_aside(tmp_path: pathlib.Path) -> None:
    cfg, _ = _make(tmp_path, ["b0", "b1", "b2"], applied=5, commit=5)
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(f"{cfg.database}{suffix}").unlink(missing_ok=True)
    migrate.upgrade(cfg.database)
    done = force_new_cluster(cfg)
    assert done.caught_up == 3 and _buckets(cfg) == ["b0", "b1", "b2"]


def test_refuses_with_peers_or_nothing_to_recover(tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecoveryError, match="nothing to recover"):
        check(Config(data_dir=empty, raft_addr=SELF))
    assert list(empty.iterdir()) == []
    cfg, _ = _make(tmp_path, ["b0"], applied=3, commit=3)
    cfg.peers = ["127.0.0.1:7002"]
    before = (pathlib.Path(cfg.data_dir) / "raft.log").read_bytes()
    with pytest.raises(RecoveryError, match="without --peers"):
        force_new_cluster(cfg)
    assert (pathlib.Path(cfg.data_dir) / "raft.log").read_bytes() == before
    assert not list(pathlib.Path(cfg.data_dir).glob("force-new-cluster-*"))


def test_previous_members_follow_the_logs_membership_changes(tmp_path: pathlib.Path) -> None:
    # Operator trial: the force_new_cluster line named a member removed long before (it read
    # every member that ever announced itself in cluster_nodes).
    data = tmp_path / "data"
    data.mkdir()
    cfg = Config(data_dir=data, raft_addr=SELF)
    founder, joined = "127.0.0.1:7002", "127.0.0.1:7003"
    entries = [(b"\x01", 1, 1), (_call(commands.encode(commands.create_bucket("a"))), 2, 1),
               (_membership("add", joined), 3, 1), (_membership("rem", founder), 4, 1),
               (_call(commands.encode(commands.create_bucket("b"))), 5, 1)]
    j = DurableJournal(str(data / "raft.log"))
    for e in entries:
        j.add(*e)
    j.setCurrentTerm(1, None)
    j.setRaftCommitIndex(5)
    j.close()
    migrate.upgrade(cfg.database)
    conn = db.open_rw(cfg.database)
    statemachine.apply_batch(conn, [(i, gantry_payload(c) or b"", t) for c, i, t in entries
                                    if gantry_payload(c)])
    for addr in (SELF, founder, joined):  # every member announced itself at some point
        conn.execute("INSERT INTO cluster_nodes (raft_addr, node_id, grpc_addr, created_at,"
                     " updated_at) VALUES (?, ?, '', 0, 0)", (addr, addr))
    conn.commit()
    conn.close()
    done = force_new_cluster(cfg)
    assert done.previous_members == sorted([SELF, joined])

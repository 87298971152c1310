"""gantry.backup on temporary files: the node-side copy (one read transaction, streamed in
chunks, SHA-256, one at a time, nothing left behind) and restore (the data directory a node that
compacted its log at the backup's index would hold; every refusal leaves the directory as it
was)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import sqlite3
import subprocess
import sys

import pytest

from gantry import backup, preflight
from gantry.backup import BackupBusy, BackupError, CopyTaker
from gantry.config import Config
from gantry.consensus import journal
from gantry.consensus.pysyncobj_compat import no_op_entry
from gantry.datadir import DataDirLock
from gantry.db import open_rw
from gantry.state import commands, migrate, snapshot, statemachine
from tests.support import REPO, free_ports

RAFT = "127.0.0.1:7191"


def _database(path: pathlib.Path, buckets: int = 5, term: int = 3) -> tuple[int, int]:
    """A node database with ``buckets`` buckets applied at log indexes 2.. in ``term``."""
    migrate.upgrade(path)
    conn = open_rw(path)
    try:
        entries = [(i + 2, commands.encode(commands.create_bucket(f"bucket-{i:04d}")), term)
                   for i in range(buckets)]
        statemachine.apply_batch(conn, entries)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return statemachine.applied_position(conn)
    finally:
        conn.close()


def _names(path: pathlib.Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM buckets ORDER BY name")]
    finally:
        conn.close()


def _tables(path: pathlib.Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


@pytest.fixture
def source(tmp_path: pathlib.Path) -> pathlib.Path:
    node = tmp_path / "node"
    node.mkdir()
    _database(node / "gantry.db")
    return node


def _stream(copy: backup.NodeCopy, chunk: int = 4096) -> bytes:
    return b"".join(copy.chunks(chunk))


def test_copy_is_one_read_transaction_streamed_with_its_hash(source: pathlib.Path,
                                                              tmp_path: pathlib.Path) -> None:
    taker = CopyTaker(source / "gantry.db", source)
    copy = taker.take()
    try:
        assert (copy.applied_index, copy.applied_term) == (6, 3)
        # Writes after the copy was taken are not in it.
        conn = open_rw(source / "gantry.db")
        statemachine.apply_batch(conn, [(7, commands.encode(commands.create_bucket("later")), 3)])
        conn.close()
        data = _stream(copy)
        assert len(data) == copy.size_bytes == copy.sent_bytes
        assert copy.sha256 == hashlib.sha256(data).digest()
        # The copy's name is gone already: nothing to clean up if the process dies.
        assert not list(source.glob("backup-*"))
    finally:
        copy.close()
    out = tmp_path / "b.db"
    out.write_bytes(data)
    assert backup.check_database(out) == (6, 3)
    assert "later" not in _names(out) and len(_names(out)) == 5
    assert snapshot.META_TABLE not in _tables(out)


def test_one_copy_at_a_time_and_leftovers_are_removed(source: pathlib.Path) -> None:
    (source / "backup-dead.db.building").write_bytes(b"partial copy of a dead process")
    taker = CopyTaker(source / "gantry.db", source)
    first = taker.take()
    assert not (source / "backup-dead.db.building").exists()
    with pytest.raises(BackupBusy):
        taker.take()
    first.close()
    second = taker.take()  # the first one's close let the next start
    second.close()


def test_restore_lays_out_a_compacted_node(source: pathlib.Path, tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "restored"
    r = backup.restore(source / "gantry.db", data_dir, RAFT)
    assert (r.applied_index, r.applied_term) == (6, 3)
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "LOCK", "gantry.db", "raft.log", "raft.log.meta", "raft.snapshot"]
    db = data_dir / "gantry.db"
    assert backup.check_database(db) == (6, 3)
    assert _names(db) == _names(source / "gantry.db")
    assert snapshot.META_TABLE not in _tables(db)
    # The snapshot: the same database at the same position, and the new node as the only member.
    meta_json, snap_applied = snapshot.read_meta(data_dir / "raft.snapshot")
    assert snap_applied == 6
    last, prev, cluster = snapshot.decode_meta(meta_json, str)
    assert (last, prev, cluster) == (no_op_entry(6, 3), no_op_entry(5, 3), {RAFT})
    assert snapshot.applied_position(data_dir / "raft.snapshot") == (6, 3)
    # The Raft log holds the snapshot's two entries; the current term is the backup's.
    scan = journal.scan_log(str(data_dir / "raft.log"))
    assert scan.entries == [no_op_entry(5, 3), no_op_entry(6, 3)] and not scan.damage
    assert journal.read_meta(str(data_dir / "raft.log.meta")) == {
        "currentTerm": 3, "votedForNodeId": None, "raftCommitIndex": 6}
    # A node's start-up checks accept it, the schema is this build's, the lock was released.
    preflight.check(Config(data_dir=data_dir))
    assert migrate.status(db).pending == []
    with DataDirLock(data_dir):
        pass


def test_a_raft_snapshot_given_as_the_backup_loses_its_old_metadata(
        source: pathlib.Path, tmp_path: pathlib.Path) -> None:
    snap = tmp_path / "raft.snapshot"
    conn = sqlite3.connect(f"file:{source / 'gantry.db'}?mode=ro", uri=True, isolation_level=None)
    conn.execute("BEGIN")
    statemachine.applied_index(conn)
    snapshot.write(conn, snap, json.dumps({"last": ["", 6, 3], "prev": ["", 5, 3],
                                           "cluster": ["10.0.0.1:7081", "10.0.0.2:7081"]}))
    conn.close()
    data_dir = tmp_path / "restored"
    backup.restore(snap, data_dir, RAFT)
    assert snapshot.META_TABLE not in _tables(data_dir / "gantry.db")
    _, _, cluster = snapshot.decode_meta(snapshot.read_meta(data_dir / "raft.snapshot")[0], str)
    assert cluster == {RAFT}


def test_restore_from_a_live_nodes_database_uses_the_copys_position(
        source: pathlib.Path, tmp_path: pathlib.Path) -> None:
    db = source / "gantry.db"
    writer = open_rw(db)  # a node running on it: WAL mode, frames not checkpointed
    try:
        statemachine.apply_batch(writer, [(7, commands.encode(commands.create_bucket("wal")), 4)])
        assert (source / "gantry.db-wal").stat().st_size > 0
        r = backup.restore(db, tmp_path / "restored", RAFT)
    finally:
        writer.close()
    assert (r.applied_index, r.applied_term) == (7, 4)
    data_dir = tmp_path / "restored"
    assert "wal" in _names(data_dir / "gantry.db")
    assert journal.read_meta(str(data_dir / "raft.log.meta"))["currentTerm"] == 4
    assert snapshot.applied_position(data_dir / "raft.snapshot") == (7, 4)


def test_restore_of_an_empty_database_needs_no_raft_files(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "fresh.db"
    migrate.upgrade(db)
    data_dir = tmp_path / "restored"
    r = backup.restore(db, data_dir, RAFT)
    assert r.applied_index == 0
    assert sorted(p.name for p in data_dir.iterdir()) == ["LOCK", "gantry.db"]


def _refused(src: pathlib.Path, data_dir: pathlib.Path, match: str) -> None:
    before = sorted(p.name for p in data_dir.iterdir()) if data_dir.is_dir() else None
    with pytest.raises(BackupError, match=match):
        backup.restore(src, data_dir, RAFT)
    after = sorted(p.name for p in data_dir.iterdir()) if data_dir.is_dir() else None
    assert after == before, "a refused restore must leave the directory as it was"


def test_restore_refuses_a_non_empty_or_live_directory(source: pathlib.Path,
                                                       tmp_path: pathlib.Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "raft.log").write_bytes(b"")
    _refused(source / "gantry.db", full, "is not empty")
    stopped = tmp_path / "stopped"  # a stopped node's directory: its LOCK names its last pid
    with DataDirLock(stopped):
        (stopped / "raft.log").write_bytes(b"")
    (stopped / "LOCK").write_text("pid 4242\n")
    _refused(source / "gantry.db", stopped, "is not empty")
    assert (stopped / "LOCK").read_text() == "pid 4242\n", "asking must not rewrite the LOCK"
    live = tmp_path / "live"
    with DataDirLock(live):  # a running node holds its directory's lock
        _refused(source / "gantry.db", live, "in use by pid")
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / backup.RESTORING_MARKER).write_text("")
    _refused(source / "gantry.db", interrupted, "interrupted restore")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    _refused(source / "gantry.db", a_file, "not a directory")
    empty_with_stale_lock = tmp_path / "stale"
    with DataDirLock(empty_with_stale_lock):
        pass
    backup.restore(source / "gantry.db", empty_with_stale_lock, RAFT)


def test_restore_refuses_a_bad_file(source: pathlib.Path, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "target"
    _refused(tmp_path / "missing.db", target, "no file at")
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    _refused(empty, target, "is empty")
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, but long enough to hold a SQLite header " * 4)
    _refused(text, target, "no SQLite header")
    data = (source / "gantry.db").read_bytes()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(data[: len(data) // 2])
    _refused(truncated, target, "truncated")
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    _refused(other, target, "not a Gantry database")


def test_restore_refuses_a_file_that_fails_the_integrity_check(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "big.db"
    _database(db, buckets=400)
    conn = sqlite3.connect(db)
    roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE name IN "
                              "('buckets_created', 'buckets_live_name')").fetchall())
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    # Two indexes that point at each other's b-tree: every page is well-formed, the content is not.
    swapped = tmp_path / "swapped.db"
    swapped.write_bytes(db.read_bytes())
    conn = sqlite3.connect(swapped)
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'buckets_created'",
                 (roots["buckets_live_name"],))
    conn.execute("UPDATE sqlite_master SET rootpage = ? WHERE name = 'buckets_live_name'",
                 (roots["buckets_created"],))
    conn.commit()
    conn.close()
    _refused(swapped, tmp_path / "target", "failed SQLite's integrity check: row 1 missing from")
    # Operator trial: hundreds of problems came out as hundreds of lines; one line here.
    with pytest.raises(BackupError) as refused:
        backup.restore(swapped, tmp_path / "target", RAFT)
    assert "\n" not in str(refused.value) and str(refused.value).endswith("more)")
    # A page of zeros where an index lives: SQLite itself calls the file malformed.
    data = bytearray(db.read_bytes())
    off = (roots["buckets_created"] - 1) * page_size
    data[off:off + page_size] = bytes(page_size)
    zeroed = tmp_path / "zeroed.db"
    zeroed.write_bytes(bytes(data))
    _refused(zeroed, tmp_path / "target", "not a usable backup: database disk image is malformed")


def test_restore_refuses_a_schema_from_a_newer_build(source: pathlib.Path,
                                                     tmp_path: pathlib.Path) -> None:
    db = tmp_path / "newer.db"
    db.write_bytes((source / "gantry.db").read_bytes())
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) "
                 "VALUES ('f' || hex(randomblob(16)), '9999_from_the_future', '2030-01-01')")
    conn.commit()
    conn.close()
    _refused(db, tmp_path / "target", "newer")


def test_a_node_refuses_an_interrupted_restore(tmp_path: pathlib.Path) -> None:
    (tmp_path / backup.RESTORING_MARKER).write_text("")
    with pytest.raises(preflight.PreflightError, match="unfinished `gantry restore`"):
        preflight.check(Config(data_dir=tmp_path))


def test_no_op_entry_is_pysyncobjs_no_op() -> None:
    from pysyncobj.syncobj import _COMMAND_TYPE

    assert no_op_entry(7, 2) == (bytes([_COMMAND_TYPE.NO_OP]), 7, 2)


def _gantry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gantry.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_errors_are_one_line_without_a_traceback(source: pathlib.Path,
                                                     tmp_path: pathlib.Path) -> None:
    (port,) = free_ports(1)
    out = tmp_path / "b.db"
    r = _gantry("backup", "--addr", f"127.0.0.1:{port}", str(out))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("gantry: backup failed: cannot reach a node at 127.0.0.1:")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists() and not (tmp_path / "b.db.tmp").exists()
    r = _gantry("backup", "--addr", f"127.0.0.1:{port}", str(tmp_path / "no-such-dir" / "b.db"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = _gantry("restore", str(tmp_path / "missing.db"), "--data-dir", str(tmp_path / "t"))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"gantry: restore refused: no file at {tmp_path / 'missing.db'}")
    r = _gantry("restore", str(source / "gantry.db"), "--data-dir", str(source))
    assert r.returncode == 2 and "is not empty" in r.stderr and "Traceback" not in r.stderr
    r = _gantry("restore", str(source / "gantry.db"), "--data-dir", str(tmp_path / "t"),
                "--raft-addr", "nonsense")
    assert r.returncode == 2 and "expected HOST:PORT" in r.stderr
    r = _gantry("restore", str(source / "gantry.db"), "--data-dir", str(tmp_path / "t"),
                "--raft-addr", RAFT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"restored {source / 'gantry.db'} into {tmp_path / 't'}: ")
    assert f"--raft-addr {RAFT}" in r.stdout


def test_a_backup_never_replaces_a_database_with_a_hot_journal(tmp_path: pathlib.Path) -> None:
    """`-wal`/`-shm` were checked, not `-journal`: a rollback-journal database in the middle of
    a transaction (another program's, or one kept with journal_mode=DELETE) was overwritten."""
    db = tmp_path / "other.db"
    db.write_bytes(b"")
    backup.refuse_node_files(db)  # a plain file: a backup may replace it
    (tmp_path / "other.db-journal").write_bytes(b"")
    with pytest.raises(BackupError, match="-journal is beside it"):
        backup.refuse_node_files(db)

"""gantry.preflight on SQLite files: a main file shorter than its header says is truncated only
when no WAL is there to recover from (a kill -9 during a checkpoint leaves exactly that shape,
and SQLite recovers it on open) — found by the fault campaign: a node refused to start for good
after kill -9."""

from __future__ import annotations

import pathlib
import sqlite3
from typing import Any

import pytest

from gantry.preflight import sqlite_problem


def _crash_image(tmp: pathlib.Path, keep_wal: bool) -> pathlib.Path:
    """A crash during a checkpoint: the main file already carries the new page count in its
    header but not all pages; the WAL still holds every frame."""
    live = tmp / "live"
    live.mkdir()
    conn = sqlite3.connect(live / "gantry.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 200,) for _ in range(2000)])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # main file written; the WAL keeps its frames
    image = tmp / "image"
    image.mkdir()
    data = (live / "gantry.db").read_bytes()
    (image / "gantry.db").write_bytes(data[: len(data) // 2])  # the crash: half the pages
    if keep_wal:
        (image / "gantry.db-wal").write_bytes((live / "gantry.db-wal").read_bytes())
    conn.close()
    return image / "gantry.db"


def test_short_file_without_a_wal_is_truncated(tmp_path: pathlib.Path) -> None:
    problem = sqlite_problem(_crash_image(tmp_path, keep_wal=False))
    assert problem is not None and problem.startswith("truncated")


def test_short_file_with_a_wal_to_recover_from_is_not_refused(tmp_path: pathlib.Path) -> None:
    db = _crash_image(tmp_path, keep_wal=True)
    assert sqlite_problem(db) is None
    conn = sqlite3.connect(db)  # and SQLite does recover it
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    conn.close()


def _snapshot(tmp: pathlib.Path, applied: int, last_kind: bytes) -> pathlib.Path:
    """A snapshot file whose database applied ``applied`` entries and whose Raft metadata ends
    with an entry of pysyncobj type ``last_kind`` at index 9 (the previous one a no-op)."""
    from gantry.db import open_ro, open_rw
    from gantry.state import commands, migrate, snapshot, statemachine

    src = tmp / "src.db"
    migrate.upgrade(src)
    conn = open_rw(src)
    statemachine.apply_batch(conn, [(i, commands.encode(commands.create_bucket(f"b{i}")), 1)
                                    for i in range(1, applied + 1)])
    conn.close()
    meta: tuple[Any, Any, Any] = ((last_kind + b"x", 9, 1), (b"\x01", 8, 1), set())
    out = tmp / "raft.snapshot"
    ro = open_ro(src)
    ro.execute("BEGIN")
    snapshot.write(ro, out, snapshot.encode_meta(meta))
    ro.close()
    return out


def test_a_snapshot_whose_database_is_older_than_its_metadata_is_refused(tmp_path: pathlib.Path) -> None:
    from gantry.preflight import snapshot_problem

    # Its metadata ends with a Gantry entry at 9 the database never applied (a file from before
    # override 16 mixed the leader's metadata with an older database).
    problem = snapshot_problem(_snapshot(tmp_path, 7, b"\x00"))
    assert problem is not None and problem.startswith("inconsistent") and "log index 7" in problem


def test_a_snapshot_behind_its_metadata_only_across_no_ops_loads(tmp_path: pathlib.Path) -> None:
    from gantry.preflight import snapshot_problem

    assert snapshot_problem(_snapshot(tmp_path, 7, b"\x01")) is None


def test_a_db_path_that_is_a_directory_or_a_raft_file_is_refused(tmp_path: pathlib.Path) -> None:
    """A wrong --db-path got advice to move the Raft log aside (db-path = raft.log) or a
    contradiction about the Raft log (db-path = a directory)."""
    import pytest

    from gantry.config import Config
    from gantry.preflight import PreflightError, check

    data = tmp_path / "data"
    data.mkdir()
    (data / "raft.log").write_bytes(b"")
    with pytest.raises(PreflightError, match="is a directory: give --db-path"):
        check(Config(data_dir=data, db_path=tmp_path))
    with pytest.raises(PreflightError, match="is one of the node's Raft files"):
        check(Config(data_dir=data, db_path=data / "raft.log"))
    check(Config(data_dir=data, db_path=data / "gantry.db"))  # a new node: fine


def test_the_way_back_depends_on_whether_the_node_has_peers(tmp_path: pathlib.Path) -> None:
    """A member of a cluster is restored from a peer; a one-member cluster has none (the advice
    to `remove-node` and wipe it lost its data): it is told to `gantry restore` its database."""
    from gantry.config import Config
    from gantry.preflight import PreflightError, check

    (tmp_path / "raft.log.meta").write_bytes(b"\x00 garbage")
    with pytest.raises(PreflightError) as member:
        check(Config(data_dir=tmp_path, peers=["127.0.0.1:7002"]))
    assert "remove-node" in str(member.value) and "only member" not in str(member.value)
    with pytest.raises(PreflightError) as alone:
        check(Config(data_dir=tmp_path, raft_addr="127.0.0.1:7001"))
    msg = str(alone.value)
    assert msg.startswith(f"Raft metadata {tmp_path / 'raft.log.meta'} is not valid JSON")
    assert "only member" in msg and "remove-node" not in msg
    assert "from a backup" in msg and "--data-dir NEW_DIR --raft-addr 127.0.0.1:7001" in msg

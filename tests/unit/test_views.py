"""The read-only inspection views (migration 0008): what they show for rows written through the
state machine, that nothing in the write path depends on them, and that a snapshot keeps them."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

from gantry.db import open_ro, open_rw
from gantry.state import commands, migrate, snapshot, statemachine

T0 = 1_700_000_000_123_456  # Unix µs: 2023-11-14T22:13:20.123456Z
VIEWS = ("live_buckets", "live_objects", "live_cradle_servers")


def _at(cmd: commands.Command, us: int) -> commands.Command:
    cmd.timestamp_us = us  # the proposer's clock, pinned so the expected text is fixed
    return cmd


def _entries() -> list[commands.Command]:
    """A small history: two buckets (one deleted), three servers (one unregistered, one that
    reported its room), objects in every state."""
    a = commands.register_cradle_server("10.0.0.1:9000")
    b = commands.register_cradle_server("10.0.0.2:9000")
    gone = commands.register_cradle_server("10.0.0.3:9000")
    ida, idb = a.register_cradle_server.cradle_server_id, b.register_cradle_server.cradle_server_id
    committed = commands.plan_write("photos", "cat.jpg", 10, ida)
    pending = commands.plan_write("photos", "dog.jpg", 20, idb)
    replaced = commands.plan_write("photos", "cat.jpg", 5, ida)
    aborted = commands.plan_write("photos", "eel.jpg", 7, ida)
    deleted = commands.plan_write("photos", "fox.jpg", 9, ida)
    cmds = [
        commands.create_bucket("photos"), commands.create_bucket("old"), a, b, gone,
        commands.delete_bucket("old"),
        commands.unregister_cradle_server("10.0.0.3:9000"),
        commands.update_cradle_status(idb, "HEALTHY", 3 * 2**30 + 2**29, 0, T0 + 5_000_000),
        replaced, commands.commit_object(replaced.plan_write.object_id, 5, 1_600_000_000_000),
        committed, commands.commit_object(committed.plan_write.object_id, 11, 1_690_000_000_500),
        pending, aborted, commands.abort_object(aborted.plan_write.object_id),
        deleted, commands.commit_object(deleted.plan_write.object_id, 9, 1_600_000_000_000),
        commands.delete_object("photos", "fox.jpg"),
    ]
    # One second apart, in log order.
    return [_at(c, T0 + i * 1_000_000) for i, c in enumerate(cmds)]


def _feed(conn: sqlite3.Connection, cmds: list[commands.Command]) -> list[statemachine.Applied]:
    return statemachine.apply_batch(conn, [(i + 1, commands.encode(c)) for i, c in enumerate(cmds)])


@pytest.fixture
def db(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    path = tmp_path / "gantry.db"
    migrate.upgrade(path)
    conn = open_rw(path)
    out = _feed(conn, _entries())
    assert all(a.result is not None and a.result.ok for a in out)
    conn.close()
    yield path


def _q(path: pathlib.Path, sql: str) -> list[tuple[object, ...]]:
    conn = open_ro(path)  # as an operator would: read-only
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_live_buckets_leave_deleted_ones_out(db: pathlib.Path) -> None:
    assert _q(db, "SELECT name, created_at, updated_at FROM live_buckets") == [
        ("photos", "2023-11-14T22:13:20.123Z", "2023-11-14T22:13:20.123Z")]
    assert _q(db, "SELECT COUNT(*) FROM buckets") == [(2,)]  # the table still has both


def test_live_objects_name_bucket_and_server_with_readable_times(db: pathlib.Path) -> None:
    rows = _q(db, "SELECT bucket, key, state, size, cradle_address, cradle_status, last_modified,"
                  " created_at, updated_at FROM live_objects ORDER BY key")
    assert rows == [
        ("photos", "cat.jpg", "COMMITTED", 11, "10.0.0.1:9000", "HEALTHY",
         "2023-07-22T04:26:40.500Z", "2023-11-14T22:13:30.123Z", "2023-11-14T22:13:31.123Z"),
        # PENDING: the planned size, no last_modified yet.
        ("photos", "dog.jpg", "PENDING", 20, "10.0.0.2:9000", "HEALTHY",
         None, "2023-11-14T22:13:32.123Z", "2023-11-14T22:13:32.123Z"),
    ]
    assert _q(db, "SELECT COUNT(*) FROM objects") == [(5,)]  # REPLACED, FAILED, DELETED too


def test_live_cradle_servers_show_status_and_free_space(db: pathlib.Path) -> None:
    rows = _q(db, "SELECT address, status, available_bytes, available, consecutive_misses,"
                  " last_heartbeat_at, created_at FROM live_cradle_servers ORDER BY address")
    assert rows == [
        ("10.0.0.1:9000", "HEALTHY", None, None, 0, None, "2023-11-14T22:13:22.123Z"),
        ("10.0.0.2:9000", "HEALTHY", 3 * 2**30 + 2**29, "3.5 GiB", 0,
         "2023-11-14T22:13:25.123Z", "2023-11-14T22:13:23.123Z"),
    ]  # 10.0.0.3:9000 was unregistered


def test_an_object_on_an_unregistered_server_says_so(db: pathlib.Path) -> None:
    conn = open_rw(db)
    nxt = statemachine.applied_index(conn) + 1
    statemachine.apply_batch(conn, [(nxt, commands.encode(
        commands.unregister_cradle_server("10.0.0.2:9000", force=True)))])
    conn.close()
    assert _q(db, "SELECT key, cradle_address, cradle_status FROM live_objects"
                  " WHERE state = 'PENDING'") == [("dog.jpg", "10.0.0.2:9000", "UNREGISTERED")]


def test_views_are_read_only(db: pathlib.Path) -> None:
    conn = open_rw(db)
    try:
        for view in VIEWS:
            with pytest.raises(sqlite3.OperationalError, match="cannot modify"):
                conn.execute(f"DELETE FROM {view}")
    finally:
        conn.close()


def _tables(path: pathlib.Path) -> list[list[tuple[object, ...]]]:
    conn = open_ro(path)
    try:
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("buckets", "cradle_servers", "objects", "request_dedupe", "raft_applied")]
    finally:
        conn.close()


def test_the_state_machine_does_not_depend_on_the_views(tmp_path: pathlib.Path) -> None:
    # The very same entries (same ids and times) on a file with the views and on one without:
    # every entry applies, and the tables end identical.
    cmds = _entries()
    files = []
    for name, drop in (("with.db", False), ("without.db", True)):
        path = tmp_path / name
        migrate.upgrade(path)
        conn = open_rw(path)
        for view in VIEWS if drop else ():
            conn.execute(f"DROP VIEW {view}")
        out = _feed(conn, cmds)
        conn.close()
        assert all(a.result is not None and a.result.ok for a in out)
        files.append(path)
    assert _tables(files[0]) == _tables(files[1])


def test_a_snapshot_restore_keeps_the_views(db: pathlib.Path, tmp_path: pathlib.Path) -> None:
    src = open_rw(db)
    snap = tmp_path / "raft.snapshot"
    snapshot.write(src, snap, "{}")
    src.close()
    fresh = tmp_path / "fresh.db"
    live = sqlite3.connect(str(fresh), isolation_level=None)  # an empty file, no schema at all
    snapshot.restore(snap, live)
    live.close()
    for view in VIEWS:
        assert _q(fresh, f"SELECT * FROM {view}") == _q(db, f"SELECT * FROM {view}")


def test_every_migration_rolls_back_and_forward_again_around_the_views(
        tmp_path: pathlib.Path) -> None:
    # Rebuilding tables (0004's rollback) under a view would fail: the views go first.
    path = tmp_path / "gantry.db"
    applied = migrate.upgrade(path)
    assert migrate.downgrade(path, len(applied)) == applied[::-1]
    assert migrate.upgrade(path) == applied
    assert {r[0] for r in _q(path, "SELECT name FROM sqlite_master WHERE type = 'view'")} == set(VIEWS)

"""The state machine on real temporary SQLite files: replace semantics, exactly-once apply of
replayed log indexes, deterministic results."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

from gantry.db import open_rw
from gantry.state import commands, migrate, statemachine
from gantry.state.statemachine import Code


@pytest.fixture
def db(tmp_path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "sm.db"
    migrate.upgrade(path)
    conn = open_rw(path)
    yield conn
    conn.close()


def _apply(conn: sqlite3.Connection, *entries: tuple[int, commands.Command]) -> list:
    return statemachine.apply_batch(conn, [(i, commands.encode(c)) for i, c in entries])


def _setup(conn: sqlite3.Connection) -> str:
    reg = commands.register_cradle_server("10.0.0.1:9000")
    _apply(conn, (2, commands.create_bucket("photos")), (3, reg))
    return reg.register_cradle_server.cradle_server_id


def test_commit_replaces_previous_committed_object(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    p1 = commands.plan_write("photos", "cat.jpg", 10, cradle)
    p2 = commands.plan_write("photos", "cat.jpg", 20, cradle)
    _apply(db, (4, p1), (5, p2))
    o1, o2 = p1.plan_write.object_id, p2.plan_write.object_id
    [a] = _apply(db, (6, commands.commit_object(o1, 10, 1000)))
    assert a.result is not None and a.result.ok
    [b] = _apply(db, (7, commands.commit_object(o2, 20, 2000)))
    assert b.result is not None and b.result.ok
    rows = dict(db.execute("SELECT object_id, state FROM objects").fetchall())
    assert rows == {o1: "REPLACED", o2: "COMMITTED"}
    size, lm = db.execute("SELECT size_actual, last_modified FROM objects WHERE object_id = ?",
                          (o2,)).fetchone()
    assert (size, lm) == (20, 2_000_000)  # last_modified stored as Unix µs


def test_later_in_log_wins_even_if_planned_earlier(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    p1 = commands.plan_write("photos", "k", 1, cradle)
    p2 = commands.plan_write("photos", "k", 2, cradle)
    _apply(db, (4, p1), (5, p2))
    # p2 commits first, p1 later: the later commit in the log wins.
    _apply(db, (6, commands.commit_object(p2.plan_write.object_id, 2, 1)),
           (7, commands.commit_object(p1.plan_write.object_id, 1, 1)))
    committed = db.execute("SELECT object_id FROM objects WHERE state = 'COMMITTED'").fetchall()
    assert committed == [(p1.plan_write.object_id,)]


def test_results_are_values_not_exceptions(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    out = _apply(
        db,
        (4, commands.create_bucket("photos")),
        (5, commands.plan_write("nope", "k", 1, cradle)),
        (6, commands.plan_write("photos", "k", 1, "")),
        (7, commands.commit_object("01ARZ3NDEKTSV4RRFFQ69G5FAV", 1, 1)),
    )
    codes = [(a.result.code, a.result.message) for a in out if a.result]
    assert codes == [
        (Code.ALREADY_EXISTS, "bucket already exists"),
        (Code.NOT_FOUND, "bucket not found"),
        (Code.FAILED_PRECONDITION, "no cradle servers available"),
        (Code.NOT_FOUND, "object not found"),
    ]
    assert statemachine.applied_index(db) == 7  # failed entries still advance the applied index


def test_commit_of_non_pending_object_fails_precondition(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    p = commands.plan_write("photos", "k", 1, cradle)
    c = commands.commit_object(p.plan_write.object_id, 1, 1)
    out = _apply(db, (4, p), (5, c), (6, commands.commit_object(p.plan_write.object_id, 1, 1)))
    assert out[2].result is not None and out[2].result.code == Code.FAILED_PRECONDITION


def test_replayed_indexes_apply_exactly_once(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    p = commands.plan_write("photos", "k", 1, cradle)
    first = _apply(db, (4, p), (5, commands.create_bucket("more")))
    assert all(a.result is not None for a in first)
    # pysyncobj replays its journal on restart: the same entries arrive again.
    again = _apply(db, (2, commands.create_bucket("photos")), (4, p),
                   (5, commands.create_bucket("more")), (6, commands.create_bucket("new")))
    assert [a.result is None for a in again] == [True, True, True, False]
    assert db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM buckets").fetchone()[0] == 3
    assert statemachine.applied_index(db) == 6


def test_undecodable_entry_rolls_back_whole_batch(db: sqlite3.Connection) -> None:
    _setup(db)
    with pytest.raises(commands.CommandDecodeError):
        statemachine.apply_batch(db, [(4, commands.encode(commands.create_bucket("x-ok"))),
                                      (5, b"\xff\xff garbage")])
    assert statemachine.applied_index(db) == 3
    assert db.execute("SELECT COUNT(*) FROM buckets WHERE name = 'x-ok'").fetchone()[0] == 0


def test_newer_command_version_is_refused() -> None:
    cmd = commands.create_bucket("abc")
    cmd.version = commands.COMMAND_VERSION + 1
    with pytest.raises(commands.CommandDecodeError):
        commands.decode(commands.encode(cmd))


def _dump(conn: sqlite3.Connection) -> list:
    tables = ["buckets", "cradle_servers", "objects", "raft_applied"]
    return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables]


def test_two_databases_fed_the_same_entries_end_identical(tmp_path: pathlib.Path) -> None:
    reg = commands.register_cradle_server("10.0.0.1:9000")
    cid = reg.register_cradle_server.cradle_server_id
    entries: list[tuple[int, commands.Command]] = [(2, reg)]
    idx = 3
    for b in range(3):
        entries.append((idx, commands.create_bucket(f"bucket-{b}")))
        idx += 1
        for k in range(20):
            p = commands.plan_write(f"bucket-{b}", f"key-{k % 5}", k + 1, cid)
            entries.append((idx, p))
            entries.append((idx + 1, commands.commit_object(p.plan_write.object_id, k + 1, 1000 + k)))
            idx += 2
    entries.append((idx, commands.create_bucket("bucket-0")))  # a deterministic failure
    dumps, results = [], []
    for name, batch in (("a", 1), ("b", 7)):
        path = tmp_path / f"{name}.db"
        migrate.upgrade(path)
        conn = open_rw(path)
        out = []
        for i in range(0, len(entries), batch):  # different batching, same outcome
            out += _apply(conn, *entries[i:i + batch])
        dumps.append(_dump(conn))
        results.append([(a.index, a.result) for a in out])
        conn.close()
    assert dumps[0] == dumps[1]
    assert results[0] == results[1]
    committed = dumps[0][2]
    assert sum(1 for r in committed if r[3] == "COMMITTED") == 15  # 3 buckets × 5 keys


def test_retried_request_id_returns_original_outcome_and_applies_once(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    first = commands.plan_write("photos", "k", 5, cradle, request_id="req-1")
    retry = commands.plan_write("photos", "k", 5, cradle, request_id="req-1")  # new ids, same request
    [a] = _apply(db, (4, first))
    [b] = _apply(db, (5, retry))
    assert a.result is not None and b.result is not None
    assert b.result == a.result and b.result.object_id == first.plan_write.object_id
    assert db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 1
    assert statemachine.applied_index(db) == 5
    # The same id on a different operation is refused, not applied.
    [c] = _apply(db, (6, commands.create_bucket("other", request_id="req-1")))
    assert c.result is not None and c.result.code == Code.INVALID_ARGUMENT


def test_dedupe_is_pruned_by_log_index(db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statemachine, "DEDUPE_WINDOW", 10)
    monkeypatch.setattr(statemachine, "DEDUPE_PRUNE_EVERY", 5)
    _setup(db)
    _apply(db, (4, commands.create_bucket("b-1", request_id="r")))
    _apply(db, (20, commands.create_bucket("b-2")))  # index 20: prunes entries ≤ 10
    [again] = _apply(db, (21, commands.create_bucket("b-1", request_id="r")))
    assert again.result is not None and again.result.code == Code.ALREADY_EXISTS


def test_request_id_reused_for_a_different_request_is_refused(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    [a] = _apply(db, (4, commands.create_bucket("rid-alpha", request_id="same")))
    [b] = _apply(db, (5, commands.create_bucket("rid-beta", request_id="same")))
    assert a.result is not None and a.result.ok
    assert b.result is not None and b.result.code == Code.INVALID_ARGUMENT
    assert db.execute("SELECT COUNT(*) FROM buckets WHERE name = 'rid-beta'").fetchone()[0] == 0
    [c] = _apply(db, (6, commands.plan_write("photos", "k1", 5, cradle, request_id="p")))
    [d] = _apply(db, (7, commands.plan_write("photos", "k2", 7, cradle, request_id="p")))
    assert c.result is not None and c.result.ok
    assert d.result is not None and d.result.code == Code.INVALID_ARGUMENT


def test_request_id_reused_for_another_operation_is_refused(db: sqlite3.Connection) -> None:
    _setup(db)
    [a] = _apply(db, (4, commands.create_bucket("rid1", request_id="R")))
    [b] = _apply(db, (5, commands.delete_bucket("rid1", request_id="R")))
    assert a.result is not None and a.result.ok
    assert b.result is not None and b.result.code == Code.INVALID_ARGUMENT
    assert db.execute("SELECT deleted_at FROM buckets WHERE name = 'rid1'").fetchone() == (None,)


def _results(out: list) -> list[tuple[Code, str]]:
    return [(a.result.code, a.result.message) for a in out if a.result]


def test_unregister_refuses_a_server_with_live_objects_unless_forced(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    p = commands.plan_write("photos", "k", 5, cradle)
    _apply(db, (4, p))
    out = _apply(db, (5, commands.unregister_cradle_server("10.0.0.1:9000")),
                 (6, commands.unregister_cradle_server("10.9.9.9:1")))
    assert _results(out) == [(Code.FAILED_PRECONDITION, "cradle server has live objects"),
                             (Code.NOT_FOUND, "cradle server not found")]
    # COMMITTED counts as live too; once the object is DELETED the server may go.
    _apply(db, (7, commands.commit_object(p.plan_write.object_id, 5, 1000)))
    [refused] = _apply(db, (8, commands.unregister_cradle_server("10.0.0.1:9000")))
    assert refused.result is not None and refused.result.code == Code.FAILED_PRECONDITION
    _apply(db, (9, commands.delete_object("photos", "k")))
    [ok] = _apply(db, (10, commands.unregister_cradle_server("10.0.0.1:9000")))
    assert ok.result is not None and ok.result.ok and ok.result.cradle_server_id == cradle
    # The row stays (the DELETED object still references it), marked unregistered.
    assert db.execute("SELECT unregistered_at IS NOT NULL FROM cradle_servers").fetchall() == [(1,)]
    [again] = _apply(db, (11, commands.unregister_cradle_server("10.0.0.1:9000")))
    assert again.result is not None and again.result.code == Code.NOT_FOUND

    other = commands.register_cradle_server("10.0.0.2:9000")
    _apply(db, (12, other))
    o2 = other.register_cradle_server.cradle_server_id
    _apply(db, (13, commands.plan_write("photos", "k2", 5, o2)))
    [forced] = _apply(db, (14, commands.unregister_cradle_server("10.0.0.2:9000", force=True)))
    assert forced.result is not None and forced.result.ok
    # The forced server's live object is left as it was, still naming the server.
    assert db.execute("SELECT state, cradle_server_id FROM objects WHERE key = 'k2'").fetchone() == (
        "PENDING", o2)


def test_an_unregistered_server_is_not_placed_on_nor_updated_until_registered_again(
        db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    _apply(db, (4, commands.update_cradle_status(cradle, "OFFLINE", 100, 7, 0)),
           (5, commands.unregister_cradle_server("10.0.0.1:9000")))
    # A PlanWrite proposed with the server chosen before the unregister applied after it.
    out = _apply(db, (6, commands.plan_write("photos", "k", 5, cradle)),
                 (7, commands.update_cradle_status(cradle, "HEALTHY", 999, 0, 1)))
    assert _results(out) == [(Code.FAILED_PRECONDITION, "no cradle servers available"),
                             (Code.OK, "")]
    assert db.execute("SELECT status, available_bytes FROM cradle_servers").fetchone() == (
        "OFFLINE", 100)
    # Registering the address again revives the same row, as a new server.
    again = commands.register_cradle_server("10.0.0.1:9000")
    [r] = _apply(db, (8, again))
    assert r.result is not None and r.result.cradle_server_id == cradle
    assert db.execute("SELECT status, available_bytes, consecutive_misses, last_heartbeat_at,"
                      " unregistered_at FROM cradle_servers").fetchone() == ("HEALTHY", -1, 0, 0, None)
    [p] = _apply(db, (9, commands.plan_write("photos", "k", 5, cradle)))
    assert p.result is not None and p.result.ok

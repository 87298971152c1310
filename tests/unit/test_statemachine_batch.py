"""The batch entries (``put_objects``, ``delete_objects``) on real temporary SQLite files: per-item
results, replace semantics inside one entry, atomic apply, request-id dedupe, and determinism
(the same entry on two databases gives the same rows)."""

from __future__ import annotations

import json
import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

from gantry.db import open_rw
from gantry.state import commands, migrate, statemachine
from gantry.state.statemachine import ApplyResult, ItemResult, Outcome

TABLES = ("buckets", "cradle_servers", "objects", "request_dedupe")


def _open(path: pathlib.Path) -> sqlite3.Connection:
    migrate.upgrade(path)
    return open_rw(path)


@pytest.fixture
def db(tmp_path: pathlib.Path) -> Iterator[sqlite3.Connection]:
    conn = _open(tmp_path / "sm.db")
    yield conn
    conn.close()


def _apply(conn: sqlite3.Connection, *entries: tuple[int, commands.Command]
           ) -> list[ApplyResult]:
    out = statemachine.apply_batch(conn, [(i, commands.encode(c)) for i, c in entries])
    results = [a.result for a in out]
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _setup(conn: sqlite3.Connection) -> str:
    reg = commands.register_cradle_server("10.0.0.1:9000")
    _apply(conn, (2, commands.create_bucket("photos")), (3, reg))
    return reg.register_cradle_server.cradle_server_id


def _rows(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT key, state, size_actual, last_modified FROM objects"
                        " ORDER BY key, created_at, object_id").fetchall()


def test_put_objects_commits_every_object_and_replaces_earlier_ones(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    old = commands.put_objects("photos", [("a", 1, 1000, cradle)])
    [r0] = _apply(db, (4, old))
    batch = commands.put_objects("photos", [("a", 2, 2000, cradle), ("b", 3, 3000, cradle),
                                            ("b", 4, 4000, cradle)])
    [r] = _apply(db, (5, batch))
    assert r.ok and [i.outcome for i in r.items] == [Outcome.OK] * 3
    ids = [o.object_id for o in batch.put_objects.objects]
    assert [i.object_id for i in r.items] == ids
    assert {i.cradle_address for i in r.items} == {"10.0.0.1:9000"}
    states = dict(db.execute("SELECT object_id, state FROM objects").fetchall())
    # The later write wins: the old "a" and the first "b" of the batch are REPLACED.
    assert states == {r0.items[0].object_id: "REPLACED", ids[0]: "COMMITTED",
                      ids[1]: "REPLACED", ids[2]: "COMMITTED"}
    assert db.execute("SELECT size_actual, size_expected, last_modified FROM objects"
                      " WHERE object_id = ?", (ids[2],)).fetchone() == (4, 4, 4_000_000)


def test_put_objects_without_a_registered_cradle_fails_only_those_items(
        db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    batch = commands.put_objects("photos", [("a", 1, 1, cradle), ("b", 1, 1, ""),
                                            ("c", 1, 1, "01NOSUCHSERVER0000000000000")])
    [r] = _apply(db, (4, batch))
    assert r.ok
    assert [i.outcome for i in r.items] == [Outcome.OK, Outcome.NO_CRADLES, Outcome.NO_CRADLES]
    assert [k for k, *_ in _rows(db)] == ["a"]


def test_put_and_delete_objects_in_unknown_bucket_change_nothing(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    [p, d] = _apply(db, (4, commands.put_objects("nope", [("a", 1, 1, cradle)])),
                    (5, commands.delete_objects("nope", ["a"])))
    assert (p.outcome, p.bucket, p.items) == (Outcome.BUCKET_NOT_FOUND, "nope", ())
    assert (d.outcome, d.bucket) == (Outcome.BUCKET_NOT_FOUND, "nope")
    assert _rows(db) == []


def test_a_constraint_failure_rolls_back_the_whole_batch(db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    [first] = _apply(db, (4, commands.put_objects("photos", [("a", 1, 1, cradle)])))
    before = _rows(db)
    batch = commands.put_objects("photos", [("x", 1, 1, cradle), ("y", 1, 1, cradle)])
    batch.put_objects.objects[1].object_id = first.items[0].object_id  # an id already taken
    [r] = _apply(db, (5, batch))
    assert r.outcome is Outcome.CONSTRAINT_VIOLATED and r.items == ()
    assert _rows(db) == before  # "x" is not there either, and "a" is still COMMITTED
    assert statemachine.applied_index(db) == 5


def test_delete_objects_deletes_committed_keys_and_counts_missing_ones_as_deleted(
        db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    _apply(db, (4, commands.put_objects("photos", [("a", 1, 1, cradle), ("b", 1, 1, cradle)])),
           (5, commands.plan_write("photos", "c", 1, cradle)))  # PENDING: untouched
    [r] = _apply(db, (6, commands.delete_objects("photos", ["a", "missing", "a"])))
    assert r.ok
    assert [(k, s) for k, s, *_ in _rows(db)] == [("a", "DELETED"), ("b", "COMMITTED"),
                                                  ("c", "PENDING")]


def test_a_retried_batch_returns_the_original_items_and_applies_once(
        db: sqlite3.Connection) -> None:
    cradle = _setup(db)
    first = commands.put_objects("photos", [("a", 1, 1, cradle), ("b", 2, 2, cradle)],
                                 request_id="batch-1")
    retry = commands.put_objects("photos", [("a", 1, 1, cradle), ("b", 2, 2, cradle)],
                                 request_id="batch-1")  # fresh ids: the proposer's, not the request
    assert statemachine.request_fingerprint(first) == statemachine.request_fingerprint(retry)
    [a] = _apply(db, (4, first))
    rows = _rows(db)
    [b] = _apply(db, (5, retry))
    assert b == a and len(a.items) == 2
    assert _rows(db) == rows
    other = commands.put_objects("photos", [("a", 1, 1, cradle)], request_id="batch-1")
    [c] = _apply(db, (6, other))
    assert c.outcome is Outcome.REQUEST_ID_REUSED
    [d1] = _apply(db, (7, commands.delete_objects("photos", ["a"], request_id="del-1")))
    [d2] = _apply(db, (8, commands.delete_objects("photos", ["a"], request_id="del-1")))
    assert d1 == d2 == statemachine.OK


def test_stored_results_keep_their_form_and_batch_items_round_trip() -> None:
    plain = ApplyResult(object_id="X", cradle_address="h:1")
    assert "items" not in json.loads(statemachine._result_to_json(plain))
    assert statemachine._result_from_json(statemachine._result_to_json(plain)) == plain
    r = ApplyResult(items=(ItemResult(object_id="A", cradle_address="h:1"),
                           ItemResult(Outcome.NO_CRADLES)))
    assert statemachine._result_from_json(statemachine._result_to_json(r)) == r
    with pytest.raises(ValueError):
        statemachine._result_from_json('{"code":0,"message":"","items":[["nonsense","",""]]}')


def test_the_same_batch_entries_give_the_same_rows_on_two_databases(
        tmp_path: pathlib.Path) -> None:
    reg = commands.register_cradle_server("10.0.0.1:9000")
    cradle = reg.register_cradle_server.cradle_server_id
    entries = [
        (2, commands.create_bucket("photos")), (3, reg),
        (4, commands.put_objects("photos", [(f"k{i % 150}", i + 1, 1000 + i, cradle)
                                            for i in range(400)], request_id="r1")),
        (5, commands.delete_objects("photos", [f"k{i}" for i in range(0, 150, 3)])),
        (6, commands.put_objects("photos", [(f"k{i}", 7, 7, cradle) for i in range(100)],
                                 request_id="r2")),
    ]
    data = [(i, commands.encode(c)) for i, c in entries]
    dumps, results = [], []
    for name in ("one.db", "two.db"):
        conn = _open(tmp_path / name)
        try:
            results.append([a.result for a in statemachine.apply_batch(conn, data)])
            dumps.append([conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                          for t in TABLES])
        finally:
            conn.close()
    assert dumps[0] == dumps[1]
    assert results[0] == results[1]
    objects = dumps[0][2]
    assert len(objects) == 500
    committed = {r[2] for r in objects if r[3] == "COMMITTED"}
    deleted = {f"k{i}" for i in range(0, 150, 3)}
    assert committed == ({f"k{i}" for i in range(150)} - deleted) | {f"k{i}" for i in range(100)}

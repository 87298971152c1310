"""gantry/api/batch.py's pure functions: request checks, the entries they build, placement and
the replies rebuilt from an apply result."""

from __future__ import annotations

import pathlib
import sqlite3

import grpc
import pytest

from gantry.api import batch
from gantry.api.errors import RpcError
from gantry.api.service import placeable_where
from gantry.db import open_rw
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.state import migrate, statemachine
from gantry.state.statemachine import ApplyResult, ItemResult, Outcome


def _req(*entries: tuple[str, int, int]) -> svc.PutObjectsRequest:
    return svc.PutObjectsRequest(bucket="photos", objects=[
        svc.PutObjectsEntry(key=k, size=s, last_modified_ms=m) for k, s, m in entries])


def test_put_plan_keeps_accepted_items_in_order_and_refuses_the_rest() -> None:
    plan = batch.plan_put_objects(_req(("a", 1, 5), ("", 0, 5), ("b", 2, 0), ("c", 3, 6)))
    assert plan.accepted == ((0, "a", 1, 5), (3, "c", 3, 6))
    assert plan.refused == {1: "InvalidSize", 2: "InvalidLastModifiedMs"}
    cmd = plan.command(["cs-1", ""], "rid")
    assert cmd.request_id == "rid"
    assert [(o.key, o.size, o.last_modified_ms, o.cradle_server_id)
            for o in cmd.put_objects.objects] == [("a", 1, 5, "cs-1"), ("c", 3, 6, "")]
    with pytest.raises(ValueError):
        plan.command(["only-one"])
    resp = plan.response(ApplyResult(items=(ItemResult(object_id="O1", cradle_address="h:1"),
                                            ItemResult(Outcome.NO_CRADLES))))
    assert [(r.code, r.message, r.object_id, r.cradle_address) for r in resp.results] == [
        (0, "", "O1", "h:1"), (3, "InvalidSize", "", ""), (3, "InvalidLastModifiedMs", "", ""),
        (9, "no cradle servers available", "", "")]
    with pytest.raises(ValueError):
        plan.response(ApplyResult())


@pytest.mark.parametrize(("req", "message"), [
    (svc.PutObjectsRequest(bucket="..", objects=[svc.PutObjectsEntry(key="a")]),
     "InvalidBucketName"),
    (svc.PutObjectsRequest(bucket="photos"), batch.EMPTY_BATCH),
    (_req(*[("k", 1, 1)] * (batch.MAX_PUT_OBJECTS + 1)), batch.TOO_MANY_OBJECTS),
    (_req(*[("k" * 1024, 1, 1)] * 1025), batch.BATCH_TOO_LARGE),
])
def test_put_plan_request_level_refusals(req: svc.PutObjectsRequest, message: str) -> None:
    with pytest.raises(RpcError) as ei:
        batch.plan_put_objects(req)
    assert (ei.value.code, ei.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_delete_plan_quiet_and_verbose_replies() -> None:
    req = svc.DeleteObjectsRequest(bucket="photos", keys=["a", "b\x00", "a"])
    plan = batch.plan_delete_objects(req)
    assert list(plan.command().delete_objects.keys) == ["a", "a"]
    resp = plan.response(ApplyResult())
    assert [d.key for d in resp.deleted] == ["a", "a"]
    assert [(e.key, e.code, e.message) for e in resp.errors] == [
        ("b\x00", "InvalidArgument", "InvalidKeyName")]
    req.quiet = True
    quiet = batch.plan_delete_objects(req).response(ApplyResult())
    assert (len(quiet.deleted), len(quiet.errors)) == (0, 1)
    with pytest.raises(RpcError) as ei:
        batch.plan_delete_objects(svc.DeleteObjectsRequest(bucket="photos", keys=["k"] * 1001))
    assert ei.value.message == batch.TOO_MANY_OBJECTS


@pytest.mark.parametrize("heartbeats", [False, True])
def test_place_picks_per_size_among_the_servers_placewrite_would_use(
        tmp_path: pathlib.Path, heartbeats: bool) -> None:
    path = tmp_path / "p.db"
    migrate.upgrade(path)
    conn: sqlite3.Connection = open_rw(path)
    try:
        rows = [("small", 100, "HEALTHY", None), ("big", 10_000, "HEALTHY", None),
                ("unknown", -1, "HEALTHY", None), ("sick", 10_000, "DEGRADED", None),
                ("gone", 10_000, "HEALTHY", 5)]
        for i, (sid, avail, status, unreg) in enumerate(rows):
            conn.execute("INSERT INTO cradle_servers (id, address, status, available_bytes,"
                         " consecutive_misses, last_heartbeat_at, created_at, updated_at,"
                         " unregistered_at) VALUES (?, ?, ?, ?, 0, 0, 0, 0, ?)",
                         (sid, f"h:{i + 1}", status, avail, unreg))
        conn.commit()
        where = placeable_where(heartbeats)
        seen: list[list[str]] = []

        def first(ids: list[str]) -> str:
            seen.append(sorted(ids))
            return ids[0]

        got = batch.place(conn, where, [50, 5000, 20_000], first)
        unknown = [] if heartbeats else ["unknown"]
        assert seen == [sorted(["big", "small", *unknown]), sorted(["big", *unknown])] + (
            [] if heartbeats else [["unknown"]])
        # The same sets the single PlanWrite's query gives, size by size.
        for size, want in zip([50, 5000, 20_000], seen + [[]], strict=False):
            ids = sorted(r[0] for r in conn.execute(
                "SELECT id FROM cradle_servers WHERE " + where, (size,)))
            assert ids == want
        assert got[2] == ("" if heartbeats else "unknown")
        assert batch.place(conn, where, []) == []
    finally:
        conn.close()


def test_the_entry_carries_a_digest_of_the_whole_request() -> None:
    a = batch.plan_put_objects(_req(("a", 1, 5), ("b", 0, 5)))
    b = batch.plan_put_objects(_req(("a", 1, 5), ("b", -1, 5)))  # differs in a refused item only
    assert a.accepted == b.accepted and a.request_sha256 != b.request_sha256
    fa = statemachine.request_fingerprint(a.command([""], "r"))
    assert fa == statemachine.request_fingerprint(a.command(["other"], "r"))  # placement: ours
    assert fa != statemachine.request_fingerprint(b.command([""], "r"))
    d = svc.DeleteObjectsRequest(bucket="photos", keys=["a"])
    loud = batch.plan_delete_objects(d).command().delete_objects.request_sha256
    d.quiet = True
    assert batch.plan_delete_objects(d).command().delete_objects.request_sha256 != loud

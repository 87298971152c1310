"""The batch RPCs (``DeleteObjects``, ``PutObjects``) against a node: per-item results with the
single RPCs' messages, limits, quiet mode, one log entry applied atomically, and request-id
dedupe of a retried batch. Run by the process tier (``node`` from tests/conftest.py) and the
in-process tier (tests/inprocess/test_batch_inprocess.py)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from gantry.api import batch
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.service.v1 import service_pb2_grpc
from tests.contract.test_contract import (
    CRADLE,
    GIB5,
    ULID,
    T,
    assert_status,
    detail_of,
    log_index,
    make_bucket,
    ro_db,
    rpc_error,
)
from tests.contract.test_contract import stub as _stub_fixture
from tests.support import NodeProcess

stub = _stub_fixture  # the module fixture: the node's stub once its cradle server is registered

Stub = service_pb2_grpc.GantryServiceStub
MS = 1_700_000_000_000
OK, INVALID, PRECONDITION = 0, 3, 9


def _entry(key: str, size: int = 10, last_modified_ms: int = MS) -> svc.PutObjectsEntry:
    return svc.PutObjectsEntry(key=key, size=size, last_modified_ms=last_modified_ms)


def _put(stub: Stub, bucket: str, entries: list[svc.PutObjectsEntry], rid: str = "") -> Any:
    md = (("x-request-id", rid),) if rid else ()
    return stub.PutObjects.with_call(svc.PutObjectsRequest(bucket=bucket, objects=entries),
                                     timeout=T, metadata=md)


def _states(node: Any, bucket: str) -> dict[str, list[str]]:
    """key -> states of its objects, oldest first."""
    with ro_db(node) as conn:
        rows = conn.execute(
            "SELECT o.key, o.state FROM objects o JOIN buckets b ON b.id = o.bucket_id"
            " WHERE b.name = ? ORDER BY o.key, o.created_at, o.object_id", (bucket,)).fetchall()
    out: dict[str, list[str]] = {}
    for k, s in rows:
        out.setdefault(k, []).append(s)
    return out


def _violation(err: grpc.RpcError) -> error_details_pb2.BadRequest.FieldViolation:
    br = detail_of(err, error_details_pb2.BadRequest)
    [v] = br.field_violations
    return v


# ---------------------------------------------------------------------------------------------
# PutObjects
# ---------------------------------------------------------------------------------------------


def test_put_objects_commits_each_object_in_one_log_entry(stub: Stub, node: NodeProcess) -> None:
    bucket = make_bucket(stub, "put")
    resp, call = _put(stub, bucket, [_entry(f"dir/f{i}", size=i + 1) for i in range(50)])
    assert len(resp.results) == 50
    assert all(r.code == OK and r.message == "" and ULID.fullmatch(r.object_id)
               and r.cradle_address == CRADLE for r in resp.results)
    assert len({r.object_id for r in resp.results}) == 50
    assert log_index(call) > 0
    head = stub.HeadObject(svc.HeadObjectRequest(bucket=bucket, key="dir/f7"), timeout=T)
    assert (head.object_id, head.size, head.last_modified_ms, head.cradle_address) == (
        resp.results[7].object_id, 8, MS, CRADLE)
    with ro_db(node) as conn:
        stamps = conn.execute(
            "SELECT DISTINCT o.created_at, o.updated_at, o.state FROM objects o"
            " JOIN buckets b ON b.id = o.bucket_id WHERE b.name = ?", (bucket,)).fetchall()
    assert len(stamps) == 1 and stamps[0][2] == "COMMITTED"  # one entry, one timestamp


def test_put_objects_replaces_like_commit_object(stub: Stub, node: NodeProcess) -> None:
    bucket = make_bucket(stub, "putrep")
    _put(stub, bucket, [_entry("a")])
    resp, _ = _put(stub, bucket, [_entry("a", 2), _entry("b"), _entry("a", 3)])
    assert [r.code for r in resp.results] == [OK, OK, OK]
    assert _states(node, bucket) == {"a": ["REPLACED", "REPLACED", "COMMITTED"],
                                     "b": ["COMMITTED"]}
    head = stub.HeadObject(svc.HeadObjectRequest(bucket=bucket, key="a"), timeout=T)
    assert (head.object_id, head.size) == (resp.results[2].object_id, 3)


BAD_ENTRIES = [
    # (entry, the single RPC that refuses it, its message)
    (_entry("k0", size=0), "PlanWrite", "InvalidSize"),
    (_entry("k1", size=-5), "PlanWrite", "InvalidSize"),
    (_entry("k2", size=GIB5 + 1), "PlanWrite", "EntityTooLarge"),
    (_entry("", size=1), "PlanWrite", "InvalidKeyName"),
    (_entry("x" * 1025), "PlanWrite", "InvalidKeyName"),
    (_entry("bad\x01key"), "PlanWrite", "InvalidKeyName"),
    (_entry("", size=0), "PlanWrite", "InvalidSize"),  # size is checked before the key
    (_entry("k3", last_modified_ms=0), "CommitObject", "InvalidLastModifiedMs"),
    (_entry("k4", last_modified_ms=-1), "CommitObject", "InvalidLastModifiedMs"),
    (_entry("k5", last_modified_ms=253_402_300_800_000), "CommitObject",
     "InvalidLastModifiedMs"),
]


def _single_rpc_message(stub: Stub, bucket: str, e: svc.PutObjectsEntry, rpc: str) -> str:
    """What the single-item RPC answers for the same input."""
    if rpc == "PlanWrite":
        err = rpc_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=bucket, key=e.key, size=e.size))
    else:
        oid = stub.PlanWrite(svc.PlanWriteRequest(bucket=bucket, key="probe", size=e.size),
                             timeout=T).write_plan.object_id
        err = rpc_error(stub.CommitObject, svc.CommitObjectRequest(
            object_id=oid, size=e.size, last_modified_ms=e.last_modified_ms))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    return str(err.details())


def test_put_objects_refuses_items_with_the_single_rpcs_messages(stub: Stub,
                                                                   node: NodeProcess) -> None:
    bucket = make_bucket(stub, "putbad")
    entries = [_entry("good-0")] + [e for e, _, _ in BAD_ENTRIES] + [_entry("good-1")]
    resp, _ = _put(stub, bucket, entries)
    got = [(r.code, r.message) for r in resp.results]
    assert got == [(OK, "")] + [(INVALID, m) for _, _, m in BAD_ENTRIES] + [(OK, "")]
    assert not resp.results[1].object_id and not resp.results[1].cradle_address
    for e, rpc, message in BAD_ENTRIES:
        assert _single_rpc_message(stub, bucket, e, rpc) == message
    committed = {k for k, s in _states(node, bucket).items() if "COMMITTED" in s}
    assert committed == {"good-0", "good-1"}


def test_put_objects_with_every_item_refused_still_answers_per_item(stub: Stub) -> None:
    bucket = make_bucket(stub, "putnone")
    resp, _ = _put(stub, bucket, [_entry("a", size=0), _entry("b", last_modified_ms=0)])
    assert [(r.code, r.message) for r in resp.results] == [
        (INVALID, "InvalidSize"), (INVALID, "InvalidLastModifiedMs")]


def test_put_objects_request_level_refusals(stub: Stub) -> None:
    bucket = make_bucket(stub, "putlim")
    err = rpc_error(stub.PutObjects, svc.PutObjectsRequest(bucket="Bad_Name", objects=[_entry("a")]))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "InvalidBucketName")
    err = rpc_error(stub.PutObjects, svc.PutObjectsRequest(bucket=bucket))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, batch.EMPTY_BATCH)
    assert _violation(err).field == "objects"
    over = [_entry(f"k{i}") for i in range(batch.MAX_PUT_OBJECTS + 1)]
    err = rpc_error(stub.PutObjects, svc.PutObjectsRequest(bucket=bucket, objects=over))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, batch.TOO_MANY_OBJECTS)
    assert _violation(err).description == (
        f"at most {batch.MAX_PUT_OBJECTS} objects per PutObjects request, got 5001")
    # 1100 keys of 1000 bytes: under the count limit, over the 1 MiB of keys.
    big = [_entry(f"{i:04d}" + "k" * 996) for i in range(1100)]
    err = rpc_error(stub.PutObjects, svc.PutObjectsRequest(bucket=bucket, objects=big))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, batch.BATCH_TOO_LARGE)
    assert "at most 1048576 bytes of keys" in _violation(err).description
    # Exactly at the limits is accepted.
    at = [_entry(f"{i:04d}" + "k" * 1020) for i in range(1024)]  # 1024 × 1024 bytes = 1 MiB
    resp, _ = _put(stub, bucket, at)
    assert {r.code for r in resp.results} == {OK}
    resp, _ = _put(stub, bucket, [_entry(f"n{i}") for i in range(batch.MAX_PUT_OBJECTS)])
    assert len(resp.results) == batch.MAX_PUT_OBJECTS and {r.code for r in resp.results} == {OK}


def test_put_objects_unknown_bucket_is_not_found(stub: Stub) -> None:
    name = f"nope-{uuid.uuid4().hex[:10]}"
    err = rpc_error(stub.PutObjects, svc.PutObjectsRequest(bucket=name, objects=[_entry("a")]))
    assert_status(err, grpc.StatusCode.NOT_FOUND, "bucket not found")
    assert log_index(err) > 0  # decided by the applied entry


def test_put_objects_retry_with_the_same_request_id_returns_the_original_results(
        stub: Stub, node: NodeProcess) -> None:
    bucket = make_bucket(stub, "putrid")
    entries = [_entry("a"), _entry("b", size=0), _entry("c")]
    rid = uuid.uuid4().hex
    first, c1 = _put(stub, bucket, entries, rid)
    before = _states(node, bucket)
    again, c2 = _put(stub, bucket, entries, rid)
    assert again == first  # the same object ids, the same per-item errors
    assert _states(node, bucket) == before == {"a": ["COMMITTED"], "c": ["COMMITTED"]}
    assert log_index(c2) > log_index(c1)
    # Another batch under the same id is refused, also when only a refused item differs.
    for other in (entries[:1], [entries[0], _entry("b", size=-1), entries[2]]):
        err = rpc_error(stub.PutObjects, svc.PutObjectsRequest(bucket=bucket, objects=other),
                        metadata=(("x-request-id", rid),))
        assert_status(err, grpc.StatusCode.INVALID_ARGUMENT,
                      "x-request-id reused for a different request")


def test_put_objects_is_atomic_for_readers(stub: Stub, node: NodeProcess) -> None:
    """A reader of the database sees none or all of a batch, never part of it."""
    bucket = make_bucket(stub, "putatomic")
    n = 3000
    seen: set[int] = set()
    done = threading.Event()

    def read() -> None:
        with ro_db(node) as conn:
            while not done.is_set():
                seen.add(conn.execute(
                    "SELECT COUNT(*) FROM objects o JOIN buckets b ON b.id = o.bucket_id"
                    " WHERE b.name = ?", (bucket,)).fetchone()[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        _put(stub, bucket, [_entry(f"k{i}") for i in range(n)])
        _put(stub, bucket, [_entry(f"k{i}") for i in range(n)])  # replaces all of them
    finally:
        done.set()
        reader.join(10)
    with ro_db(node) as conn:
        seen.add(conn.execute("SELECT COUNT(*) FROM objects o JOIN buckets b ON b.id = o.bucket_id"
                              " WHERE b.name = ?", (bucket,)).fetchone()[0])
    assert seen <= {0, n, 2 * n} and 2 * n in seen
    assert {tuple(s) for s in _states(node, bucket).values()} == {("REPLACED", "COMMITTED")}


# ---------------------------------------------------------------------------------------------
# DeleteObjects
# ---------------------------------------------------------------------------------------------


def _delete(stub: Stub, bucket: str, keys: list[str], quiet: bool = False, rid: str = "") -> Any:
    md = (("x-request-id", rid),) if rid else ()
    return stub.DeleteObjects.with_call(
        svc.DeleteObjectsRequest(bucket=bucket, keys=keys, quiet=quiet), timeout=T, metadata=md)


def test_delete_objects_reports_each_key_and_missing_keys_as_deleted(
        stub: Stub, node: NodeProcess) -> None:
    bucket = make_bucket(stub, "del")
    _put(stub, bucket, [_entry("a"), _entry("b"), _entry("c")])
    resp, call = _delete(stub, bucket, ["a", "missing", "bad\x01", "b", "a", "x" * 1025])
    assert [d.key for d in resp.deleted] == ["a", "missing", "b", "a"]
    assert [(e.key, e.code, e.message) for e in resp.errors] == [
        ("bad\x01", "InvalidArgument", "InvalidKeyName"),
        ("x" * 1025, "InvalidArgument", "InvalidKeyName")]
    assert log_index(call) > 0
    assert _states(node, bucket) == {"a": ["DELETED"], "b": ["DELETED"], "c": ["COMMITTED"]}
    err = rpc_error(stub.HeadObject, svc.HeadObjectRequest(bucket=bucket, key="a"))
    assert_status(err, grpc.StatusCode.NOT_FOUND, "object not found")
    # The single-key RPC refuses those keys with the same message.
    err = rpc_error(stub.DeleteObject, svc.DeleteObjectRequest(bucket=bucket, key="bad\x01"))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "InvalidKeyName")


def test_delete_objects_quiet_mode_returns_only_errors(stub: Stub, node: NodeProcess) -> None:
    bucket = make_bucket(stub, "delq")
    _put(stub, bucket, [_entry("a"), _entry("b")])
    resp, _ = _delete(stub, bucket, ["a", "b"], quiet=True)
    assert (list(resp.deleted), list(resp.errors)) == ([], [])
    resp, _ = _delete(stub, bucket, ["a", ""], quiet=True)
    assert list(resp.deleted) == []
    assert [(e.key, e.code, e.message) for e in resp.errors] == [
        ("", "InvalidArgument", "InvalidKeyName")]
    assert _states(node, bucket) == {"a": ["DELETED"], "b": ["DELETED"]}


def test_delete_objects_request_level_refusals(stub: Stub) -> None:
    bucket = make_bucket(stub, "dellim")
    err = rpc_error(stub.DeleteObjects, svc.DeleteObjectsRequest(bucket="Bad_Name", keys=["a"]))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "InvalidBucketName")
    err = rpc_error(stub.DeleteObjects, svc.DeleteObjectsRequest(bucket=bucket))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, batch.EMPTY_BATCH)
    keys = [f"k{i}" for i in range(batch.MAX_DELETE_KEYS + 1)]
    err = rpc_error(stub.DeleteObjects, svc.DeleteObjectsRequest(bucket=bucket, keys=keys))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, batch.TOO_MANY_OBJECTS)
    v = _violation(err)
    assert (v.field, v.description) == ("keys", "at most 1000 keys per DeleteObjects request, got 1001")
    resp, _ = _delete(stub, bucket, keys[:1000])  # exactly the limit
    assert len(resp.deleted) == 1000
    err = rpc_error(stub.DeleteObjects, svc.DeleteObjectsRequest(
        bucket=f"nope-{uuid.uuid4().hex[:10]}", keys=["a"]))
    assert_status(err, grpc.StatusCode.NOT_FOUND, "bucket not found")


def test_delete_objects_retry_with_the_same_request_id_applies_once(
        stub: Stub, node: NodeProcess) -> None:
    bucket = make_bucket(stub, "delrid")
    _put(stub, bucket, [_entry("a")])
    rid = uuid.uuid4().hex
    first, _ = _delete(stub, bucket, ["a"], rid=rid)
    # A new object under the key in between: the retry must not delete it.
    _put(stub, bucket, [_entry("a")])
    again, _ = _delete(stub, bucket, ["a"], rid=rid)
    assert again == first
    assert _states(node, bucket) == {"a": ["DELETED", "COMMITTED"]}
    err = rpc_error(stub.DeleteObjects, svc.DeleteObjectsRequest(bucket=bucket, keys=["a"],
                                                                 quiet=True),
                    metadata=(("x-request-id", rid),))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT,
                  "x-request-id reused for a different request")
    assert _states(node, bucket) == {"a": ["DELETED", "COMMITTED"]}


@pytest.mark.parametrize("method", ["PutObjects", "DeleteObjects"])
def test_batch_rpcs_refuse_malformed_requests(stub: Stub, node: NodeProcess, method: str) -> None:
    ch = node.channel()
    call = ch.unary_unary(f"/gantry.service.v1.GantryService/{method}",
                          request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as ei:
        call(b"\x0a\x02\xff\xfe", timeout=T)  # field 1 (bucket): invalid UTF-8
    assert_status(ei.value, grpc.StatusCode.INVALID_ARGUMENT, "malformed request")

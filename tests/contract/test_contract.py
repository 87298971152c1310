"""DESIGN.md §1 ("The contract") checked against a real node process over real gRPC.

The ``node`` fixture (tests/conftest.py) is shared by every test in this module, so each test uses
its own bucket names. Database assertions open the node's SQLite file read-only.
"""

from __future__ import annotations

import calendar
import contextlib
import pathlib
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from grpc_status import rpc_status

from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.service.v1 import service_pb2_grpc
from tests.support import NodeProcess, single_node, wait_until

T = 10  # seconds: deadline of every call
CRADLE = "127.0.0.1:9"
GIB5 = 5368709120
RFC3339_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
LOG_INDEX = "x-gantry-log-index"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def uniq(prefix: str) -> str:
    """A valid bucket name unique to this call."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def ro_db(node: NodeProcess) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{node.data_dir / 'gantry.db'}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def rpc_error(fn: Callable[..., Any], req: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(req, timeout=T, **kw)
    return ei.value


def assert_status(err: grpc.RpcError, code: grpc.StatusCode, message: str) -> None:
    assert (err.code(), err.details()) == (code, message)


def unpack_details(err: grpc.RpcError) -> list[any_pb2.Any]:
    st = rpc_status.from_call(err)
    assert st is not None, "no google.rpc.Status in the trailers"
    assert st.code == err.code().value[0]
    assert st.message == err.details()
    return list(st.details)


def detail_of(err: grpc.RpcError, cls: Any) -> Any:
    matches = []
    for a in unpack_details(err):
        if a.Is(cls.DESCRIPTOR):
            m = cls()
            assert a.Unpack(m)
            matches.append(m)
    assert len(matches) == 1, f"expected exactly one {cls.DESCRIPTOR.full_name} detail, got {matches}"
    return matches[0]


def log_index(call: Any) -> int:
    values = [v for k, v in (call.trailing_metadata() or ()) if k == LOG_INDEX]
    assert len(values) == 1, f"expected one {LOG_INDEX} trailer, got {call.trailing_metadata()}"
    assert re.fullmatch(r"[0-9]+", values[0]), values[0]
    return int(values[0])


def objects_for(node: NodeProcess, bucket: str, key: str) -> dict[str, str]:
    """object_id -> state for (bucket, key)."""
    with ro_db(node) as conn:
        rows = conn.execute(
            "SELECT o.object_id, o.state FROM objects o JOIN buckets b ON b.id = o.bucket_id"
            " WHERE b.name = ? AND o.key = ?", (bucket, key)).fetchall()
    return dict(rows)


@pytest.fixture(scope="module")
def stub(node: NodeProcess) -> service_pb2_grpc.GantryServiceStub:
    """The node's stub, once its --cradle-addr registration has landed in the database."""

    def registered() -> bool:
        with ro_db(node) as conn:
            return bool(conn.execute("SELECT 1 FROM cradle_servers WHERE address = ?",
                                     (CRADLE,)).fetchone())

    wait_until(registered, 20, what="cradle server registered")
    return node.stub()


def make_bucket(stub: service_pb2_grpc.GantryServiceStub, prefix: str = "b") -> str:
    name = uniq(prefix)
    stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
    return name


def plan(stub: service_pb2_grpc.GantryServiceStub, bucket: str, key: str, size: int = 10) -> str:
    return str(stub.PlanWrite(svc.PlanWriteRequest(bucket=bucket, key=key, size=size),
                              timeout=T).write_plan.object_id)


def commit(stub: service_pb2_grpc.GantryServiceStub, object_id: str, size: int = 10) -> Any:
    return stub.CommitObject.with_call(
        svc.CommitObjectRequest(object_id=object_id, size=size, last_modified_ms=1_700_000_000_000),
        timeout=T)


# ---------------------------------------------------------------------------------------------
# CreateBucket
# ---------------------------------------------------------------------------------------------


def test_create_bucket_success_shape(stub: service_pb2_grpc.GantryServiceStub) -> None:
    name = uniq("create")
    before = time.time()
    resp = stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
    after = time.time()
    assert resp.HasField("bucket")
    assert resp.bucket.name == name
    assert RFC3339_US.match(resp.bucket.created_at_rfc3339), resp.bucket.created_at_rfc3339
    created = calendar.timegm(time.strptime(resp.bucket.created_at_rfc3339[:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 60 <= created <= after + 60


def test_create_bucket_duplicate_already_exists_with_conflict_detail(
        stub: service_pb2_grpc.GantryServiceStub, node: NodeProcess) -> None:
    name = make_bucket(stub, "dup")
    err = rpc_error(stub.CreateBucket, svc.CreateBucketRequest(name=name))
    assert_status(err, grpc.StatusCode.ALREADY_EXISTS, "bucket already exists")
    conflict = detail_of(err, svc.BucketOwnershipConflict)
    assert conflict.reason == svc.BucketOwnershipConflict.REASON_BUCKET_ALREADY_OWNED_BY_YOU
    assert conflict.bucket == name
    # Still exactly one row for the name.
    with ro_db(node) as conn:
        assert conn.execute("SELECT COUNT(*) FROM buckets WHERE name = ?", (name,)).fetchone() == (1,)


def test_create_bucket_concurrent_same_name_exactly_one_wins(
        stub: service_pb2_grpc.GantryServiceStub, node: NodeProcess) -> None:
    name = uniq("race")

    def attempt(_: int) -> tuple[grpc.StatusCode, str, Any]:
        try:
            resp = stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
            return grpc.StatusCode.OK, "", resp
        except grpc.RpcError as e:
            return e.code(), e.details(), e

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    oks = [o for o in outcomes if o[0] == grpc.StatusCode.OK]
    dups = [o for o in outcomes if o[0] != grpc.StatusCode.OK]
    assert len(oks) == 1, [o[:2] for o in outcomes]
    assert oks[0][2].bucket.name == name
    for code, msg, err in dups:
        assert (code, msg) == (grpc.StatusCode.ALREADY_EXISTS, "bucket already exists")
        conflict = detail_of(err, svc.BucketOwnershipConflict)
        assert (conflict.reason, conflict.bucket) == (
            svc.BucketOwnershipConflict.REASON_BUCKET_ALREADY_OWNED_BY_YOU, name)
    with ro_db(node) as conn:
        assert conn.execute("SELECT COUNT(*) FROM buckets WHERE name = ?", (name,)).fetchone() == (1,)


@pytest.mark.parametrize("name", [
    "", "ab", "a" * 64, "UPPER", "under_score", "-lead", "trail-", ".lead", "trail.", "a..b",
    "192.168.1.1", "xn--bucket", "sthree-bucket", "amzn-s3-demo-bucket", "bucket-s3alias",
    "bucket--ol-s3", "bucket.mrap", "bucket--x-s3", "bucket--table-s3", "b\u00fccket",
])
def test_create_bucket_invalid_name(stub: service_pb2_grpc.GantryServiceStub, node: NodeProcess,
                                    name: str) -> None:
    err = rpc_error(stub.CreateBucket, svc.CreateBucketRequest(name=name))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "InvalidBucketName")
    with ro_db(node) as conn:
        assert conn.execute("SELECT COUNT(*) FROM buckets WHERE name = ?", (name,)).fetchone() == (0,)


def test_committed_write_with_error_result_carries_log_index(
        stub: service_pb2_grpc.GantryServiceStub) -> None:
    name = make_bucket(stub, "idxerr")
    err = rpc_error(stub.CreateBucket, svc.CreateBucketRequest(name=name))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert log_index(err) > 0


# ---------------------------------------------------------------------------------------------
# Error hygiene
# ---------------------------------------------------------------------------------------------


def test_errors_carry_no_stack_trace(stub: service_pb2_grpc.GantryServiceStub) -> None:
    errs = [
        rpc_error(stub.CreateBucket, svc.CreateBucketRequest(name="BAD")),
        rpc_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=uniq("none"), key="k", size=1)),
        rpc_error(stub.CommitObject, svc.CommitObjectRequest(object_id="missing", size=1,
                                                             last_modified_ms=1)),
    ]
    for e in errs:
        assert e.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
        assert "Traceback" not in e.details() and 'File "' not in e.details()


def test_create_bucket_name_with_trailing_newline_is_invalid(
        stub: service_pb2_grpc.GantryServiceStub) -> None:
    name = uniq("nl") + "\n"
    err = rpc_error(stub.CreateBucket, svc.CreateBucketRequest(name=name))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "InvalidBucketName")


def test_create_bucket_boundary_lengths_accepted(stub: service_pb2_grpc.GantryServiceStub) -> None:
    tag = uuid.uuid4().hex[:8]
    for name in (f"{tag[:3]}", (tag + "x" * 63)[:63], f"{tag}.dots-and-hyphens.9"):
        resp = stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
        assert resp.bucket.name == name


def test_list_buckets_oldest_first_with_rfc3339_us(stub: service_pb2_grpc.GantryServiceStub) -> None:
    # Names deliberately in reverse alphabetical order, so an ORDER BY name would fail.
    tag = uuid.uuid4().hex[:8]
    names = [f"zz-{tag}", f"mm-{tag}", f"aa-{tag}"]
    created = [stub.CreateBucket(svc.CreateBucketRequest(name=n), timeout=T).bucket for n in names]

    resp = stub.ListBuckets(svc.ListBucketsRequest(), timeout=T)
    listed = list(resp.buckets)
    assert listed, "ListBuckets returned nothing"
    for b in listed:
        assert RFC3339_US.match(b.created_at_rfc3339), b
    # Oldest first across the whole listing (fixed-width UTC strings sort chronologically).
    stamps = [b.created_at_rfc3339 for b in listed]
    assert stamps == sorted(stamps)
    # Ours appear in creation order, with the timestamps CreateBucket returned.
    mine = [b for b in listed if b.name in names]
    assert [b.name for b in mine] == names
    assert [b.created_at_rfc3339 for b in mine] == [c.created_at_rfc3339 for c in created]
    # Names are unique in the listing.
    assert len({b.name for b in listed}) == len(listed)


def test_list_buckets_empty_request_succeeds(stub: service_pb2_grpc.GantryServiceStub) -> None:
    name = make_bucket(stub, "listed")
    resp, call = stub.ListBuckets.with_call(svc.ListBucketsRequest(), timeout=T)
    assert call.code() == grpc.StatusCode.OK
    assert name in {b.name for b in resp.buckets}


@pytest.mark.parametrize(("bucket", "key", "size", "message"), [
    pytest.param("Bad_Bucket", "", 0, "InvalidSize", id="size0-badbucket-badkey"),
    pytest.param("Bad_Bucket", "", -5, "InvalidSize", id="negative-badbucket-badkey"),
    pytest.param("Bad_Bucket", "", GIB5 + 1, "EntityTooLarge", id="toolarge-badbucket-badkey"),
    pytest.param("Bad_Bucket", "", 1, "InvalidBucketName", id="badbucket-badkey"),
    pytest.param("", "k\x00", 1, "InvalidBucketName", id="emptybucket-badkey"),
    pytest.param("no-such-bucket-zz", "", 1, "InvalidKeyName", id="unknownbucket-emptykey"),
    pytest.param("no-such-bucket-zz", "k" * 1025, 1, "InvalidKeyName", id="unknownbucket-longkey"),
    pytest.param("no-such-bucket-zz", "a\x01b", 1, "InvalidKeyName", id="unknownbucket-ctrlkey"),
    pytest.param("no-such-bucket-zz", "a\rb", 1, "InvalidKeyName", id="unknownbucket-crkey"),
])
def test_plan_write_validation_order(stub: service_pb2_grpc.GantryServiceStub, bucket: str, key: str,
                                     size: int, message: str) -> None:
    err = rpc_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=bucket, key=key, size=size))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, message)


def test_plan_write_unknown_bucket(stub: service_pb2_grpc.GantryServiceStub, node: NodeProcess) -> None:
    name = uniq("missing")
    with ro_db(node) as conn:
        before = conn.execute("SELECT COUNT(*) FROM objects").fetchone()
    err = rpc_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=name, key="k", size=1))
    assert_status(err, grpc.StatusCode.NOT_FOUND, "bucket not found")
    pwe = detail_of(err, svc.PlanWriteError)
    assert pwe.reason == svc.PlanWriteError.REASON_BUCKET_NOT_FOUND
    assert pwe.bucket == name
    with ro_db(node) as conn:
        assert conn.execute("SELECT COUNT(*) FROM objects").fetchone() == before


def test_plan_write_size_boundary(stub: service_pb2_grpc.GantryServiceStub, node: NodeProcess) -> None:
    bucket = make_bucket(stub, "big")
    oid = plan(stub, bucket, "exactly-5gib", GIB5)
    assert ULID.match(oid)
    with ro_db(node) as conn:
        assert conn.execute("SELECT size_expected, state FROM objects WHERE object_id = ?",
                            (oid,)).fetchone() == (GIB5, "PENDING")
    err = rpc_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=bucket, key="too-big", size=GIB5 + 1))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "EntityTooLarge")
    assert objects_for(node, bucket, "too-big") == {}


def test_plan_write_success_shape_and_pending_row(stub: service_pb2_grpc.GantryServiceStub,
                                                  node: NodeProcess) -> None:
    bucket = make_bucket(stub, "plan")
    resp, call = stub.PlanWrite.with_call(svc.PlanWriteRequest(bucket=bucket, key="dir/obj.txt", size=42),
                                          timeout=T)
    wp = resp.write_plan
    assert len(wp.object_id) == 26 and ULID.match(wp.object_id), wp.object_id
    assert wp.cradle_address == CRADLE
    assert log_index(call) > 0
    with ro_db(node) as conn:
        row = conn.execute(
            "SELECT b.name, o.key, o.state, o.size_expected FROM objects o JOIN buckets b"
            " ON b.id = o.bucket_id WHERE o.object_id = ?", (wp.object_id,)).fetchone()
    assert row == (bucket, "dir/obj.txt", "PENDING", 42)


def test_plan_write_ids_are_unique(stub: service_pb2_grpc.GantryServiceStub) -> None:
    bucket = make_bucket(stub, "ids")
    ids = [plan(stub, bucket, "same-key") for _ in range(5)]
    assert len(set(ids)) == 5


@pytest.mark.parametrize("key", [
    pytest.param("k", id="1-byte"),
    pytest.param("k" * 1024, id="1024-bytes"),
    pytest.param("\u00e9" * 512, id="1024-bytes-multibyte"),
    pytest.param("tab\tand\nnewline", id="tab-newline"),
    pytest.param("del\x7f", id="0x7f"),
])
def test_plan_write_accepts_valid_keys(stub: service_pb2_grpc.GantryServiceStub, key: str) -> None:
    bucket = make_bucket(stub, "keys")
    assert ULID.match(plan(stub, bucket, key, 1))


def test_plan_write_rejects_multibyte_key_over_1024_bytes(stub: service_pb2_grpc.GantryServiceStub) -> None:
    bucket = make_bucket(stub, "keys")
    err = rpc_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=bucket, key="\u00e9" * 513, size=1))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, "InvalidKeyName")


def test_plan_write_without_cradle_servers(tmp_path: pathlib.Path) -> None:
    """A node with no storage server registered: FAILED_PRECONDITION + REASON_NO_CRADLE_SERVERS."""
    with single_node(tmp_path, env={"GANTRY_CRADLE_ADDR": ""}) as nd:
        st = nd.stub()
        name = uniq("nocradle")
        st.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
        err = rpc_error(st.PlanWrite, svc.PlanWriteRequest(bucket=name, key="k", size=1))
        assert_status(err, grpc.StatusCode.FAILED_PRECONDITION, "no cradle servers available")
        pwe = detail_of(err, svc.PlanWriteError)
        assert pwe.reason == svc.PlanWriteError.REASON_NO_CRADLE_SERVERS
        assert pwe.bucket == name
        with ro_db(nd) as conn:
            assert conn.execute("SELECT COUNT(*) FROM objects").fetchone() == (0,)


@pytest.mark.parametrize(("object_id", "size", "lm", "message"), [
    pytest.param("", 0, 0, "InvalidSize", id="all-bad"),
    pytest.param("", -1, -1, "InvalidSize", id="all-negative"),
    pytest.param("01ARZ3NDEKTSV4RRFFQ69G5FAV", 0, 1, "InvalidSize", id="size0-only"),
    pytest.param("", 1, 0, "InvalidObjectID", id="emptyid-lm0"),
    pytest.param("", 1, 1, "InvalidObjectID", id="emptyid-only"),
    pytest.param("01ARZ3NDEKTSV4RRFFQ69G5FAV", 1, 0, "InvalidLastModifiedMs", id="lm0"),
    pytest.param("01ARZ3NDEKTSV4RRFFQ69G5FAV", 1, -1, "InvalidLastModifiedMs", id="lm-negative"),
    pytest.param("01ARZ3NDEKTSV4RRFFQ69G5FAV", 5 * 1024**3 + 1, 1, "EntityTooLarge", id="over-5gib"),
    pytest.param("01ARZ3NDEKTSV4RRFFQ69G5FAV", 2**63 - 1, 1, "EntityTooLarge", id="int64-max"),
    pytest.param("", 2**63 - 1, 0, "EntityTooLarge", id="too-large-first"),
])
def test_commit_object_validation_order(stub: service_pb2_grpc.GantryServiceStub, object_id: str,
                                        size: int, lm: int, message: str) -> None:
    err = rpc_error(stub.CommitObject, svc.CommitObjectRequest(object_id=object_id, size=size,
                                                               last_modified_ms=lm))
    assert_status(err, grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize("object_id", ["01ARZ3NDEKTSV4RRFFQ69G5FAV", "nope", "x" * 64])
def test_commit_unknown_object_not_found(stub: service_pb2_grpc.GantryServiceStub, object_id: str) -> None:
    err = rpc_error(stub.CommitObject, svc.CommitObjectRequest(object_id=object_id, size=1,
                                                               last_modified_ms=1))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details()


def test_commit_success_shape_and_committed_row(stub: service_pb2_grpc.GantryServiceStub,
                                                node: NodeProcess) -> None:
    bucket = make_bucket(stub, "commit")
    oid = plan(stub, bucket, "obj", 10)
    resp, call = commit(stub, oid, 7)
    assert resp == svc.CommitObjectResponse()
    assert resp.ByteSize() == 0
    assert log_index(call) > 0
    with ro_db(node) as conn:
        row = conn.execute("SELECT state, size_actual FROM objects WHERE object_id = ?", (oid,)).fetchone()
    assert row == ("COMMITTED", 7)


def test_commit_twice_failed_precondition(stub: service_pb2_grpc.GantryServiceStub,
                                          node: NodeProcess) -> None:
    bucket = make_bucket(stub, "twice")
    oid = plan(stub, bucket, "k")
    commit(stub, oid)
    err = rpc_error(stub.CommitObject, svc.CommitObjectRequest(object_id=oid, size=10,
                                                               last_modified_ms=1_700_000_000_000))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() and "Traceback" not in err.details()
    assert objects_for(node, bucket, "k") == {oid: "COMMITTED"}


def test_commit_replaces_previous_committed(stub: service_pb2_grpc.GantryServiceStub,
                                            node: NodeProcess) -> None:
    bucket = make_bucket(stub, "replace")
    first = plan(stub, bucket, "photo.jpg")
    commit(stub, first)
    assert objects_for(node, bucket, "photo.jpg") == {first: "COMMITTED"}
    second = plan(stub, bucket, "photo.jpg")
    # A PENDING write does not disturb the committed one.
    assert objects_for(node, bucket, "photo.jpg") == {first: "COMMITTED", second: "PENDING"}
    commit(stub, second)
    with ro_db(node) as conn:
        rows = conn.execute(
            "SELECT o.object_id, o.state FROM objects o JOIN buckets b ON b.id = o.bucket_id"
            " WHERE b.name = ? AND o.key = ? AND o.state = 'COMMITTED'", (bucket, "photo.jpg")).fetchall()
        assert rows == [(second, "COMMITTED")]
        assert conn.execute("SELECT state FROM objects WHERE object_id = ?", (first,)).fetchone() == (
            "REPLACED",)
    # A replaced object cannot be committed again.
    err = rpc_error(stub.CommitObject, svc.CommitObjectRequest(object_id=first, size=10,
                                                               last_modified_ms=1))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert objects_for(node, bucket, "photo.jpg") == {first: "REPLACED", second: "COMMITTED"}


def test_commit_later_in_log_wins_even_if_planned_earlier(stub: service_pb2_grpc.GantryServiceStub,
                                                          node: NodeProcess) -> None:
    bucket = make_bucket(stub, "order")
    a = plan(stub, bucket, "k")
    b = plan(stub, bucket, "k")
    commit(stub, b)
    commit(stub, a)  # later in the log: wins although planned first
    assert objects_for(node, bucket, "k") == {a: "COMMITTED", b: "REPLACED"}


def test_same_key_in_other_bucket_is_not_replaced(stub: service_pb2_grpc.GantryServiceStub,
                                                  node: NodeProcess) -> None:
    b1, b2 = make_bucket(stub, "iso"), make_bucket(stub, "iso")
    o1, o2 = plan(stub, b1, "k"), plan(stub, b2, "k")
    commit(stub, o1)
    commit(stub, o2)
    assert objects_for(node, b1, "k") == {o1: "COMMITTED"}
    assert objects_for(node, b2, "k") == {o2: "COMMITTED"}


def test_concurrent_commits_same_key_one_committed_highest_index_wins(
        stub: service_pb2_grpc.GantryServiceStub, node: NodeProcess) -> None:
    bucket = make_bucket(stub, "race")
    ids = [plan(stub, bucket, "hot") for _ in range(8)]
    with ThreadPoolExecutor(len(ids)) as pool:
        results = list(pool.map(lambda oid: (oid, log_index(commit(stub, oid)[1])), ids))
    indices = [i for _, i in results]
    assert len(set(indices)) == len(indices), "each commit has its own log index"
    winner = max(results, key=lambda r: r[1])[0]
    states = objects_for(node, bucket, "hot")
    assert states == {oid: ("COMMITTED" if oid == winner else "REPLACED") for oid in ids}


def test_writes_carry_increasing_log_index(stub: service_pb2_grpc.GantryServiceStub,
                                           node: NodeProcess) -> None:
    indices = []
    name = uniq("idx")
    _, call = stub.CreateBucket.with_call(svc.CreateBucketRequest(name=name), timeout=T)
    indices.append(log_index(call))
    for key in ("a", "b"):
        resp, call = stub.PlanWrite.with_call(svc.PlanWriteRequest(bucket=name, key=key, size=3), timeout=T)
        indices.append(log_index(call))
        _, call = commit(stub, resp.write_plan.object_id, 3)
        indices.append(log_index(call))
    _, call = stub.CreateBucket.with_call(svc.CreateBucketRequest(name=uniq("idx")), timeout=T)
    indices.append(log_index(call))
    assert all(i > 0 for i in indices)
    assert indices == sorted(indices) and len(set(indices)) == len(indices), indices
    # The write was applied on this node before the reply: the stored applied index covers it.
    with ro_db(node) as conn:
        applied = conn.execute("SELECT applied_index FROM raft_applied").fetchone()[0]
    assert applied >= indices[-1]


def test_reads_carry_the_applied_index_they_saw(stub: service_pb2_grpc.GantryServiceStub) -> None:
    _, wcall = stub.CreateBucket.with_call(svc.CreateBucketRequest(name=uniq("ridx")), timeout=T)
    _, rcall = stub.ListBuckets.with_call(svc.ListBucketsRequest(), timeout=T)
    assert log_index(rcall) >= log_index(wcall)

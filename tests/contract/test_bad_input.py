"""Bad input over real gRPC: never INTERNAL or UNKNOWN, always a clear status, never half-applied.

Raw bytes go through ``channel.unary_unary(..., request_serializer=None)`` so the node's own
deserializer sees exactly what a broken or hostile client would send.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.service.v1 import service_pb2_grpc
from tests.support import NodeProcess, single_node, wait_until

T = 10  # seconds: deadline of every call
SERVICE = "/gantry.service.v1.GantryService"
METHODS = ("CreateBucket", "ListBuckets", "PlanWrite", "CommitObject")
NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
#: Messages a client may see for a request the node refuses as bad input.
KNOWN_INVALID = {"malformed request", "InvalidBucketName", "InvalidKeyName", "InvalidSize",
                 "EntityTooLarge", "InvalidObjectID", "InvalidLastModifiedMs"}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def ro_db(node: NodeProcess) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{node.data_dir / 'gantry.db'}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def snapshot(node: NodeProcess) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a request could touch."""
    with ro_db(node) as conn:
        return {
            "buckets": conn.execute("SELECT id, name, created_at FROM buckets ORDER BY id").fetchall(),
            "objects": conn.execute("SELECT object_id, bucket_id, key, state, size_expected, size_actual"
                                    " FROM objects ORDER BY object_id").fetchall(),
            "cradle_servers": conn.execute("SELECT id, address FROM cradle_servers ORDER BY id").fetchall(),
        }


def raw(node: NodeProcess, method: str) -> Any:
    return node.channel().unary_unary(f"{SERVICE}/{method}", request_serializer=None,
                                      response_deserializer=None)


def raw_error(node: NodeProcess, method: str, data: bytes) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        raw(node, method)(data, timeout=T)
    return ei.value


def call_error(fn: Any, req: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(req, timeout=T)
    return ei.value


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def vi(field: int, value: int) -> bytes:
    """A varint field."""
    return varint(field << 3) + varint(value)


@pytest.fixture(scope="module")
def stub(node: NodeProcess) -> service_pb2_grpc.GantryServiceStub:
    def registered() -> bool:
        with ro_db(node) as conn:
            return bool(conn.execute("SELECT 1 FROM cradle_servers").fetchone())

    wait_until(registered, 20, what="cradle server registered")
    return node.stub()


@pytest.fixture(scope="module")
def live(stub: service_pb2_grpc.GantryServiceStub) -> dict[str, str]:
    """A real bucket and a PENDING object in it, so bad input meets existing state."""
    bucket = f"live-{uuid.uuid4().hex[:10]}"
    stub.CreateBucket(svc.CreateBucketRequest(name=bucket), timeout=T)
    oid = stub.PlanWrite(svc.PlanWriteRequest(bucket=bucket, key="k", size=5),
                         timeout=T).write_plan.object_id
    return {"bucket": bucket, "object_id": oid}


# ---------------------------------------------------------------------------------------------
# malformed protobuf bytes → INVALID_ARGUMENT
# ---------------------------------------------------------------------------------------------

MALFORMED = [
    pytest.param(b"\xff\xff\xff", id="garbage"),
    pytest.param(b"\x08", id="tag-without-value"),
    pytest.param(b"\x08\x80", id="truncated-varint"),
    pytest.param(b"\x08" + b"\xff" * 10 + b"\x01", id="overlong-varint"),
    pytest.param(b"\x0a\x05ab", id="length-past-end"),
    pytest.param(b"\x0a\xff\xff\xff\xff\x0f", id="huge-length"),
    pytest.param(b"\x0a\x02\xc3\x28", id="field1-invalid-utf8"),
    pytest.param(b"\x0a\x01\x80", id="field1-lone-continuation-byte"),
    pytest.param(b"\x0a\x03\xed\xa0\x80", id="field1-utf8-encoded-surrogate"),
    pytest.param(b"\x00", id="field-number-0"),
    pytest.param(b"\x0f", id="wire-type-7"),
    pytest.param(b"\x0b", id="unterminated-group"),
    pytest.param(b"\x0c", id="stray-end-group"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_bytes_invalid_argument(node: NodeProcess, stub: Any, method: str, data: bytes) -> None:
    if method == "ListBuckets" and data in (b"\x0a\x02\xc3\x28", b"\x0a\x01\x80", b"\x0a\x03\xed\xa0\x80"):
        # ListBucketsRequest has no field 1: a well-formed unknown field is legitimately ignored.
        resp = raw(node, method)(data, timeout=T)
        assert isinstance(resp, bytes)
        svc.ListBucketsResponse.FromString(resp)
        return
    err = raw_error(node, method, data)
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed request")


@pytest.mark.parametrize(("method", "data"), [
    pytest.param("PlanWrite", vi(3, 1) + ld(1, b"ok-bucket") + ld(2, b"\xc3\x28"),
                 id="plan-key-invalid-utf8"),
    pytest.param("PlanWrite", vi(3, 1) + ld(1, b"\xc3\x28") + ld(2, b"k"), id="plan-bucket-invalid-utf8"),
    pytest.param("CommitObject", ld(1, b"\xff\xfe") + vi(2, 1) + vi(3, 1), id="commit-id-invalid-utf8"),
])
def test_invalid_utf8_in_any_string_field(node: NodeProcess, stub: Any, method: str, data: bytes) -> None:
    err = raw_error(node, method, data)
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed request")


# ---------------------------------------------------------------------------------------------
# wrong wire types → a clear non-INTERNAL status
# ---------------------------------------------------------------------------------------------

WRONG_WIRE = [
    pytest.param("CreateBucket", vi(1, 5), id="create-name-as-varint"),
    pytest.param("CreateBucket", b"\x0d\x01\x02\x03\x04", id="create-name-as-fixed32"),
    pytest.param("CreateBucket", b"\x09" + b"\x00" * 8, id="create-name-as-fixed64"),
    pytest.param("PlanWrite", vi(1, 5) + ld(2, b"k") + vi(3, 1), id="plan-bucket-as-varint"),
    pytest.param("PlanWrite", ld(1, b"abc") + vi(2, 7) + vi(3, 1), id="plan-key-as-varint"),
    pytest.param("PlanWrite", ld(1, b"abc") + ld(2, b"k") + ld(3, b"\x01"), id="plan-size-as-bytes"),
    pytest.param("PlanWrite", vi(1, 5), id="plan-field1-varint-only"),
    pytest.param("CommitObject", vi(1, 5) + vi(2, 1) + vi(3, 1), id="commit-id-as-varint"),
    pytest.param("CommitObject", ld(1, b"x") + ld(2, b"\x01") + vi(3, 1), id="commit-size-as-bytes"),
    pytest.param("CommitObject", ld(1, b"x") + vi(2, 1) + ld(3, b"\x01"), id="commit-lm-as-bytes"),
    pytest.param("ListBuckets", vi(1, 5), id="list-unknown-varint"),
]


@pytest.mark.parametrize(("method", "data"), WRONG_WIRE)
def test_wrong_wire_types_clear_status(node: NodeProcess, stub: Any, method: str, data: bytes) -> None:
    before = snapshot(node)
    try:
        resp = raw(node, method)(data, timeout=T)
    except grpc.RpcError as err:
        assert err.code() not in NEVER, (err.code(), err.details())
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
        assert err.details() in KNOWN_INVALID
    else:
        # Only ListBuckets (no fields, unknown ones skipped) may succeed on these.
        assert method == "ListBuckets"
        svc.ListBucketsResponse.FromString(resp)
    assert snapshot(node) == before


@pytest.mark.parametrize(("method", "data", "message"), [
    pytest.param("CreateBucket", vi(1, 5), "InvalidBucketName", id="create"),
    pytest.param("PlanWrite", vi(1, 5) + ld(2, b"k") + vi(3, 1), "InvalidBucketName", id="plan-bucket"),
    pytest.param("PlanWrite", vi(1, 5) + vi(3, 0), "InvalidSize", id="plan-size-first"),
    pytest.param("CommitObject", vi(1, 5) + vi(2, 1) + vi(3, 1), "InvalidObjectID", id="commit-id"),
])
def test_wrong_wire_type_field_reads_as_unset(node: NodeProcess, stub: Any, method: str, data: bytes,
                                              message: str) -> None:
    err = raw_error(node, method, data)
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_negative_size_as_ten_byte_varint(node: NodeProcess, stub: Any, live: dict[str, str]) -> None:
    data = ld(1, live["bucket"].encode()) + ld(2, b"k") + vi(3, -1)
    assert len(vi(3, -1)) == 11
    err = raw_error(node, "PlanWrite", data)
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidSize")


# ---------------------------------------------------------------------------------------------
# empty requests → the documented INVALID_ARGUMENT message
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "message"), [
    ("CreateBucket", "InvalidBucketName"),
    ("PlanWrite", "InvalidSize"),
    ("CommitObject", "InvalidSize"),
])
def test_empty_request(node: NodeProcess, stub: Any, method: str, message: str) -> None:
    err = raw_error(node, method, b"")
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_empty_list_buckets_request_succeeds(node: NodeProcess, stub: Any, live: dict[str, str]) -> None:
    resp = svc.ListBucketsResponse.FromString(raw(node, "ListBuckets")(b"", timeout=T))
    assert live["bucket"] in {b.name for b in resp.buckets}


# ---------------------------------------------------------------------------------------------
# huge fields
# ---------------------------------------------------------------------------------------------


def test_huge_bucket_name(node: NodeProcess, stub: service_pb2_grpc.GantryServiceStub) -> None:
    name = "a" * (1024 * 1024)
    err = call_error(stub.CreateBucket, svc.CreateBucketRequest(name=name))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidBucketName")
    err = call_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=name, key="k", size=1))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidBucketName")


@pytest.mark.parametrize("key", [
    pytest.param("k" * 2000, id="2000-bytes"),
    pytest.param("k" * (1024 * 1024), id="1MB"),
    pytest.param("\u00e9" * 1000, id="1000-chars-2000-bytes"),
])
def test_huge_key(stub: service_pb2_grpc.GantryServiceStub, live: dict[str, str], key: str) -> None:
    err = call_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=live["bucket"], key=key, size=1))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidKeyName")


@pytest.mark.parametrize("object_id", [
    pytest.param("x" * (3 * 1024 * 1024), id="3MB"),
    pytest.param("a\x00b", id="embedded-nul"),
    pytest.param("\u00e9" * 26, id="non-ascii"),
    pytest.param("0" * 65, id="65-chars"),
    pytest.param("0" * 4096, id="4KB"),
])
def test_huge_object_id_not_found(stub: service_pb2_grpc.GantryServiceStub, object_id: str) -> None:
    err = call_error(stub.CommitObject, svc.CommitObjectRequest(object_id=object_id, size=1,
                                                                last_modified_ms=1))
    assert err.code() == grpc.StatusCode.NOT_FOUND, (err.code(), err.details())


def test_huge_object_id_keeps_check_order(stub: service_pb2_grpc.GantryServiceStub) -> None:
    big = "x" * (3 * 1024 * 1024)
    err = call_error(stub.CommitObject, svc.CommitObjectRequest(object_id=big, size=0, last_modified_ms=1))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidSize")
    err = call_error(stub.CommitObject, svc.CommitObjectRequest(object_id=big, size=1, last_modified_ms=0))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidLastModifiedMs")


def test_request_over_message_limit_is_resource_exhausted(node: NodeProcess, stub: Any) -> None:
    err = raw_error(node, "CreateBucket", ld(1, b"a" * (5 * 1024 * 1024)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
    # The node survives it.
    svc.ListBucketsResponse.FromString(raw(node, "ListBuckets")(b"", timeout=T))


@pytest.mark.parametrize("key", ["a\x00b", "\x01", "a\rb", "a\x1f"])
def test_control_bytes_in_key(stub: service_pb2_grpc.GantryServiceStub, live: dict[str, str],
                              key: str) -> None:
    err = call_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=live["bucket"], key=key, size=1))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidKeyName")


@pytest.mark.parametrize("name", ["a\x00b", "abc\x00", "\x00\x00\x00", "ab\u200bc", "ABC"])
def test_odd_bucket_names(stub: service_pb2_grpc.GantryServiceStub, name: str) -> None:
    err = call_error(stub.CreateBucket, svc.CreateBucketRequest(name=name))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidBucketName")


def test_huge_last_modified_ms_does_not_kill_the_node(tmp_path: pathlib.Path) -> None:
    """Runs on its own node: the failure mode is the node process exiting. Any value above
    9223372036854775 ms triggers it; 2**62 stands for them all."""
    lm = 2**62
    with single_node(tmp_path, ["--cradle-addr", "127.0.0.1:9"]) as nd:
        st = nd.stub()

        def registered() -> bool:
            with ro_db(nd) as conn:
                return bool(conn.execute("SELECT 1 FROM cradle_servers").fetchone())

        wait_until(registered, 20, what="cradle server registered")
        st.CreateBucket(svc.CreateBucketRequest(name="lm-bucket"), timeout=T)
        oid = st.PlanWrite(svc.PlanWriteRequest(bucket="lm-bucket", key="k", size=1),
                           timeout=T).write_plan.object_id
        try:
            st.CommitObject(svc.CommitObjectRequest(object_id=oid, size=1, last_modified_ms=lm), timeout=2)
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        # Either accepted or refused as InvalidLastModifiedMs; never a dead node.
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), code
        assert nd.proc is not None and nd.proc.poll() is None, "node process exited"
        assert nd.is_serving()
        st.CreateBucket(svc.CreateBucketRequest(name="lm-after"), timeout=T)


# ---------------------------------------------------------------------------------------------
# no deadline, unknown methods
# ---------------------------------------------------------------------------------------------


def test_calls_without_deadline_work(stub: service_pb2_grpc.GantryServiceStub, node: NodeProcess) -> None:
    """No ``timeout=`` on the call (no grpc-timeout header); the wait here is bounded client-side."""
    name = f"nodeadline-{uuid.uuid4().hex[:10]}"
    created = stub.CreateBucket.future(svc.CreateBucketRequest(name=name)).result(timeout=T)
    assert created.bucket.name == name
    listed = stub.ListBuckets.future(svc.ListBucketsRequest()).result(timeout=T)
    assert name in {b.name for b in listed.buckets}
    planned = stub.PlanWrite.future(svc.PlanWriteRequest(bucket=name, key="k", size=3)).result(timeout=T)
    oid = planned.write_plan.object_id
    fut = stub.CommitObject.future(svc.CommitObjectRequest(object_id=oid, size=3, last_modified_ms=1))
    assert fut.result(timeout=T) == svc.CommitObjectResponse()
    # Errors without a deadline are still prompt and clear.
    fut = stub.CreateBucket.future(svc.CreateBucketRequest(name=name))
    assert fut.exception(timeout=T).code() == grpc.StatusCode.ALREADY_EXISTS
    fut = stub.CreateBucket.future(svc.CreateBucketRequest(name="NO"))
    assert fut.exception(timeout=T).code() == grpc.StatusCode.INVALID_ARGUMENT
    with ro_db(node) as conn:
        assert conn.execute("SELECT state FROM objects WHERE object_id = ?", (oid,)).fetchone() == (
            "COMMITTED",)


@pytest.mark.parametrize("path", [
    f"{SERVICE}/DestroyEverything",
    f"{SERVICE}/createbucket",
    "/gantry.service.v1.NoSuchService/CreateBucket",
    "/gantry.service.v2.GantryService/CreateBucket",
])
def test_unknown_method_unimplemented(node: NodeProcess, stub: Any, path: str) -> None:
    fn = node.channel().unary_unary(path, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as ei:
        fn(b"", timeout=T)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------------------------------------
# nothing half-applied
# ---------------------------------------------------------------------------------------------


def test_bad_input_leaves_no_trace(node: NodeProcess, stub: service_pb2_grpc.GantryServiceStub,
                                   live: dict[str, str]) -> None:
    """A barrage of refused requests changes no row, and every answer is a clear non-INTERNAL one."""
    before = snapshot(node)
    bad_names = ["", "ab", "a" * 64, "UPPER", "under_score", "-x-", "a..b", "10.1.2.3", "xn--zz",
                 "zz--x-s3", "a" * (1024 * 1024), "b\u00fccket", "nul\x00nul"]
    codes = []
    for name in bad_names:
        codes.append(call_error(stub.CreateBucket, svc.CreateBucketRequest(name=name)).code())
        codes.append(call_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=name, key="k", size=1)).code())
    for key in ["", "k" * 1025, "k" * 2000, "\u00e9" * 513, "a\x00", "a\r"]:
        codes.append(call_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=live["bucket"], key=key,
                                                                      size=1)).code())
    for size in (0, -1, 5368709121, 2**63 - 1):
        codes.append(call_error(stub.PlanWrite, svc.PlanWriteRequest(bucket=live["bucket"], key="k",
                                                                      size=size)).code())
    for oid, size, lm in [("", 1, 1), (live["object_id"], 0, 1), (live["object_id"], 1, 0),
                          (live["object_id"], -1, -1), ("x" * (3 * 1024 * 1024), 1, 1)]:
        codes.append(call_error(stub.CommitObject, svc.CommitObjectRequest(
            object_id=oid, size=size, last_modified_ms=lm)).code())
    for method in METHODS:
        for p in MALFORMED:
            data = p.values[0]
            try:
                raw(node, method)(data, timeout=T)
            except grpc.RpcError as e:
                codes.append(e.code())
    assert codes and not set(codes) & set(NEVER), codes
    after = snapshot(node)
    assert after == before
    with ro_db(node) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM buckets")]
        states = dict(conn.execute("SELECT object_id, state FROM objects").fetchall())
    assert all(len(n) <= 63 and n == n.lower() and "\x00" not in n for n in names), names
    assert states[live["object_id"]] == "PENDING"

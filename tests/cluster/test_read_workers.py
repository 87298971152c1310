"""``--read-workers N`` (gantry/readworker.py) on real processes: reads answered by worker
processes that share the gRPC port, consistency through them, and their lifecycle with the node.

Which process served a call is read from the node's log (every line a worker writes carries
``worker``; :meth:`NodeProcess.process_channel` probes until a connection lands where asked).
The contract suites run against workers too: ``GANTRY_TEST_READ_WORKERS=2 pytest
tests/contract`` (tests/conftest.py then checks the calls were served by a worker).
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # before grpc loads: nodes are spawned

import grpc
import pytest

from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.service.v1 import service_pb2_grpc
from tests.support import NodeProcess, free_ports, single_node, wait_until

T = 10
CRADLE = "127.0.0.1:9"
LOG_INDEX = "x-gantry-log-index"
MIN_INDEX = "x-gantry-min-log-index"
STALE = (("x-gantry-consistency", "stale"),)


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _gone(pid: int) -> bool:
    """The process ended (or is a zombie nobody reaped yet)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _index(call: Any) -> int:
    return int(dict(call.trailing_metadata() or ())[LOG_INDEX])


def _status(err: grpc.RpcError) -> tuple[Any, ...]:
    """What a client sees of a failed call, but the applied index (it moves between calls)."""
    call: Any = err
    return (call.code(), call.details(),
            [(k, v) for k, v in call.trailing_metadata() or () if k != LOG_INDEX])


def _error(fn: Any, req: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(req, timeout=T, **kw)
    return ei.value


def _metric(node: NodeProcess, name: str) -> float:
    with urllib.request.urlopen(f"{node.metrics_url}/metrics", timeout=T) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with single_node(tmp_path_factory.mktemp("rw"), ["--cradle-addr", CRADLE],
                     read_workers=2) as nd:
        yield nd


@pytest.fixture(scope="module")
def on_worker(node: NodeProcess) -> service_pb2_grpc.GantryServiceStub:
    return service_pb2_grpc.GantryServiceStub(node.process_channel(worker=True))


@pytest.fixture(scope="module")
def on_main(node: NodeProcess) -> service_pb2_grpc.GantryServiceStub:
    return service_pb2_grpc.GantryServiceStub(node.process_channel(worker=False))


def test_worker_answers_reads_and_forwards_writes(node: NodeProcess, on_worker: Any) -> None:
    name, wid, rid = uniq("fwd"), uuid.uuid4().hex, uuid.uuid4().hex
    on_worker.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T,
                           metadata=(("x-request-id", wid),))
    on_worker.GetBucket(svc.GetBucketRequest(name=name), timeout=T,
                        metadata=(("x-request-id", rid),))

    def lines(request_id: str) -> list[tuple[str, Any, str, Any]]:
        return [(e["event"], e.get("worker"), str(e.get("peer")), e.get("via"))
                for e in node.log_events() if e.get("request_id") == request_id]

    write = wait_until(lambda: len(lines(wid)) == 2 and lines(wid), T, what="both write lines")
    # The worker forwarded the write; main applied it. Both lines name the client's peer.
    assert {(ev, w is None, via) for ev, w, _p, via in write} == {
        ("rpc_forwarded", False, None), ("rpc_finished", True, "read_worker")}
    assert len({p for _ev, _w, p, _via in write}) == 1 and write[0][2].startswith("ipv4:")
    [(event, worker, _, _)] = wait_until(lambda: lines(rid), T, what="the read's line")
    assert (event, worker is not None) == ("rpc_finished", True)


def test_a_client_cannot_choose_the_peer_main_logs(node: NodeProcess, on_main: Any,
                                                   on_worker: Any) -> None:
    """Main believes a forwarded peer only on its workers' unix socket: a client that sends the
    metadata itself, to main or through a worker, is logged with its own peer."""
    fake = (("x-gantry-forwarded-peer", "ipv4:203.0.113.9:1"),)
    ids = []
    for stub in (on_main, on_worker):
        rid = uuid.uuid4().hex
        ids.append(rid)
        stub.CreateBucket(svc.CreateBucketRequest(name=uniq("spoof")), timeout=T,
                          metadata=(("x-request-id", rid), *fake))

    def peers() -> list[str]:
        return [str(e.get("peer")) for e in node.log_events()
                if e.get("request_id") in ids and e.get("event") == "rpc_finished"]

    logged = wait_until(lambda: len(peers()) == 2 and peers(), T, what="main's two lines")
    assert all(p.startswith("ipv4:127.0.0.1:") for p in logged), logged


def test_statuses_byte_identical_on_main_and_worker(on_main: Any, on_worker: Any) -> None:
    name = uniq("same")
    on_main.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
    cases: list[tuple[str, Any, tuple[tuple[str, str], ...]]] = [
        ("CreateBucket", svc.CreateBucketRequest(name=name), ()),  # ALREADY_EXISTS + details
        ("CreateBucket", svc.CreateBucketRequest(name="Bad_Name"), ()),
        ("GetBucket", svc.GetBucketRequest(name=uniq("none")), STALE),  # NOT_FOUND + details
        ("GetBucket", svc.GetBucketRequest(name=uniq("none")), ()),  # linearizable
        ("GetBucket", svc.GetBucketRequest(name=name), (("x-gantry-consistency", "weird"),)),
        ("GetBucket", svc.GetBucketRequest(name=name), ((MIN_INDEX, "x"),)),
        ("PlanWrite", svc.PlanWriteRequest(bucket=uniq("none"), key="k", size=1), ()),
        ("PlanWrite", svc.PlanWriteRequest(bucket=name, key="k", size=0), ()),
        ("CommitObject", svc.CommitObjectRequest(object_id="01ABC", size=1,
                                                 last_modified_ms=1), ()),
        ("HeadObject", svc.HeadObjectRequest(bucket=name, key="missing"), ()),
        ("ListObjects", svc.ListObjectsRequest(bucket=name, continuation_token="zz"), ()),
        ("DeleteObject", svc.DeleteObjectRequest(bucket=uniq("none"), key="k"), ()),
    ]
    for method, req, md in cases:
        a = _status(_error(getattr(on_main, method), req, metadata=md))
        b = _status(_error(getattr(on_worker, method), req, metadata=md))
        assert a == b, (method, a, b)


def test_unknown_method_same_on_worker(node: NodeProcess) -> None:
    chans = [node.process_channel(worker=False), node.process_channel(worker=True)]
    try:
        got = []
        for ch in chans:
            for m in ("/gantry.service.v1.GantryService/NoSuch",
                      "/gantry.admin.v1.ClusterService/NoSuch", "/no.Such/Method"):
                with pytest.raises(grpc.RpcError) as ei:
                    ch.unary_unary(m)(b"", timeout=T)
                got.append(_status(ei.value))
        assert got[:3] == got[3:]
    finally:
        for ch in chans:
            ch.close()


def test_linearizable_read_on_worker_sees_write_acknowledged_on_main(on_main: Any,
                                                                      on_worker: Any) -> None:
    for _ in range(30):
        name = uniq("lin")
        on_main.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
        resp = on_worker.GetBucket(svc.GetBucketRequest(name=name), timeout=T)  # default level
        assert resp.bucket.name == name


def test_read_your_writes_through_workers(node: NodeProcess, on_main: Any,
                                          on_worker: Any) -> None:
    other = service_pb2_grpc.GantryServiceStub(node.process_channel(worker=True))
    for writer, reader in ((on_main, on_worker), (on_worker, other)):
        for _ in range(20):
            name = uniq("ryw")
            _, call = writer.CreateBucket.with_call(svc.CreateBucketRequest(name=name), timeout=T)
            index = _index(call)
            resp, rcall = reader.GetBucket.with_call(svc.GetBucketRequest(name=name), timeout=T,
                                                     metadata=((MIN_INDEX, str(index)),))
            assert resp.bucket.name == name
            assert _index(rcall) >= index


def test_health_and_status_through_a_worker(node: NodeProcess) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from gantry.pb.admin.v1 import admin_pb2, admin_pb2_grpc

    ch = node.process_channel(worker=True)
    try:
        h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=T)
        assert h.status == health_pb2.HealthCheckResponse.SERVING
        st = admin_pb2_grpc.ClusterServiceStub(ch).Status(admin_pb2.StatusRequest(), timeout=T)
        assert st.role == "leader" and st.serving
    finally:
        ch.close()


def test_backup_stream_through_a_worker(node: NodeProcess) -> None:
    import hashlib

    from gantry.pb.admin.v1 import admin_pb2, admin_pb2_grpc

    ch = node.process_channel(worker=True)
    try:
        msgs = list(admin_pb2_grpc.ClusterServiceStub(ch).Backup(
            admin_pb2.BackupRequest(chunk_bytes=4096), timeout=30))
        with pytest.raises(grpc.RpcError) as ei:  # the same refusal as on main
            list(admin_pb2_grpc.ClusterServiceStub(ch).Backup(
                admin_pb2.BackupRequest(chunk_bytes=64 << 20), timeout=T))
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        ch.close()
    header, *data, trailer = msgs
    assert header.WhichOneof("kind") == "header" and trailer.WhichOneof("kind") == "trailer"
    body = b"".join(m.data for m in data)
    assert len(body) == header.header.size_bytes
    assert hashlib.sha256(body).digest() == trailer.trailer.sha256


def test_main_metrics_count_the_reads_workers_answered(node: NodeProcess,
                                                        on_worker: Any) -> None:
    labels = 'grpc_method="GetBucket",grpc_service="gantry.service.v1.GantryService"'
    requests = f'gantry_rpc_requests_total{{grpc_code="OK",{labels}}}'
    latencies = f"gantry_rpc_duration_seconds_count{{{labels}}}"

    def value(series: str) -> float:
        try:
            return _metric(node, series)
        except AssertionError:
            return 0.0

    name = uniq("count")
    on_worker.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
    before, timed_before = value(requests), value(latencies)
    for _ in range(5):
        on_worker.GetBucket(svc.GetBucketRequest(name=name), timeout=T, metadata=STALE)
    wait_until(lambda: value(requests) >= before + 5, T, what="the worker's reads in main's /metrics")
    # Their latencies too: main's histogram covers every call the node answered.
    wait_until(lambda: value(latencies) >= timed_before + 5, T, what="the worker's read latencies")


def test_killed_worker_is_restarted(node: NodeProcess) -> None:
    """Runs last in the module: the worker pids change."""
    assert _metric(node, "gantry_read_workers_alive") == 2
    old = node.worker_pids()
    victim = old[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: any(e.get("event") == "read_worker_exited" and e.get("pid") == victim
                           and e.get("exit_code") == -signal.SIGKILL for e in node.log_events()),
               T, what="read_worker_exited of the killed worker")
    new = wait_until(lambda: node.worker_pids()[0] != victim and node.worker_pids(), 30,
                     what="worker 0 started again")
    assert not _gone(new[0]) and new[1] == old[1]
    assert _metric(node, "gantry_read_worker_restarts_total") == 1
    wait_until(lambda: _metric(node, "gantry_read_workers_alive") == 2, T, what="2 alive again")
    stub = service_pb2_grpc.GantryServiceStub(node.process_channel(worker=True))
    name = uniq("after")
    stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
    assert stub.GetBucket(svc.GetBucketRequest(name=name), timeout=T).bucket.name == name


# -- lifecycle with the node (a node each) ------------------------------------------------------


def test_sigterm_stops_workers_and_ends_waiting_reads(tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path, read_workers=2) as nd:
        pids = list(nd.worker_pids().values())
        stub = service_pb2_grpc.GantryServiceStub(nd.process_channel(worker=True))
        # Waits for an index this node will never apply.
        waiting = stub.GetBucket.future(svc.GetBucketRequest(name="never"), timeout=30,
                                        metadata=((MIN_INDEX, str(10**9)),))
        # Evidence the waiting read is in the worker's hands: a later call on the same
        # connection was answered (the server takes a connection's calls in order).
        rid = uuid.uuid4().hex
        with pytest.raises(grpc.RpcError):
            stub.GetBucket(svc.GetBucketRequest(name="probe-bucket"), timeout=T,
                           metadata=STALE + (("x-request-id", rid),))
        assert nd.served_by(rid)[0] is not None
        assert not waiting.done()
        code = nd.stop()
        assert code == 0, nd.tail_log()
        assert all(_gone(p) for p in pids)
        err: Any = waiting.exception(T)
        assert (err.code(), err.details()) == (grpc.StatusCode.UNAVAILABLE, "node stopping")
        events = [e.get("event") for e in nd.log_events()]
        reaped = [e for e in nd.log_events() if e.get("event") == "read_worker_reaped"]
        assert sorted(e["exit_code"] for e in reaped) == [0, 0]
        assert events.index("node_stopped") > max(i for i, e in enumerate(events)
                                                  if e == "read_worker_reaped")


def test_sigkill_of_main_takes_workers_down(tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path, read_workers=2) as nd:
        pids = list(nd.worker_pids().values())
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
        nd.kill()
        wait_until(lambda: all(_gone(p) for p in pids), T, what="no orphaned read workers")


def test_port_in_use_is_refused(tmp_path: pathlib.Path) -> None:
    """With SO_REUSEPORT the bind itself would share a port another process holds."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        [raft] = free_ports(1)
        nd = NodeProcess(tmp_path / "node", holder.getsockname()[1], raft, node_id="busy",
                         read_workers=1)
        nd.start()
        assert nd.proc is not None
        assert nd.proc.wait(30) == 2
        assert "(in use?)" in nd.tail_log()
    finally:
        holder.close()

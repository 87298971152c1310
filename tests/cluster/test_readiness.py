"""Readiness means the contract works: with ``--cradle-addr`` a node is SERVING only once that
storage server is registered and placeable here, so the first PlanWrite after SERVING succeeds."""

from __future__ import annotations

import pathlib
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import FakeCradle, NodeProcess, free_ports, wait_until


def _node(tmp: pathlib.Path, cradle: FakeCradle, interval: str) -> NodeProcess:
    port, raft = free_ports(2)
    return NodeProcess(tmp / "node", port, raft, [], ["--cradle-addr", cradle.addr],
                       {"GANTRY_HEARTBEAT_INTERVAL": interval}, node_id="ready")


def _health(nd: NodeProcess) -> int:
    stub = health_pb2_grpc.HealthStub(nd.channel())
    try:
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status)
    except grpc.RpcError:
        return -1


def test_first_planwrite_after_serving_succeeds(tmp_path: pathlib.Path) -> None:
    cradle = FakeCradle(available_bytes=10_000)
    try:
        for run in range(3):  # fresh data directory each time: the server is new every start
            nd = _node(tmp_path / f"run{run}", cradle, "30s")
            try:
                nd.start()
                # Poll tightly: the gap this guards against was 0.1–0.6 s.
                wait_until(lambda nd=nd: _health(nd) == health_pb2.HealthCheckResponse.SERVING,
                           30, 0.005, "SERVING")
                stub = nd.stub()
                stub.CreateBucket(svc.CreateBucketRequest(name="first"), timeout=5)
                plan = stub.PlanWrite(svc.PlanWriteRequest(bucket="first", key="k", size=10),
                                      timeout=5)
                assert plan.write_plan.cradle_address == cradle.addr
            finally:
                assert nd.stop() == 0
    finally:
        cradle.stop()


def test_not_serving_until_the_configured_server_answers(tmp_path: pathlib.Path) -> None:
    cradle = FakeCradle(available_bytes=10_000)
    cradle.answering = False
    nd = _node(tmp_path, cradle, "200ms")
    try:
        nd.start()
        # Raft is up and the server is registered and heartbeated (and missed), yet not SERVING.
        wait_until(lambda: cradle.calls >= 3, 30, 0.02, "heartbeats to the silent server")
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            assert _health(nd) == health_pb2.HealthCheckResponse.NOT_SERVING
            time.sleep(0.05)
        # Reads and writes still work: only readiness waits for the storage server.
        servers = nd.stub().ListCradleServers(svc.ListCradleServersRequest(), timeout=5)
        assert [c.status for c in servers.cradle_servers] in (["DEGRADED"], ["OFFLINE"])
        cradle.answering = True
        wait_until(lambda: _health(nd) == health_pb2.HealthCheckResponse.SERVING, 20, 0.005,
                   "SERVING once the server answers")
        stub = nd.stub()
        stub.CreateBucket(svc.CreateBucketRequest(name="late"), timeout=5)
        plan = stub.PlanWrite(svc.PlanWriteRequest(bucket="late", key="k", size=10), timeout=5)
        assert plan.write_plan.cradle_address == cradle.addr
    finally:
        assert nd.stop() == 0
        cradle.stop()

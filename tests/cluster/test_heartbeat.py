"""Storage-server health through real heartbeats: a fake cradle that stops answering goes
DEGRADED then OFFLINE, PlanWrite stops choosing it, and it comes back HEALTHY when it answers."""

from __future__ import annotations

import pathlib

import grpc
import pytest

from gantry.heartbeat import OFFLINE_AFTER
from gantry.pb.service.v1 import service_pb2 as svc
from tests.cluster.helpers import status
from tests.support import FakeCradle, single_node, wait_until


def _status(stub: object, addr: str) -> tuple[str, int]:
    servers = stub.ListCradleServers(svc.ListCradleServersRequest(), timeout=5).cradle_servers  # type: ignore[attr-defined]
    [c] = [c for c in servers if c.address == addr]
    return c.status, c.available_bytes


def test_cradle_health_follows_heartbeats(tmp_path: pathlib.Path) -> None:
    cradle = FakeCradle(available_bytes=1000)
    try:
        with single_node(tmp_path, ["--cradle-addr", cradle.addr],
                         env={"GANTRY_HEARTBEAT_INTERVAL": "100ms"}) as nd:
            stub = nd.stub()
            stub.CreateBucket(svc.CreateBucketRequest(name="hbeat"), timeout=5)
            wait_until(lambda: _status(stub, cradle.addr) == ("HEALTHY", 1000), 20,
                       what="first heartbeat recorded")
            # Room matters: a 2000-byte object does not fit in 1000 free bytes.
            with pytest.raises(grpc.RpcError) as e:
                stub.PlanWrite(svc.PlanWriteRequest(bucket="hbeat", key="big", size=2000), timeout=5)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            # A server that never answered a heartbeat is not placeable (its room is unknown).
            stub.RegisterCradleServer(svc.RegisterCradleServerRequest(address="127.0.0.1:1"),
                                      timeout=5)
            for i in range(20):
                plan = stub.PlanWrite(svc.PlanWriteRequest(bucket="hbeat", key=f"s{i}", size=10),
                                      timeout=5)
                assert plan.write_plan.cradle_address == cradle.addr

            cradle.answering = False
            wait_until(lambda: _status(stub, cradle.addr)[0] == "DEGRADED", 20, what="DEGRADED")
            wait_until(lambda: _status(stub, cradle.addr)[0] == "OFFLINE", 20, what="OFFLINE")
            with pytest.raises(grpc.RpcError) as e:
                stub.PlanWrite(svc.PlanWriteRequest(bucket="hbeat", key="k", size=10), timeout=5)
            assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                           "no cradle servers available")
            cradle.answering = True
            cradle.available_bytes = 5000
            wait_until(lambda: _status(stub, cradle.addr) == ("HEALTHY", 5000), 20,
                       what="HEALTHY again")
            plan = stub.PlanWrite(svc.PlanWriteRequest(bucket="hbeat", key="k", size=10), timeout=5)
            assert plan.write_plan.cradle_address == cradle.addr
    finally:
        cradle.stop()


def test_new_server_is_heartbeated_at_once_not_after_an_interval(tmp_path: pathlib.Path) -> None:
    cradle = FakeCradle(available_bytes=10_000)
    try:
        with single_node(tmp_path, ["--cradle-addr", cradle.addr],
                         env={"GANTRY_HEARTBEAT_INTERVAL": "30s"}) as nd:
            stub = nd.stub()
            stub.CreateBucket(svc.CreateBucketRequest(name="fresh"), timeout=5)
            # Well inside the 30 s interval, the new server has reported and takes writes.
            wait_until(lambda: _status(stub, cradle.addr) == ("HEALTHY", 10_000), 10,
                       what="first heartbeat of a new server")
            plan = stub.PlanWrite(svc.PlanWriteRequest(bucket="fresh", key="k", size=10), timeout=5)
            assert plan.write_plan.cradle_address == cradle.addr
    finally:
        cradle.stop()


def test_a_server_that_stays_offline_costs_no_log_entry(tmp_path: pathlib.Path) -> None:
    # Helper audit: the miss count rose on every round (3, 4, 5, ...), so every heartbeat of an
    # OFFLINE server proposed an entry, forever.
    with single_node(tmp_path, env={"GANTRY_HEARTBEAT_INTERVAL": "100ms"}) as nd:
        stub = nd.stub()
        stub.RegisterCradleServer(svc.RegisterCradleServerRequest(address="127.0.0.1:9"), timeout=5)
        wait_until(lambda: _status(stub, "127.0.0.1:9")[0] == "OFFLINE", 20, what="OFFLINE")
        before = status(nd).commit_index
        # A second dead server: its registration and its OFFLINE_AFTER updates are what the log
        # gains while both are heartbeated for at least OFFLINE_AFTER more rounds.
        stub.RegisterCradleServer(svc.RegisterCradleServerRequest(address="127.0.0.1:7"), timeout=5)
        wait_until(lambda: _status(stub, "127.0.0.1:7")[0] == "OFFLINE", 20, what="OFFLINE")
        assert status(nd).commit_index - before == 1 + OFFLINE_AFTER

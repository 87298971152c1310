"""Waiting writes on the grpc.aio front door (issue 10 part 2), in process: N writes waiting for
their proposal hold no thread each, at most MAX_IN_FLIGHT_WRITES of them are proposed at once,
health answers meanwhile, and a stop answers the waiting ones "node stopping"."""

from __future__ import annotations

import pathlib
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gantry.api.service import MAX_IN_FLIGHT_WRITES
from gantry.consensus.errors import Stopping
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.service.v1 import service_pb2_grpc
from gantry.testing import InProcessNode
from tests.support import wait_until

N = 300
#: Threads the process may add while the writes wait (the loop's executor is 8).
THREAD_SLACK = 12


def _send(node: InProcessNode, n: int, prefix: str,
          channels: list[grpc.Channel]) -> list[grpc.Future]:
    """``n`` CreateBuckets spread over ``channels`` (one HTTP/2 connection carries at most 100
    concurrent streams)."""
    stubs = [service_pb2_grpc.GantryServiceStub(ch) for ch in channels]
    return [stubs[i % len(stubs)].CreateBucket.future(
        svc.CreateBucketRequest(name=f"{prefix}-{i}"), timeout=30) for i in range(n)]


def test_waiting_writes_hold_no_thread_and_are_bounded(tmp_path: pathlib.Path) -> None:
    with InProcessNode(tmp_path / "n") as node:
        assert node.consensus is not None
        channels = [grpc.insecure_channel(node.addr) for _ in range(4)]
        idle = threading.active_count()
        node.consensus.hold()
        futs = _send(node, N, "held", channels)
        # MAX_IN_FLIGHT_WRITES proposals registered; the others wait for a slot on the loop.
        wait_until(lambda: len(node.proposals) == MAX_IN_FLIGHT_WRITES, timeout_s=10,
                   what="the in-flight bound reached")
        health = health_pb2_grpc.HealthStub(node.channel())
        r = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
        assert threading.active_count() <= idle + THREAD_SLACK, (idle, threading.active_count())
        assert not any(f.done() for f in futs)
        assert len(node.proposals) == MAX_IN_FLIGHT_WRITES  # never more
        node.consensus.release()  # the held ones commit; the rest propose as slots free up
        wait_until(lambda: all(f.done() for f in futs), timeout_s=20, what="every write answered")
        assert all(f.exception() is None for f in futs)
        assert node.fatal_reason == ""
        for ch in channels:
            ch.close()


def test_stop_answers_waiting_writes_node_stopping(tmp_path: pathlib.Path) -> None:
    node = InProcessNode(tmp_path / "n").start()
    try:
        assert node.consensus is not None
        channels = [grpc.insecure_channel(node.addr)]
        node.consensus.hold()
        futs = _send(node, 50, "stopping", channels)
        wait_until(lambda: len(node.proposals) == 50, timeout_s=10, what="50 writes waiting")
        # What Node.stop does before the grace runs out: end every wait with Stopping.
        stopper = threading.Thread(target=node.stop, kwargs={"grace_s": 5.0})
        stopper.start()
        node.proposals.fail_all(Stopping())
        wait_until(lambda: all(f.done() for f in futs), timeout_s=10, what="answers")
        stopper.join(15)
        outcomes = {(f.exception().code(), f.exception().details()) for f in futs}  # type: ignore[union-attr]
        assert outcomes == {(grpc.StatusCode.UNAVAILABLE, "node stopping")}, outcomes
        channels[0].close()
    finally:
        node.stop()

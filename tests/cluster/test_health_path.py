"""Health answers on its own path (issue 7 item 11): with every handler thread held by a call
that waits, ``grpc.health.v1.Health/Check`` still answers well within its deadline."""

from __future__ import annotations

import pathlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gantry.actors.frontdoor import MAX_WORKERS
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.service.v1 import service_pb2_grpc
from tests.support import single_node

#: Calls that wait far longer than the health check's deadline (seconds).
WAIT_S = 20.0


def test_health_answers_while_every_handler_thread_waits(tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path) as nd:
        # Several connections: one HTTP/2 connection carries at most 100 concurrent streams.
        channels = [grpc.insecure_channel(nd.addr) for _ in range(4)]
        per_channel = (MAX_WORKERS + 80) // len(channels)
        futures = [
            service_pb2_grpc.GantryServiceStub(ch).ListBuckets.future(
                svc.ListBucketsRequest(), timeout=WAIT_S,
                metadata=(("x-gantry-min-log-index", str(10**12)),))
            for ch in channels for _ in range(per_channel)]
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(nd.addr))
        try:
            # The waiting reads hold every handler thread (each waits for an index never reached);
            # without a path of its own, health queues behind them until its deadline.
            answered = 0
            for _ in range(5):
                r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                assert r.status == health_pb2.HealthCheckResponse.SERVING
                answered += 1
            assert answered == 5
            assert not any(f.done() for f in futures), "the waiting calls must still be waiting"
        finally:
            for f in futures:
                f.cancel()
            for ch in channels:
                ch.close()

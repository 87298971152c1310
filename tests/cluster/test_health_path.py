"""Health answers on its own path (issue 7 item 11), and waiting calls hold no thread (issue 10
part 2): with 500 calls waiting in a node process, ``grpc.health.v1.Health/Check`` still answers
well within its deadline, the process runs about as many threads as when idle, and a SIGTERM
answers every waiting call ``UNAVAILABLE "node stopping"``."""

from __future__ import annotations

import os
import pathlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.service.v1 import service_pb2_grpc
from tests.support import single_node, wait_until

#: Calls that wait far longer than the test (seconds).
WAIT_S = 30.0
#: Waiting calls (under the server's limit of 1024 concurrent calls).
WAITING = 500
#: Connections they travel on: one HTTP/2 connection carries at most 100 concurrent streams.
CHANNELS = 8
#: Threads the node may add while the calls wait (the loop's executor is 8; nothing per call).
THREAD_SLACK = 12


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_health_and_thread_count_while_500_calls_wait_then_stop_answers_them(
        tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path) as nd:
        assert nd.proc is not None
        idle = _threads(nd.proc.pid)
        channels = [grpc.insecure_channel(nd.addr) for _ in range(CHANNELS)]
        per_channel = WAITING // CHANNELS
        # Each read waits for a log index never reached (read-your-writes on index 10**12).
        futures = [
            service_pb2_grpc.GantryServiceStub(ch).GetBucket.future(
                svc.GetBucketRequest(name="no-such-bucket"), timeout=WAIT_S,
                metadata=(("x-gantry-min-log-index", str(10**12)),))
            for ch in channels for _ in range(per_channel)]
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(nd.addr))
        try:
            # Health keeps answering while they wait, each within 2 s. (That all 500 were in
            # the node meanwhile is shown at the end: each is answered by the node's shutdown.)
            for _ in range(5):
                r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                assert r.status == health_pb2.HealthCheckResponse.SERVING
            assert not any(f.done() for f in futures), "the waiting calls must still be waiting"
            busy = _threads(nd.proc.pid)
            assert busy <= idle + THREAD_SLACK, (idle, busy)
            # SIGTERM: the waiting calls are answered "node stopping" within the grace period.
            nd.proc.send_signal(15)
            wait_until(lambda: all(f.done() for f in futures), timeout_s=WAIT_S - 5,
                       what="every waiting call answered")
            outcomes = {(f.exception().code(), f.exception().details())  # type: ignore[union-attr]
                        for f in futures}
            assert outcomes == {(grpc.StatusCode.UNAVAILABLE, "node stopping")}, outcomes
        finally:
            for f in futures:
                f.cancel()
            for ch in channels:
                ch.close()

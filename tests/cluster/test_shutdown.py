"""Shutdown keeps to ``--grace``: calls still waiting when the grace runs out (a read waiting for
a log index never reached) end with Gantry's stable UNAVAILABLE "node stopping", and the process
exits within the grace plus a small bound."""

from __future__ import annotations

import pathlib
import signal
import time
from concurrent.futures import Future

import grpc
from grpc_status import rpc_status

from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import NodeProcess, free_ports

GRACE_S = 3.0
#: How long after the grace the process may take to exit (Raft and writer stop, WAL checkpoint).
EXIT_BOUND_S = 2.0


def test_waiting_read_ends_within_grace_with_node_stopping(tmp_path: pathlib.Path) -> None:
    port, raft = free_ports(2)
    nd = NodeProcess(tmp_path / "node", port, raft, [], ["--grace", str(GRACE_S)],
                     node_id="grace")
    try:
        nd.start().wait_serving()
        stub = nd.stub()
        stub.CreateBucket(svc.CreateBucketRequest(name="before"), timeout=5)
        # Its own channel, so the test's channel clean-up cannot cancel it.
        ch = grpc.insecure_channel(nd.addr)
        waiting: Future[object] = stub.__class__(ch).ListBuckets.future(
            svc.ListBucketsRequest(), timeout=60,
            metadata=(("x-gantry-min-log-index", str(10**9)),))
        # Give the request time to reach its handler (it cannot complete, so this cannot make
        # the test pass): SIGTERM must find it waiting on the watermark.
        time.sleep(0.3)
        assert not waiting.done()
        assert nd.proc is not None
        t0 = time.monotonic()
        nd.proc.send_signal(signal.SIGTERM)
        err = waiting.exception(timeout=GRACE_S + 10)
        ended = time.monotonic() - t0
        code = nd.proc.wait(GRACE_S + 20)
        exited = time.monotonic() - t0
        ch.close()
        assert isinstance(err, grpc.RpcError)
        assert (err.code(), err.details()) == (grpc.StatusCode.UNAVAILABLE, "node stopping"), \
            (err.code(), err.details())
        st = rpc_status.from_call(err)  # type: ignore[arg-type]
        assert st is not None and st.details, "ErrorInfo detail missing"
        assert ended <= GRACE_S + 0.5, f"waiting read ended {ended:.2f}s after SIGTERM"
        assert exited <= GRACE_S + EXIT_BOUND_S, f"process exited {exited:.2f}s after SIGTERM"
        print(f"read ended {ended:.2f}s, process exited {exited:.2f}s after SIGTERM")
        assert code == 0, nd.tail_log()
    finally:
        nd.stop()

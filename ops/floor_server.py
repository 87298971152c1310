"""The "floor" server of ``ops/bench_vs_etcd.py``: a do-nothing Python grpcio server answering
``gantry.service.v1.GantryService``'s ``CreateBucket`` and ``GetBucket`` with a fixed reply.

Usage: ``python ops/floor_server.py [--host 127.0.0.1] [--port 9200]``

It stores nothing, checks nothing and ignores the call's metadata; every other GantryService
method answers UNIMPLEMENTED. The server is built the way a Gantry node built its own before
issue 10 moved the node to grpc.aio (a sync ``grpc.server`` on a thread pool of
:data:`MAX_WORKERS` = 128 threads, the same concurrent-RPC limit and message-size options), so
what a benchmark measures against it is sync grpcio's own cost per call.
Stops on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import sys
import threading
from concurrent import futures
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from gantry.actors.frontdoor import MAX_MESSAGE_BYTES  # noqa: E402
from gantry.pb.bucket.v1 import bucket_pb2  # noqa: E402
from gantry.pb.service.v1 import service_pb2 as svc  # noqa: E402
from gantry.pb.service.v1 import service_pb2_grpc  # noqa: E402

#: Handler threads of the floor's sync server.
MAX_WORKERS = 128

#: The one bucket every reply carries (the size of a real one: a name and an RFC 3339 time).
FIXED_BUCKET = bucket_pb2.Bucket(name="floor-bucket", created_at_rfc3339="2026-01-01T00:00:00.000000Z")


class FloorServicer(service_pb2_grpc.GantryServiceServicer):  # type: ignore[misc]
    """CreateBucket and GetBucket answer :data:`FIXED_BUCKET` at once; nothing else is served."""

    def __init__(self) -> None:
        self._create = svc.CreateBucketResponse(bucket=FIXED_BUCKET)
        self._get = svc.GetBucketResponse(bucket=FIXED_BUCKET)

    def CreateBucket(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._create

    def GetBucket(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._get


def build_server(host: str, port: int) -> tuple[grpc.Server, int]:
    """A floor server (not started yet) bound to ``host:port`` (port 0 = any free port); returns
    it and the bound port (0 when the address cannot be bound)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="grpc"),
        maximum_concurrent_rpcs=MAX_WORKERS * 8,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    service_pb2_grpc.add_GantryServiceServicer_to_server(FloorServicer(), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    return server, bound


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM / Ctrl-C. Exit 0, or 2 when the address cannot be bound."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9200)
    args = p.parse_args(argv)
    server, port = build_server(args.host, args.port)
    if port == 0:
        print(f"floor_server: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start()
    print(f"floor server: CreateBucket/GetBucket on {args.host}:{port}", flush=True)
    done.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

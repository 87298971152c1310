"""A stand-in BlockCloset storage node ("cradle") for development: serves
``cradle.service.v1.CradleService/Heartbeat`` on 127.0.0.1 and reports a fixed free space, so a
Gantry node started with ``--cradle-addr`` keeps it HEALTHY and PlanWrite can place objects.

Usage: ``python ops/fake_cradle.py [--port 9100] [--available-bytes 1099511627776]``
Stops on Ctrl-C / SIGTERM. It stores nothing: it only answers heartbeats.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

from gantry.pb.cradle.service.v1 import service_pb2 as cpb
from gantry.pb.cradle.service.v1 import service_pb2_grpc as cgrpc


class FakeCradle(cgrpc.CradleServiceServicer):  # type: ignore[misc]
    """Answers Heartbeat with ``available_bytes`` (bytes)."""

    def __init__(self, available_bytes: int) -> None:
        self.available_bytes = available_bytes

    def Heartbeat(self, request: Any, context: grpc.ServicerContext) -> cpb.HeartbeatResponse:  # noqa: N802
        return cpb.HeartbeatResponse(available_bytes=self.available_bytes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--available-bytes", type=int, default=1 << 40)
    args = p.parse_args(argv)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    cgrpc.add_CradleServiceServicer_to_server(FakeCradle(args.available_bytes), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        print(f"fake_cradle: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 2
    server.start()
    print(f"fake cradle serving Heartbeat on {args.host}:{port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What one ``rpc_finished`` line costs (µs of CPU on the calling thread), structlog's native
path against :func:`gantry.logs.hot_info`, both JSON to stdout as a node writes them.

    .venv/bin/python ops/bench_log_line.py --lines 50000 > /dev/null

stdout gets the lines (send it to /dev/null or a file, as a node's log); the figures go to
stderr. A benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import structlog

from gantry import logs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=50000, help="lines per round (default 50000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds, alternated (default 5)")
    ns = ap.parse_args()
    logs.configure("127.0.0.1:7001", "json", "info")
    log = structlog.get_logger("gantry.rpc")
    emit = logs.hot_info("gantry.rpc")
    fields = {"grpc.service": "gantry.service.v1.GantryService", "grpc.method": "GetBucket",
              "grpc.code": "OK", "duration_ms": 0.312, "peer": "ipv4:127.0.0.1:51234"}
    paths = {"structlog": lambda: log.info("rpc_finished", **fields),
             "hot_info": lambda: emit("rpc_finished", dict(fields))}
    got: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(ns.rounds):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            for _ in range(ns.lines):
                fn()
            got[name].append((time.perf_counter() - t0) / ns.lines * 1e6)
    for name, runs in got.items():
        print(f"{name:10} median {statistics.median(runs):6.2f} µs/line  runs "
              + ", ".join(f"{r:.2f}" for r in runs), file=sys.stderr)


if __name__ == "__main__":
    main()

"""Read workers on one node (issue 10 part 4): ``--read-workers N`` for several N, alternated.

Usage::

    python ops/bench_read_workers.py [--workers 0,1,2] [--rounds 3] [--concurrency 64]
        [--duration 5] [--warmup 2] [--processes 2] [--channels 8]
        [--workloads local-read,linearizable-read,write] [--work-dir DIR] [--json]

Each round starts one single-node ``gantry serve`` per worker count (``LOG_LEVEL=warning``, a
fresh data directory, free ports; the order rotates every round so no setting always runs
first), waits until its workers serve, runs ``ops/bench.py`` against it once per workload in
its own processes (``--processes``, ``--channels`` connections per process: the kernel spreads
connections, not calls, over the node's processes), and stops it. Workloads:

``local-read``         ``GetBucket`` of 100 buckets, ``x-gantry-consistency: stale``
``linearizable-read``  ``GetBucket``, the default level (a read index from the main process)
``write``              ``CreateBucket`` (through a worker, a write is forwarded to main)

The table has the median over the rounds of ops/s, p50 and p99 (ms), the CPU the node used
per op (main and its workers, ms) and the load generator's CPU (% of one core, all its
processes, over its run): on a 2-core machine a generator near 100 % per process shares the
cores with the node, so the figures say what this machine does, not what the node could.
It is a benchmark, not a test: figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import cluster  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
WORKLOADS = {
    "local-read": ["--workload", "get-bucket", "--consistency", "stale"],
    "linearizable-read": ["--workload", "get-bucket", "--consistency", "linearizable"],
    "write": ["--workload", "create-bucket"],
}


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and of its running children (the read workers)."""
    total = cluster.process_cpu_s(pid)
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for k in kids:
            try:
                total += cluster.process_cpu_s(int(k))
            except OSError:
                pass
    return total


def _start(workdir: pathlib.Path, workers: int) -> cluster.Node:
    grpc_port, raft_port = cluster.free_ports(2)
    [node] = cluster.plan_nodes(1, workdir / f"w{workers}-{time.monotonic_ns()}", [grpc_port],
                                [raft_port])
    args = cluster.serve_args(node, [node], "", ["--read-workers", str(workers)])
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    cluster.start_node(node, args, "warning")
    deadline = time.monotonic() + 60
    while not cluster.addr_serving(node.addr):
        if time.monotonic() > deadline or (node.proc and node.proc.poll() is not None):
            raise SystemExit(f"node with {workers} workers did not serve:\n"
                             + cluster.tail(node.log_path))
        time.sleep(0.05)
    while _listeners(node.grpc_port) < workers + 1:  # health may be SERVING before they are
        if time.monotonic() > deadline:
            raise SystemExit(f"read workers did not start:\n{cluster.tail(node.log_path)}")
        time.sleep(0.05)
    return node


def _listeners(port: int) -> int:
    """Sockets listening on TCP ``port`` (``/proc/net/tcp*``): with ``SO_REUSEPORT`` one per
    process of the node, so the workers are up once it is 1 + their count."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def _stop(node: cluster.Node) -> None:
    if node.proc is not None and node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(10)


def run_one(node: cluster.Node, workload: str, opts: argparse.Namespace) -> dict[str, Any]:
    """One ``ops/bench.py`` run; its JSON report plus ``server_cpu_pct``."""
    assert node.proc is not None
    cmd = [sys.executable, str(REPO / "ops" / "bench.py"), "--targets", node.addr,
           "--concurrency", str(opts.concurrency), "--duration", str(opts.duration),
           "--warmup", str(opts.warmup), "--processes", str(opts.processes),
           "--channels", str(opts.channels), "--json", *WORKLOADS[workload]]
    cpu0, t0 = _tree_cpu_s(node.proc.pid), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"})
    cpu1, t1 = _tree_cpu_s(node.proc.pid), time.monotonic()
    if not out.stdout.strip():
        raise SystemExit(f"bench failed: {out.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    report["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / (t1 - t0), 1)
    # Per op of warm-up and measured window (setup's 100 writes and the interpreters' start-up
    # are in the CPU too: a small overstatement, the same for every setting).
    report["server_cpu_ms_per_op"] = round(1000 * (cpu1 - cpu0)
                                           / max(1, report["ops"] + report["warmup_ops"]), 3)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--workloads", default="local-read,linearizable-read,write")
    p.add_argument("--work-dir", default="")
    p.add_argument("--json", action="store_true")
    opts = p.parse_args(argv)
    counts = [int(x) for x in opts.workers.split(",")]
    workloads = [w for w in opts.workloads.split(",") if w]
    workdir = pathlib.Path(opts.work_dir or tempfile.mkdtemp(prefix="bench-rw-"))
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for rnd in range(opts.rounds):
        order = counts[rnd % len(counts):] + counts[:rnd % len(counts)]
        for n in order:
            node = _start(workdir, n)
            try:
                for w in workloads:
                    r = run_one(node, w, opts)
                    runs.setdefault((w, n), []).append(r)
                    print(f"round {rnd + 1} workers={n} {w}: {r['ops_per_s']} ops/s "
                          f"p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} ms "
                          f"errors {r['error_total']} server {r['server_cpu_ms_per_op']} ms/op "
                          f"client {r['client_cpu_pct']}%", file=sys.stderr, flush=True)
            finally:
                _stop(node)
    rows = []
    for w in workloads:
        for n in counts:
            rs = runs[(w, n)]
            rows.append({
                "workload": w, "read_workers": n, "rounds": len(rs),
                "ops_per_s": statistics.median(r["ops_per_s"] for r in rs),
                "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in rs),
                "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in rs),
                "errors": sum(r["error_total"] for r in rs),
                "server_cpu_ms_per_op": statistics.median(r["server_cpu_ms_per_op"] for r in rs),
                "client_cpu_pct": statistics.median(r["client_cpu_pct"] for r in rs),
                "all_ops_per_s": [r["ops_per_s"] for r in rs],
            })
    if opts.json:
        print(json.dumps(rows))
        return 0
    print(f"c={opts.concurrency}, {opts.processes} generator processes x {opts.channels} "
          f"channels, {opts.duration:g}s after {opts.warmup:g}s warm-up, median of "
          f"{opts.rounds} rounds; CPU in % of one core ({os.cpu_count()} cores)")
    print("| workload | read workers | ops/s | p50 ms | p99 ms | node CPU ms/op | generator CPU % "
          "| ops/s each round |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['read_workers']} | {r['ops_per_s']:.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['server_cpu_ms_per_op']:.3f} | "
              f"{r['client_cpu_pct']:.0f} | {', '.join(f'{x:.0f}' for x in r['all_ops_per_s'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

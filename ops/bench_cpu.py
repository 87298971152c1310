"""CPU per write of single-node variants run side by side: for an A/B of a change on a shared
machine, where throughput alone moves with everything else the machine runs.

Usage::

    python ops/bench_cpu.py --variant main=/tmp/gantry-main --variant off=.:--metrics-addr=off \\
        --variant on=.:--metrics-addr={metrics} --scrape 1 [--rounds 6] [--duration 10] \\
        [--concurrency 16]

A variant is ``NAME=REPO[:SERVE_ARG[:SERVE_ARG…]]``: ``gantry serve`` run from that checkout (e.g.
a ``git worktree`` of an older commit) with those extra flags; ``{metrics}`` in a flag becomes a
free 127.0.0.1 port, and with ``--scrape S`` that node's ``/metrics`` is fetched every ``S``
seconds, as Prometheus would. Each round starts one fresh single-node cluster per variant
(heartbeats off, logs at warning), then loads all of them **at the same time**, each with its own
``ops/bench.py`` (create-bucket, closed loop, ``--concurrency`` workers, no warm-up), so every
variant runs under the same machine load; it reads each node's CPU time (user + system, from
``/proc/PID/stat``) before and after and prints ops/s and CPU ms per write. The last lines are the
medians over the rounds. Every process it starts is stopped before the next round.
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
import threading
import time
import urllib.request
from dataclasses import dataclass, field

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "ops"))
from cluster import addr_serving, free_ports, process_cpu_s  # noqa: E402  (ops/cluster.py, one copy)


@dataclass
class Variant:
    name: str
    repo: pathlib.Path
    args: list[str]
    runs: list[tuple[float, float]] = field(default_factory=list)  # (ops/s, CPU ms per write)


def parse_variant(text: str) -> Variant:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=REPO[:ARG...]")
    repo, *args = rest.split(":")
    return Variant(name, (REPO / repo).resolve(), args)




def _scrape(url: str, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
        except OSError:
            pass


def one_round(variants: list[Variant], work: pathlib.Path, ns: argparse.Namespace) -> None:
    procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    stop = threading.Event()
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "warning",
           "GANTRY_HEARTBEAT_INTERVAL": "0"}
    try:
        for v in variants:
            grpc_port, raft_port, metrics_port = free_ports(3)
            extra = [a.replace("{metrics}", f"127.0.0.1:{metrics_port}") for a in v.args]
            args = [sys.executable, "-m", "gantry.cli", "serve", "--data-dir",
                    str(work / f"{v.name}-{grpc_port}"), "--port", str(grpc_port),
                    "--raft-addr", f"127.0.0.1:{raft_port}", *extra]
            p = subprocess.Popen(args, cwd=v.repo, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.STDOUT)
            procs[v.name] = (p, f"127.0.0.1:{grpc_port}")
            if ns.scrape > 0 and any("{metrics}" in a for a in v.args):
                url = f"http://127.0.0.1:{metrics_port}/metrics"
                threading.Thread(target=_scrape, args=(url, ns.scrape, stop), daemon=True).start()
        deadline = time.monotonic() + 60
        for name, (p, addr) in procs.items():
            while not addr_serving(addr):
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become SERVING")
                time.sleep(0.1)
        before = {name: process_cpu_s(p.pid) for name, (p, _) in procs.items()}
        benches = {
            v.name: subprocess.Popen(
                [sys.executable, str(v.repo / "ops" / "bench.py"), "--targets", procs[v.name][1],
                 "--workload", "create-bucket", "--concurrency", str(ns.concurrency),
                 "--duration", str(ns.duration), "--warmup", "0", "--json"],
                stdout=subprocess.PIPE, text=True)
            for v in variants}
        for v in variants:
            out, _ = benches[v.name].communicate(timeout=ns.duration + 120)
            report = json.loads(out.strip().splitlines()[-1])
            p = procs[v.name][0]
            v.runs.append((report["ops_per_s"],
                           (process_cpu_s(p.pid) - before[v.name]) / report["ops"] * 1000))
    finally:
        stop.set()
        for p, _ in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", type=parse_variant, action="append", required=True)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--scrape", type=float, default=0.0,
                   help="fetch /metrics of the variants with {metrics} every this many seconds")
    ns = p.parse_args(argv)
    variants: list[Variant] = ns.variant
    with tempfile.TemporaryDirectory(prefix="gantry-bench-cpu-") as tmp:
        for r in range(ns.rounds):
            one_round(variants, pathlib.Path(tmp), ns)
            row = {v.name: {"ops_s": round(v.runs[-1][0]), "cpu_ms": round(v.runs[-1][1], 3)}
                   for v in variants}
            print(json.dumps({"round": r + 1, **row, "load": round(os.getloadavg()[0], 1)}),
                  flush=True)
    print("| variant | ops/s (median) | CPU ms per write (median) | rounds (ops/s; CPU ms) |")
    print("|---|---|---|---|")
    for v in variants:
        ops = statistics.median(x[0] for x in v.runs)
        cpu = statistics.median(x[1] for x in v.runs)
        each = ", ".join(f"{o:.0f}; {c:.3f}" for o, c in v.runs)
        print(f"| {v.name} | {ops:.0f} | {cpu:.3f} | {each} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

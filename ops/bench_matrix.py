"""Run the benchmark matrix that docs/BENCHMARKS.md reports: for each cluster size, workload and
concurrency, several runs of ``ops/bench.py``; print the medians as a markdown table.

Usage::

    python ops/bench_matrix.py --nodes 1,3 --workloads create-bucket,plan-commit \\
        --concurrency 1,16,64 --runs 3 --duration 5 [--serve-arg=--no-raft-fsync] \\
        [--consistency stale,linearizable,min-index] [--scrape 1] [--serve-arg=--metrics-addr=off] \\
        [--tls-ca ca.pem --serve-arg=--tls-cert=node.pem --serve-arg=--tls-key=node.key]

It starts its own nodes (``gantry serve`` on free 127.0.0.1 ports, fresh data directories under a
temporary directory) and a fake storage node (``ops/fake_cradle.py``) so PlanWrite has a HEALTHY
server; a fresh cluster per cluster size, reused across that size's runs. Every process it starts
is stopped on exit. Read workloads take ``--consistency`` (one row per level). ``--tls-ca``,
``--tls-cert``, ``--tls-key`` are the client side (health checks and ``ops/bench.py``); the nodes'
TLS flags go in ``--serve-arg``. Every node serves its metrics on a free port of its own
(``--serve-arg=--metrics-addr=off`` turns them off); ``--scrape S`` fetches every node's
``/metrics`` every ``S`` seconds while the cluster runs, as Prometheus would (to measure what
metrics cost, scrapes included).
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "ops"))
from cluster import addr_serving, free_ports  # noqa: E402  (ops/cluster.py, one copy)

sys.path.insert(0, str(REPO))


from gantry import tlsconfig  # noqa: E402

READS = {"get-bucket", "head-object", "list-objects"}




@contextlib.contextmanager
def running_cluster(n: int, serve_args: list[str], workdir: pathlib.Path,
                    log_level: str = "warning",
                    client: tlsconfig.ClientConfig = tlsconfig.PLAINTEXT,
                    scrape_s: float = 0.0) -> Iterator[list[str]]:
    """Start a fake cradle and ``n`` peered nodes (logs in ``workdir/n{n}-{i}.log`` at
    ``log_level``); yield their gRPC addresses; stop them all. With ``scrape_s``, a thread
    fetches every node's ``/metrics`` that often while the nodes run."""
    procs: list[subprocess.Popen[bytes]] = []
    stop_scraping = threading.Event()
    scraper: threading.Thread | None = None
    [cradle_port] = free_ports(1)
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": log_level,
           "GANTRY_HEARTBEAT_INTERVAL": "5s"}
    try:
        procs.append(subprocess.Popen([sys.executable, str(REPO / "ops" / "fake_cradle.py"),
                                       "--port", str(cradle_port)], cwd=REPO,
                                      stdout=subprocess.DEVNULL))
        ports = free_ports(3 * n)
        grpc_ports, raft_ports, metrics_ports = ports[:n], ports[n:2 * n], ports[2 * n:]
        for i in range(n):
            peers = ",".join(f"127.0.0.1:{p}" for j, p in enumerate(raft_ports) if j != i)
            args = [sys.executable, "-m", "gantry.cli", "serve",
                    "--data-dir", str(workdir / f"n{n}-{i}"), "--port", str(grpc_ports[i]),
                    "--raft-addr", f"127.0.0.1:{raft_ports[i]}", "--node-id", f"node{i}",
                    "--cradle-addr", f"127.0.0.1:{cradle_port}",
                    "--metrics-addr", f"127.0.0.1:{metrics_ports[i]}", *serve_args]
            if peers:
                args += ["--peers", peers]
            log = open(workdir / f"n{n}-{i}.log", "ab")  # noqa: SIM115 - owned by the child
            procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
            log.close()
        addrs = [f"127.0.0.1:{p}" for p in grpc_ports]
        deadline = time.monotonic() + 60
        while not all(addr_serving(a, client) for a in addrs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster of {n} did not become SERVING; logs in {workdir}")
            time.sleep(0.1)
        if scrape_s > 0:
            urls = [f"http://127.0.0.1:{p}/metrics" for p in metrics_ports]
            scraper = threading.Thread(target=_scrape, args=(urls, scrape_s, stop_scraping),
                                       daemon=True)
            scraper.start()
        yield addrs
    finally:
        stop_scraping.set()
        if scraper is not None:
            scraper.join(10)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _scrape(urls: list[str], every_s: float, stop: threading.Event) -> None:
    """Fetch each of ``urls`` every ``every_s`` seconds until ``stop``; report on stderr."""
    times: list[float] = []
    while not stop.wait(every_s):
        for url in urls:
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read()
            except OSError as e:
                print(f"scrape {url} failed: {e}", file=sys.stderr, flush=True)
                continue
            times.append(time.perf_counter() - t0)
    if times:
        print(f"scrapes: {len(times)}, median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms", file=sys.stderr, flush=True)


def bench(targets: list[str], workload: str, c: int, duration: float, warmup: float,
          consistency: str | None,
          client: tlsconfig.ClientConfig = tlsconfig.PLAINTEXT) -> dict[str, Any]:
    args = [sys.executable, str(REPO / "ops" / "bench.py"), "--targets", ",".join(targets),
            "--workload", workload, "--concurrency", str(c), "--duration", str(duration),
            "--warmup", str(warmup), "--json", *client.args()]
    if consistency:
        args += ["--consistency", consistency]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    if not out.stdout.strip():
        raise RuntimeError(f"bench failed: {out.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="1,3")
    p.add_argument("--workloads", default="create-bucket,plan-commit")
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--consistency", default="linearizable",
                   help="read workloads: comma-separated levels (default linearizable)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--serve-arg", action="append", default=[],
                   help="extra flag for every node, e.g. --serve-arg=--no-raft-fsync")
    p.add_argument("--scrape", type=float, default=0.0,
                   help="fetch every node's /metrics every this many seconds (default 0: never)")
    tlsconfig.add_client_arguments(p)
    ns = p.parse_args(argv)
    try:
        client = tlsconfig.client_from_args(ns)
    except ValueError as e:
        print(f"bench_matrix: {e}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as tmp:
        for n in [int(x) for x in ns.nodes.split(",")]:
            with running_cluster(n, ns.serve_arg, pathlib.Path(tmp), client=client,
                                 scrape_s=ns.scrape) as targets:
                for workload in ns.workloads.split(","):
                    levels = ns.consistency.split(",") if workload in READS else [None]
                    for level in levels:
                        for c in [int(x) for x in ns.concurrency.split(",")]:
                            runs = [bench(targets, workload, c, ns.duration, ns.warmup, level, client)
                                    for _ in range(ns.runs)]
                            row = {
                                "nodes": n, "workload": workload, "consistency": level or "",
                                "c": c,
                                "ops_s": statistics.median(r["ops_per_s"] for r in runs),
                                "p50": statistics.median(r["latency_ms"]["p50"] for r in runs),
                                "p99": statistics.median(r["latency_ms"]["p99"] for r in runs),
                                "errors": sum(r["error_total"] for r in runs),
                                "all_ops_s": [r["ops_per_s"] for r in runs],
                            }
                            rows.append(row)
                            print(json.dumps(row), file=sys.stderr, flush=True)
    print("| nodes | workload | consistency | c | ops/s | p50 ms | p99 ms | errors | runs ops/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['nodes']} | {r['workload']} | {r['consistency'] or '-'} | {r['c']} | "
              f"{r['ops_s']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} | "
              f"{', '.join(f'{x:.0f}' for x in r['all_ops_s'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

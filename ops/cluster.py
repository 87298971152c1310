"""Run a local multi-node Gantry cluster on 127.0.0.1 for development and benchmarks.

Usage::

    python ops/cluster.py [--nodes 3] [--base-dir ./data/cluster] [--grpc-base 8081 --raft-base 7081]
        [--metrics-base 9081] [--ports-free] [--cradle-addr 127.0.0.1:9100] [--log-level info]
        [--ready-timeout 60] [--stop-timeout 20] [--tls-ca CA.pem [--tls-cert C.pem --tls-key C.key]]
        [-- EXTRA SERVE FLAGS...]

Starts N ``gantry serve`` processes (``sys.executable -m gantry.cli serve``), node *i* (1-based)
with gRPC port ``grpc-base + i - 1``, Raft port ``raft-base + i - 1``, metrics port
(``/metrics``, ``/livez``, ``/readyz``) ``metrics-base + i - 1``, node id ``node<i>``, data
under ``BASE/node<i>/`` and its JSON log in ``BASE/node<i>.log``; every node lists the others as
``--peers``. ``--ports-free`` asks the OS for free ports instead of using the bases;
``--metrics-base 0`` turns the metrics endpoints off. Anything after ``--`` is appended to every
node's ``serve`` command line: a TLS cluster is
``--tls-ca ca.pem -- --tls-cert node.pem --tls-key node.key`` (``--tls-*`` before ``--`` are the
launcher's own client settings for its health checks, :mod:`gantry.tlsconfig`).

The launcher prints the nodes' gRPC addresses and a ``targets=`` line ready for ``ops/bench.py``,
writes the same to ``BASE/cluster.json``, then waits until every node reports SERVING through the
standard ``grpc.health.v1.Health`` service. It keeps running, reporting any node that exits, until
Ctrl-C or SIGTERM; then it sends SIGTERM to every node and SIGKILL to any still alive after
``--stop-timeout`` seconds. A second Ctrl-C skips the wait and kills at once.

Restarting with the same ``--base-dir`` and ports resumes the same cluster from its data. Exit
status: 0 after a clean stop, 1 if a node failed to start, exited early, exited non-zero or needed
SIGKILL (the launcher itself exits once every node has exited), 2 on bad arguments or ports
already in use.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from gantry import tlsconfig  # noqa: E402


@dataclass
class Node:
    """One ``gantry serve`` child process and where it listens."""

    name: str
    grpc_port: int
    raft_port: int
    data_dir: pathlib.Path
    log_path: pathlib.Path
    metrics_port: int = 0  # 0: metrics off
    proc: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None

    @property
    def addr(self) -> str:
        """The node's gRPC HOST:PORT."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def raft_addr(self) -> str:
        """The node's Raft HOST:PORT."""
        return f"127.0.0.1:{self.raft_port}"

    @property
    def metrics_addr(self) -> str:
        """The node's metrics HOST:PORT ("" when off)."""
        return f"127.0.0.1:{self.metrics_port}" if self.metrics_port else ""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports the OS reports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int) -> bool:
    """True when something already listens on (or holds) 127.0.0.1:``port``."""
    with socket.socket() as s:
        # SO_REUSEADDR as a server sets it: a port in TIME_WAIT is free for `gantry serve`.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def plan_nodes(n: int, base_dir: pathlib.Path, grpc_ports: list[int], raft_ports: list[int],
               metrics_ports: list[int] | None = None) -> list[Node]:
    """Describe ``n`` nodes (not yet started) under ``base_dir`` (no ``metrics_ports``: metrics
    off)."""
    metrics = metrics_ports or [0] * n
    return [
        Node(name=f"node{i + 1}", grpc_port=grpc_ports[i], raft_port=raft_ports[i],
             metrics_port=metrics[i], data_dir=base_dir / f"node{i + 1}",
             log_path=base_dir / f"node{i + 1}.log")
        for i in range(n)
    ]


def serve_args(node: Node, nodes: list[Node], cradle_addr: str, extra: list[str]) -> list[str]:
    """The ``gantry serve`` command line of ``node`` in the cluster ``nodes``."""
    peers = ",".join(o.raft_addr for o in nodes if o is not node)
    args = [sys.executable, "-m", "gantry.cli", "serve", "--data-dir", str(node.data_dir),
            "--port", str(node.grpc_port), "--raft-addr", node.raft_addr, "--node-id", node.name,
            "--metrics-addr", node.metrics_addr or "off"]
    if peers:
        args += ["--peers", peers]
    if cradle_addr:
        args += ["--cradle-addr", cradle_addr]
    return args + extra


def start_node(node: Node, args: list[str], log_level: str,
               pythonpath: pathlib.Path | None = None) -> None:
    """Spawn ``args`` in its own session (so a terminal's Ctrl-C reaches only the launcher),
    stdout and stderr appended to the node's log file. ``pythonpath``: the checkout whose
    ``gantry`` package the node imports (default this one)."""
    node.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["LOG_FORMAT"] = "json"
    env.setdefault("LOG_LEVEL", log_level)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath or REPO), env.get("PYTHONPATH", ""))
                                        if p)
    with open(node.log_path, "ab") as logf:
        # cwd: ``python -m gantry.cli`` imports from the working directory first, so another
        # checkout's node must run there (else it silently runs this checkout's code).
        node.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                     cwd=str(pythonpath) if pythonpath else None,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)


def addr_serving(addr: str, client: tlsconfig.ClientConfig = tlsconfig.PLAINTEXT) -> bool:
    """One health check of the node at ``addr`` (overall service ``""``, one-second deadline)
    on a channel of its own."""
    with client.channel(addr) as ch:
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)


def process_cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` used so far: utime + stime of all its threads plus the cutime + cstime
    of its waited-for children (``/proc/PID/stat``, clock-tick resolution). Raises OSError when
    the process is gone."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def is_serving(node: Node, client: tlsconfig.ClientConfig = tlsconfig.PLAINTEXT) -> bool:
    """One health check (overall service ``""``) with a one-second deadline."""
    if node.channel is None:
        node.channel = client.channel(node.addr)
    try:
        r = health_pb2_grpc.HealthStub(node.channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=1.0)
    except grpc.RpcError:
        return False
    return bool(r.status == health_pb2.HealthCheckResponse.SERVING)


def describe_exit(returncode: int | None) -> str:
    """``status N`` or ``killed by SIGNAME`` for a Popen return code."""
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"status {returncode}"


def tail(path: pathlib.Path, n: int = 20) -> str:
    """The last ``n`` lines of a log file ('' if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait_serving(nodes: list[Node], timeout_s: float, stop: threading.Event,
                 client: tlsconfig.ClientConfig = tlsconfig.PLAINTEXT) -> str | None:
    """Poll health until every node is SERVING. Returns None on success, else what went wrong."""
    deadline = time.monotonic() + timeout_s
    pending = list(nodes)
    while pending:
        for nd in list(pending):
            assert nd.proc is not None
            if nd.proc.poll() is not None:
                return (f"{nd.name} exited ({describe_exit(nd.proc.returncode)}) before serving; "
                        f"last log lines:\n{tail(nd.log_path)}")
            if is_serving(nd, client):
                print(f"{nd.name} SERVING at {nd.addr}", flush=True)
                pending.remove(nd)
        if not pending:
            return None
        if time.monotonic() > deadline:
            return f"not SERVING after {timeout_s}s: {', '.join(n.name for n in pending)}"
        if stop.wait(0.1):
            return "interrupted while waiting for the nodes"
    return None


def stop_all(nodes: list[Node], timeout_s: float, force: threading.Event) -> bool:
    """SIGTERM every live node, wait up to ``timeout_s`` (or until ``force`` is set), then SIGKILL
    the rest. Returns True when every node stopped with status 0 and none needed SIGKILL."""
    for nd in nodes:
        if nd.channel is not None:
            nd.channel.close()
            nd.channel = None
    live = [nd for nd in nodes if nd.proc is not None and nd.proc.poll() is None]
    for nd in live:
        assert nd.proc is not None
        nd.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(nd.proc.poll() is None for nd in live if nd.proc is not None):
        if time.monotonic() > deadline or force.is_set():
            break
        time.sleep(0.05)
    clean = True
    for nd in live:
        assert nd.proc is not None
        if nd.proc.poll() is None:
            clean = False
            print(f"{nd.name} (pid {nd.proc.pid}) still running: SIGKILL", flush=True)
            nd.proc.kill()
            nd.proc.wait(10)
        print(f"{nd.name} stopped ({describe_exit(nd.proc.returncode)})", flush=True)
        clean = clean and nd.proc.returncode == 0
    return clean


def write_manifest(base_dir: pathlib.Path, nodes: list[Node]) -> pathlib.Path:
    """Write ``BASE/cluster.json`` (targets, ports, pids, logs) for other tools; return its path."""
    manifest: dict[str, Any] = {
        "targets": ",".join(n.addr for n in nodes),
        "nodes": [{"name": n.name, "grpc_addr": n.addr, "raft_addr": n.raft_addr,
                   "metrics_addr": n.metrics_addr, "data_dir": str(n.data_dir), "log": str(n.log_path),
                   "pid": n.proc.pid if n.proc else None} for n in nodes],
    }
    path = base_dir / "cluster.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description="Run a local Gantry cluster on 127.0.0.1.",
                                epilog="Arguments after -- are passed to every `gantry serve`.")
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--base-dir", default="./data/cluster",
                   help="data dirs and logs go here (default ./data/cluster)")
    p.add_argument("--grpc-base", type=int, default=8081, help="first gRPC port (default 8081)")
    p.add_argument("--raft-base", type=int, default=7081, help="first Raft port (default 7081)")
    p.add_argument("--metrics-base", type=int, default=9081,
                   help="first metrics port (/metrics, /livez, /readyz; default 9081, 0 = off)")
    p.add_argument("--ports-free", action="store_true", help="let the OS pick free ports instead")
    p.add_argument("--cradle-addr", default="",
                   help="storage server HOST:PORT every node registers (needed for PlanWrite)")
    p.add_argument("--log-level", default="info", help="nodes' LOG_LEVEL unless set (default info)")
    p.add_argument("--ready-timeout", type=float, default=60.0,
                   help="seconds to wait for every node to be SERVING (default 60)")
    p.add_argument("--stop-timeout", type=float, default=20.0,
                   help="seconds between SIGTERM and SIGKILL on shutdown (default 20)")
    tlsconfig.add_client_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Start the cluster, wait for SERVING, idle until a signal, stop everything."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ns = build_parser().parse_args(argv)
    try:
        client = tlsconfig.client_from_args(ns)
    except ValueError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 2
    n = ns.nodes
    if n < 1:
        print("cluster: --nodes must be ≥ 1", file=sys.stderr)
        return 2
    metrics_ports: list[int] = []
    if ns.ports_free:
        ports = free_ports(3 * n)
        grpc_ports, raft_ports = ports[:n], ports[n:2 * n]
        if ns.metrics_base:
            metrics_ports = ports[2 * n:]
    else:
        grpc_ports = list(range(ns.grpc_base, ns.grpc_base + n))
        raft_ports = list(range(ns.raft_base, ns.raft_base + n))
        if ns.metrics_base:
            metrics_ports = list(range(ns.metrics_base, ns.metrics_base + n))
        every = grpc_ports + raft_ports + metrics_ports
        clash = sorted({p for p in every if every.count(p) > 1})
        busy = [p for p in every if port_in_use(p)]
        if clash or busy or max(every) > 65535:
            print(f"cluster: ports unusable (overlapping {clash}, in use {busy}); "
                  "choose other --grpc-base/--raft-base/--metrics-base or use --ports-free",
                  file=sys.stderr)
            return 2
    base_dir = pathlib.Path(ns.base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    nodes = plan_nodes(n, base_dir, grpc_ports, raft_ports, metrics_ports)

    stop = threading.Event()
    force = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            force.set()
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    status = 0
    try:
        for nd in nodes:
            start_node(nd, serve_args(nd, nodes, ns.cradle_addr, extra), ns.log_level)
            assert nd.proc is not None
            print(f"{nd.name} pid={nd.proc.pid} grpc={nd.addr} raft={nd.raft_addr} "
                  f"metrics={nd.metrics_addr or 'off'} data={nd.data_dir} log={nd.log_path}",
                  flush=True)
        manifest = write_manifest(base_dir, nodes)
        print(f"targets={','.join(nd.addr for nd in nodes)}", flush=True)
        print(f"manifest {manifest}", flush=True)
        problem = wait_serving(nodes, ns.ready_timeout, stop, client)
        if problem is not None:
            print(f"cluster: {problem}", file=sys.stderr, flush=True)
            status = 1 if not stop.is_set() else 0
        else:
            print(f"cluster ready: {n} node(s) SERVING; Ctrl-C or SIGTERM stops them", flush=True)
            reported: set[str] = set()
            while not stop.wait(0.5):
                for nd in nodes:
                    assert nd.proc is not None
                    if nd.name not in reported and nd.proc.poll() is not None:
                        reported.add(nd.name)
                        status = 1
                        print(f"cluster: {nd.name} exited ({describe_exit(nd.proc.returncode)}); "
                              f"see {nd.log_path}", file=sys.stderr, flush=True)
                if len(reported) == len(nodes):
                    print("cluster: every node exited; stopping", file=sys.stderr, flush=True)
                    break
    finally:
        print("stopping cluster", flush=True)
        if not stop_all(nodes, ns.stop_timeout, force):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

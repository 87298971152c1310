"""Test helpers: real Gantry node processes on 127.0.0.1, free ports from the OS, polling with
deadlines (never bare sleeps), and clean-up of every process a test starts."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gantry.pb.service.v1 import service_pb2_grpc
from gantry.tlsconfig import PLAINTEXT, ClientConfig

REPO = pathlib.Path(__file__).resolve().parent.parent
#: ``GANTRY_TEST_READ_WORKERS=N``: every node a test starts runs ``--read-workers N`` and the
#: harness's channel is one the kernel gave to a worker (checked in the node's log), so a suite
#: (tests/contract) runs against workers unchanged.
TEST_READ_WORKERS = int(os.environ.get("GANTRY_TEST_READ_WORKERS") or 0)
#: Keeps a channel's connection its own (grpcio shares subchannels between channels otherwise).
OWN_CONNECTION = ("grpc.use_local_subchannel_pool", 1)


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for outgoing connections (ip_local_port_range)."""
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


#: Every port :func:`free_ports` has handed out in this process, never handed out again: a
#: port is checked free by binding it once, but nothing holds it until its node binds it, and a
#: later call (a node's metrics port picked when it starts) drew the Raft port of a node not yet
#: started (CI: "--raft-addr 127.0.0.1:12647 and --metrics-addr 127.0.0.1:12647 both name port
#: 12647"). ~22,000 ports below the ephemeral range; the whole suite uses a few thousand.
_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (each bound once to check) and not
    handed out before by this process, drawn below the kernel's ephemeral range: a port the OS
    picks for ``bind(0)`` comes from that range, and before the node under test bound it, an
    outgoing connection of another node (a member reconnecting every 100 ms to one that is
    down) could take it (seen: "cannot listen on Raft address" in a failover test). Falls back
    to ``bind(0)`` without that range."""
    import random

    low = _ephemeral_low()
    socks: list[socket.socket] = []
    with _HANDED_OUT_LOCK:
        try:
            tries = 0
            while len(socks) < n and low > 12000 and tries < 5000:
                tries += 1
                port = random.randrange(10000, low)
                if port in _HANDED_OUT:
                    continue
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    s.close()
                    continue
                socks.append(s)
                _HANDED_OUT.add(port)
            while len(socks) < n:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
                if port in _HANDED_OUT:
                    s.close()
                    continue
                socks.append(s)
                _HANDED_OUT.add(port)
            return [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()


def listens(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(pred: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.02,
               what: str = "condition") -> Any:
    """Poll ``pred`` until it returns a truthy value (returned) or raise AssertionError."""
    deadline = time.monotonic() + timeout_s
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last one
            last_exc = e
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last error: {last_exc!r}")


class NodeProcess:
    """One ``gantry serve`` process. ``start()`` spawns it; ``wait_serving()`` polls health;
    ``stop()`` sends SIGTERM (then SIGKILL after a deadline); ``kill()`` sends SIGKILL.
    ``tls``: how the harness's own channel (health, stubs) reaches a node that serves TLS."""

    def __init__(self, data_dir: pathlib.Path, port: int, raft_port: int, peers: list[int] = (),  # type: ignore[assignment]
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 node_id: str = "", tls: ClientConfig = PLAINTEXT,
                 read_workers: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.raft_port = raft_port
        self.peers = list(peers)
        self.extra_args = extra_args or []
        self.env = env or {}
        self.node_id = node_id or f"n{raft_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{self.node_id}.log"
        self._channel: grpc.Channel | None = None
        self.tls = tls
        #: Its --metrics-addr port: a free one chosen by the first args() (start), then kept.
        self.metrics_port = 0
        #: ``--read-workers``; with workers, :meth:`channel` is connected to a worker.
        self.read_workers = TEST_READ_WORKERS if read_workers is None else read_workers
        self._health_channel: grpc.Channel | None = None
        self._channel_lock = threading.Lock()
        #: The client peers (``ipv4:127.0.0.1:PORT``, as the node logs them) of the channels
        #: :meth:`process_channel` handed out to a worker.
        self.worker_peers: set[str] = set()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def raft_addr(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def args(self) -> list[str]:
        if not self.metrics_port:  # parallel test nodes never share the default port
            [self.metrics_port] = free_ports(1)
        a = [sys.executable, "-m", "gantry.cli", "serve", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--raft-addr", self.raft_addr, "--node-id", self.node_id,
             "--grace", "5", "--metrics-addr", f"127.0.0.1:{self.metrics_port}"]
        if self.peers:
            a += ["--peers", ",".join(f"127.0.0.1:{p}" for p in self.peers)]
        if self.read_workers and "--read-workers" not in self.extra_args:
            a += ["--read-workers", str(self.read_workers)]
        return a + self.extra_args

    def start(self) -> NodeProcess:
        # Heartbeats off unless a test turns them on: most tests register a placeholder cradle
        # address that nothing listens on.
        env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "info",
               "GANTRY_HEARTBEAT_INTERVAL": "0", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.args(), cwd=str(REPO), env=env, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        return self

    def channel(self) -> grpc.Channel:
        """The harness's channel; with read workers, one served by a worker (found once the
        node answers: until then this waits, up to 30 s)."""
        with self._channel_lock:
            if self._channel is None:
                self._channel = (self.process_channel(worker=True) if self.read_workers
                                 else self.tls.channel(self.addr))
            return self._channel

    def served_by(self, request_id: str, timeout_s: float = 10.0) -> tuple[int | None, str]:
        """``(worker index or None for main, client peer)`` of the call that carried
        ``request_id``, from its ``rpc_finished`` / ``rpc_forwarded`` log line (polled)."""
        def find() -> tuple[int | None, str] | None:
            for e in self.log_events():
                if (e.get("event") in ("rpc_finished", "rpc_forwarded")
                        and e.get("request_id") == request_id):
                    return e.get("worker"), str(e.get("peer"))
            return None

        found: tuple[int | None, str] = wait_until(find, timeout_s, 0.02,
                                                   f"the log line of request {request_id}")
        return found

    def process_channel(self, worker: bool, timeout_s: float = 30.0) -> grpc.Channel:
        """A channel with a connection of its own that the kernel gave to a read worker
        (``worker``) or to the main process: channels are opened and probed with a stale
        GetBucket (its log line names the process) until one lands where asked."""
        import uuid

        from gantry.pb.service.v1 import service_pb2 as svc

        deadline = time.monotonic() + timeout_s
        while True:
            ch = self.tls.channel(self.addr, options=(OWN_CONNECTION,))
            rid = f"probe-{uuid.uuid4().hex}"
            try:
                service_pb2_grpc.GantryServiceStub(ch).GetBucket(
                    svc.GetBucketRequest(name="probe-bucket"), timeout=5,
                    metadata=(("x-gantry-consistency", "stale"), ("x-request-id", rid)))
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    ch.close()
                    if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)  # not listening yet (starting, restarting)
                    continue
            where, peer = self.served_by(rid)
            if (where is not None) == worker:
                if worker:
                    self.worker_peers.add(peer)
                return ch
            ch.close()
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection landed on a {'worker' if worker else 'main'}"
                                     f" process of {self.node_id} within {timeout_s}s")

    def calls_on_worker_channels(self) -> tuple[int, int]:
        """``(calls workers logged, calls main logged)`` from the client peers in
        :attr:`worker_peers`: proof a suite ran on workers is a large first and a zero second
        (a call a worker forwarded is logged by main with the client's peer and ``via``: it
        counts as the worker's)."""
        on_worker = on_main = 0
        for e in self.log_events():
            if e.get("event") in ("rpc_finished", "rpc_forwarded") and \
                    e.get("peer") in self.worker_peers:
                if e.get("worker") is None and e.get("via") is None:
                    on_main += 1
                else:
                    on_worker += 1
        return on_worker, on_main

    def worker_pids(self) -> dict[int, int]:
        """worker index → pid of its latest ``read_worker_started`` line."""
        return {int(e["worker"]): int(e["pid"]) for e in self.log_events()
                if e.get("event") == "read_worker_started"}

    def stub(self) -> service_pb2_grpc.GantryServiceStub:
        return service_pb2_grpc.GantryServiceStub(self.channel())

    def is_serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"node {self.node_id} exited with {self.proc.returncode}:\n"
                                 + self.tail_log())
        if self._health_channel is None:
            self._health_channel = self.tls.channel(self.addr)
        stub = health_pb2_grpc.HealthStub(self._health_channel)
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        except grpc.RpcError:
            return False
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    def wait_serving(self, timeout_s: float = 30.0) -> NodeProcess:
        wait_until(self.is_serving, timeout_s, 0.05, f"node {self.node_id} SERVING")
        return self

    def close_channel(self) -> None:
        for ch in (self._channel, self._health_channel):
            if ch is not None:
                ch.close()
        self._channel = self._health_channel = None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it outlives ``timeout_s``. Returns the exit code."""
        self.close_channel()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, no grace (crash)."""
        self.close_channel()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail_log(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


@contextlib.contextmanager
def cluster(tmp: pathlib.Path, n: int, extra_args: list[str] | None = None,
            wait: bool = True, tls: ClientConfig = PLAINTEXT) -> Iterator[list[NodeProcess]]:
    """``n`` nodes peered with each other on 127.0.0.1, stopped (SIGTERM, then SIGKILL) on exit."""
    ports = free_ports(2 * n)
    grpc_ports, raft_ports = ports[:n], ports[n:]
    nodes = [
        NodeProcess(tmp / f"node{i}", grpc_ports[i], raft_ports[i],
                    [p for j, p in enumerate(raft_ports) if j != i], extra_args, node_id=f"node{i}",
                    tls=tls)
        for i in range(n)
    ]
    try:
        for nd in nodes:
            nd.start()
        if wait:
            for nd in nodes:
                nd.wait_serving()
        yield nodes
    finally:
        for nd in nodes:
            nd.stop()


@contextlib.contextmanager
def single_node(tmp: pathlib.Path, extra_args: list[str] | None = None,
                env: dict[str, str] | None = None,
                tls: ClientConfig = PLAINTEXT,
                read_workers: int | None = None) -> Iterator[NodeProcess]:
    """One single-node-cluster process on free ports; stopped on exit. With read workers
    (``read_workers``, else ``GANTRY_TEST_READ_WORKERS``), also waits until every one serves."""
    port, raft = free_ports(2)
    nd = NodeProcess(tmp / "node", port, raft, [], extra_args, env, node_id="solo", tls=tls,
                     read_workers=read_workers)
    try:
        nd.start().wait_serving()
        if nd.read_workers:
            wait_until(lambda: len(nd.worker_pids()) == nd.read_workers, 30.0, 0.05,
                       f"{nd.read_workers} read workers of {nd.node_id}")
        yield nd
    finally:
        nd.stop()


def call_with_retry(method: Any, request: Any, request_id: str = "", timeout_s: float = 30.0,
                    per_call_s: float = 5.0) -> Any:
    """Call a unary ``method`` (a stub attribute), retrying UNAVAILABLE / DEADLINE_EXCEEDED with
    the same ``x-request-id`` (so a retried write applies once) until ``timeout_s`` passes."""
    import uuid

    rid = request_id or uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return method(request, timeout=per_call_s, metadata=(("x-request-id", rid),))
        except grpc.RpcError as e:
            retriable = e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def write_any(nodes: list[NodeProcess], method: str, request: Any, request_id: str,
              start: int = 0, timeout_s: float = 60.0, per_call_s: float = 5.0,
              give_up: threading.Event | None = None) -> Any:
    """Send a write to ``nodes[start]``, moving on to the next node (same ``x-request-id``, so it
    applies once) after UNAVAILABLE / DEADLINE_EXCEEDED, until ``timeout_s`` passes or
    ``give_up`` is set (then the last error is raised)."""
    deadline = time.monotonic() + timeout_s
    i = start
    while True:
        nd = nodes[i % len(nodes)]
        try:
            return getattr(nd.stub(), method)(request, timeout=per_call_s,
                                             metadata=(("x-request-id", request_id),))
        except (grpc.RpcError, ValueError) as e:
            retriable = isinstance(e, ValueError) or e.code() in (
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            stopped = give_up is not None and give_up.is_set()
            if not retriable or stopped or time.monotonic() > deadline:
                raise
            i += 1
            time.sleep(0.02)


class FakeCradle:
    """A real ``cradle.service.v1.CradleService`` gRPC server on 127.0.0.1 (a fake storage node
    for tests): answers Heartbeat with ``available_bytes`` while ``answering`` is set, otherwise
    fails the call with UNAVAILABLE."""

    def __init__(self, available_bytes: int = 10 * 2**30) -> None:
        from concurrent import futures

        from gantry.pb.cradle.service.v1 import service_pb2 as cpb
        from gantry.pb.cradle.service.v1 import service_pb2_grpc as cgrpc

        self.available_bytes = available_bytes
        self.answering = True
        self.calls = 0
        fake = self

        class Servicer(cgrpc.CradleServiceServicer):  # type: ignore[misc]
            def Heartbeat(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
                fake.calls += 1
                if not fake.answering:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "fake cradle is down")
                return cpb.HeartbeatResponse(available_bytes=fake.available_bytes)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        cgrpc.add_CradleServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0).wait()


def damage_table(path: pathlib.Path, table: str = "buckets") -> None:
    """Break the root page of ``table`` in the SQLite file at ``path`` (an invalid b-tree page
    type byte), as bit rot would: the file still opens, and its other tables (the Raft metadata,
    the applied index) still read, but ``PRAGMA quick_check`` and any read of ``table`` fail."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                               (table,)).fetchone()
    finally:
        conn.close()
    assert root > 1
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x07")


def gantry_cli(*args: str, env: dict[str, str] | None = None,
               timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``gantry ARGS`` (text output captured) without the caller's ``GANTRY_TLS_*``,
    ``GANTRY_ADMIN_TOKEN`` or ``GANTRY_ADDR``, plus ``env``."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("GANTRY_TLS_", "GANTRY_ADMIN_TOKEN", "GANTRY_ADDR"))}
    return subprocess.run([sys.executable, "-m", "gantry.cli", *args], cwd=str(REPO),
                          env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout_s)

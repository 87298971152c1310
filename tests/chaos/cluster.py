"""Real ``gantry serve`` processes for the campaign: each in its own session and with its own
primary group id (for :mod:`tests.chaos.net`), killed, paused, restarted and wiped for real; a
fake storage server process; admin and health helpers. Every wait polls with a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.admin.v1 import admin_pb2_grpc
from gantry.pb.service.v1 import service_pb2_grpc
from tests.chaos.net import Endpoint
from tests.support import free_ports

REPO = pathlib.Path(__file__).resolve().parents[2]

CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]


def poll(pred: Callable[[], Any], timeout_s: float, interval_s: float = 0.05) -> Any:
    """Call ``pred`` until it returns something truthy (returned) or ``timeout_s`` passes (None).
    Exceptions count as falsy."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception:  # noqa: BLE001 - keep polling
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval_s)


def read_db(db: pathlib.Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one query on a node's SQLite file opened read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


class ChaosNode:
    """One ``gantry serve`` process with a fixed identity (ports, data dir, group id) that can be
    started, killed (-9), paused (SIGSTOP/SIGCONT), stopped (SIGTERM) and wiped."""

    def __init__(self, name: str, base: pathlib.Path, port: int, raft_port: int, gid: int,
                 extra_args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.port = port
        self.raft_port = raft_port
        self.gid = gid
        self.data_dir = base / name
        self.log_path = base / f"{name}.log"
        self.extra_args = extra_args
        self.env = env
        self.peers: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0
        self._channel: grpc.Channel | None = None

    @property
    def addr(self) -> str:
        """gRPC HOST:PORT."""
        return f"127.0.0.1:{self.port}"

    @property
    def raft_addr(self) -> str:
        """Raft HOST:PORT."""
        return f"127.0.0.1:{self.raft_port}"

    @property
    def db(self) -> pathlib.Path:
        """The node's SQLite file."""
        return self.data_dir / "gantry.db"

    @property
    def endpoint(self) -> Endpoint:
        """This node as the partitioner sees it."""
        return Endpoint(self.name, self.gid, self.raft_port)

    def args(self) -> list[str]:
        """The node's ``gantry serve`` command line."""
        a = [sys.executable, "-m", "gantry.cli", "serve", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--raft-addr", self.raft_addr, "--node-id", self.name,
             "--grace", "2", "--metrics-addr", "off"]
        if self.peers:
            a += ["--peers", ",".join(self.peers)]
        return a + self.extra_args

    def alive(self) -> bool:
        """True while the process runs (paused counts as running)."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the process (own session, own primary group, no supplementary groups)."""
        assert not self.alive(), f"{self.name} already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "info", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "ab") as logf:
            kw: dict[str, Any] = {}
            if os.geteuid() == 0:
                kw = {"group": self.gid, "extra_groups": []}
            self.proc = subprocess.Popen(self.args(), cwd=str(REPO), env=env, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True, **kw)
        self.paused = False
        self.starts += 1

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group and reap it."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT (harmless when not paused)."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGCONT + SIGTERM, wait, SIGKILL after ``timeout_s``. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.resume()
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def wipe(self) -> None:
        """Delete the data directory (node must be stopped)."""
        assert not self.alive()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def channel(self) -> grpc.Channel:
        """A cached channel to the node's gRPC port (reconnects by itself after a restart)."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.addr, options=CHANNEL_OPTIONS)
        return self._channel

    def close(self) -> None:
        """Close the cached channel."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def stub(self) -> service_pb2_grpc.GantryServiceStub:
        """GantryService stub."""
        return service_pb2_grpc.GantryServiceStub(self.channel())

    def admin(self) -> admin_pb2_grpc.ClusterServiceStub:
        """ClusterService stub."""
        return admin_pb2_grpc.ClusterServiceStub(self.channel())

    def status(self, timeout_s: float = 2.0) -> apb.StatusResponse:
        """Admin Status (raises grpc.RpcError)."""
        return self.admin().Status(apb.StatusRequest(), timeout=timeout_s)

    def serving(self, timeout_s: float = 1.0) -> bool:
        """One grpc.health.v1 check of service ``""``."""
        if not self.alive() or self.paused:
            return False
        try:
            r = health_pb2_grpc.HealthStub(self.channel()).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return False
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    def db_applied_index(self) -> int:
        """``raft_applied.applied_index`` read from the SQLite file."""
        return int(read_db(self.db, "SELECT applied_index FROM raft_applied WHERE id = 1")[0][0])

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON line of the node's log (all its starts)."""
        out: list[dict[str, Any]] = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def tail_log(self, n: int = 30) -> str:
        """The last ``n`` lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class CradleProcess:
    """``ops/fake_cradle.py`` as a child process on a free port (answers Heartbeat)."""

    def __init__(self, log_path: pathlib.Path) -> None:
        self.port = free_ports(1)[0]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        """HOST:PORT."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        """Spawn it and wait until its port accepts connections."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "ops" / "fake_cradle.py"), "--port", str(self.port)],
                cwd=str(REPO), env=env, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True

        if not poll(up, timeout_s):
            raise RuntimeError(f"fake cradle did not listen on {self.addr}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class ChaosCluster:
    """``n`` nodes peered with each other on free ports under ``base``, plus a fake cradle."""

    def __init__(self, base: pathlib.Path, n: int, extra_args: list[str], gid_base: int,
                 env: dict[str, str] | None = None) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.cradle = CradleProcess(base / "cradle.log")
        ports = free_ports(2 * n)
        env = {"GANTRY_HEARTBEAT_INTERVAL": "2s", **(env or {})}
        args = [*extra_args, "--cradle-addr", self.cradle.addr]
        self.nodes = [ChaosNode(f"n{i + 1}", base, ports[i], ports[n + i], gid_base + i, args, env)
                      for i in range(n)]
        for nd in self.nodes:
            nd.peers = [o.raft_addr for o in self.nodes if o is not nd]

    def by_raft(self, raft_addr: str) -> ChaosNode | None:
        """The node with this Raft address."""
        return next((n for n in self.nodes if n.raft_addr == raft_addr), None)

    def start(self) -> None:
        """Start the cradle and every node (does not wait)."""
        self.cradle.start()
        for nd in self.nodes:
            nd.start()

    def wait_serving(self, timeout_s: float, nodes: list[ChaosNode] | None = None) -> list[ChaosNode]:
        """Poll until every node (default all) is SERVING; returns those that are not."""
        todo = list(nodes if nodes is not None else self.nodes)
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            todo = [n for n in todo if not n.serving()]
            if todo:
                time.sleep(0.05)
        return todo

    def statuses(self) -> dict[str, apb.StatusResponse]:
        """Admin Status of every node that answers."""
        out = {}
        for nd in self.nodes:
            if nd.alive() and not nd.paused:
                with contextlib.suppress(grpc.RpcError):
                    out[nd.name] = nd.status(1.0)
        return out

    def leader(self, timeout_s: float = 10.0) -> ChaosNode | None:
        """The node that calls itself leader with the highest term (polls up to ``timeout_s``)."""

        def find() -> ChaosNode | None:
            best: tuple[int, ChaosNode] | None = None
            for name, st in self.statuses().items():
                if st.role == "leader":
                    nd = next(n for n in self.nodes if n.name == name)
                    if best is None or st.term > best[0]:
                        best = (st.term, nd)
            return best[1] if best else None

        found: ChaosNode | None = poll(find, timeout_s)
        return found

    def stop(self) -> None:
        """Stop every node (SIGCONT + SIGTERM, SIGKILL after a deadline) and the cradle."""
        for nd in self.nodes:
            nd.resume()
        for nd in self.nodes:
            if nd.alive():
                nd._signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for nd in self.nodes:
            if nd.proc is not None:
                try:
                    nd.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    nd.kill()
            nd.close()
        self.cradle.stop()

    def kill_all(self) -> None:
        """SIGKILL every process (for emergency clean-up)."""
        for nd in self.nodes:
            nd.kill()
            nd.close()
        if self.cradle.proc is not None and self.cradle.proc.poll() is None:
            self.cradle.proc.kill()


@contextlib.contextmanager
def serving_cluster(base: pathlib.Path, nodes: int, gid_base: int) -> Iterator[ChaosCluster]:
    """A started :class:`ChaosCluster` of ``nodes`` under ``base``, SERVING within 60 s
    (AssertionError otherwise), stopped on exit. ``gid_base``: its first iptables group id (keep
    test modules apart, e.g. ``47000 + os.getpid() % 1000 * 3``)."""
    c = ChaosCluster(base, nodes, [], gid_base=gid_base)
    try:
        c.start()
        assert not c.wait_serving(60), "cluster did not start"
        yield c
    finally:
        c.stop()

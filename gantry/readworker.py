"""Read workers (``--read-workers N``): reads on every core.

One Python process answers reads on one core at a time (its GIL). With ``N > 0`` the node runs
``N`` worker processes beside its main process. Every one of them — main included — binds the
node's gRPC port with ``SO_REUSEPORT``, so the kernel spreads client *connections* over the
``N + 1`` processes. A worker:

- answers the read RPCs itself (``GetBucket``, ``ListBuckets``, ``HeadObject``, ``ListObjects``,
  ``ListCradleServers``) with the same :class:`~gantry.api.service.GantryService` code as main,
  on its own read-only connections to the node's SQLite file (``mode=ro``, WAL lets it read while
  main's writer writes);
- waits for a consistency level on its own :class:`~gantry.db.Watermark`, fed by main's
  ``WatchApplied`` stream (one message per applied batch, :mod:`gantry.api.internal`): main
  advances its watermark only after the batch's COMMIT, so a read the worker starts afterwards
  sees it;
- takes a linearizable read's index from main (``ReadIndex``, one call in flight per batch of
  waiting reads: :func:`~gantry.api.internal.remote_read_index`), then waits for it locally;
- forwards everything else — writes, ``ClusterService`` (Backup included) — unchanged to main
  over the private unix socket (:class:`~gantry.api.internal.Passthrough`): main's own handlers
  answer, so statuses, messages, details and trailing metadata are main's, byte for byte;
- answers health from main's verdict (mirrored from ``WatchApplied``) and reflection itself
  (same build, same descriptors).

Invariants: a worker never writes to the database and never talks to Raft. Main's internal
listener is a unix socket in ``DATA_DIR/run`` (0700), started only with workers on. Workers are
main's children: started once main's front door is bound; on SIGTERM main signals them first and
they drain (in-flight calls finish within ``--grace``) while main drains its own front door;
a worker that dies is logged (``read_worker_exited``) and restarted (``read_worker_started``,
``gantry_read_worker_restarts_total``), with a back-off when it keeps dying. A worker dies with
main: ``PR_SET_PDEATHSIG`` (SIGKILL when main's supervising thread ends) and EOF on the pipe it
reads its configuration from (main holds the write end until it exits).

Trade-offs: the kernel balances connections, not calls — a client with one channel lands on one
process; spread load with several channels or clients. A write through a worker costs one more
local hop than on main. Metrics: ``/metrics`` is main's. ``gantry_rpc_requests_total`` counts
every call once: main's own, each call a worker forwarded (counted by main, which answered it)
and the reads workers answered (each worker reports its counts every second,
:class:`~gantry.api.internal.RpcCountPusher`); ``gantry_rpc_duration_seconds`` has main's calls
only (workers' latencies are in their ``rpc_finished`` lines, which carry ``worker``). Also
``gantry_read_workers_alive`` and ``gantry_read_worker_restarts_total``.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import json
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import IO, Any, cast

import grpc
import structlog
from prometheus_client import Counter, Gauge

from gantry import logs, metrics
from gantry.api.internal import InternalServer, socket_path
from gantry.config import Config
from gantry.db import Watermark
from gantry.pb.command.v1 import command_pb2
from gantry.state.statemachine import ApplyResult

log = structlog.get_logger("gantry.readworker")

#: GantryService methods a worker answers itself; every other call goes to main.
READ_METHODS = frozenset({"GetBucket", "ListBuckets", "HeadObject", "ListObjects",
                          "ListCradleServers"})
#: Longest (seconds) a worker may take from spawn to serving.
START_TIMEOUT_S = 30.0
#: Restart back-off (seconds): doubles while a worker keeps dying within STABLE_S of its start.
RESTART_MIN_S, RESTART_MAX_S, STABLE_S = 0.5, 10.0, 10.0
#: How often (seconds) the supervisor looks at its children.
POLL_S = 0.1
_PR_SET_PDEATHSIG = 1

READ_WORKERS_ALIVE = Gauge("gantry_read_workers_alive",
                           "Read worker processes serving (of --read-workers).",
                           registry=metrics.REGISTRY)
READ_WORKER_RESTARTS = Counter("gantry_read_worker_restarts",
                               "Read workers restarted after they exited unexpectedly.",
                               registry=metrics.REGISTRY)


class WorkerStartError(RuntimeError):
    """The read workers could not be started; the message says why."""


def check_port_free(host: str, port: int) -> bool:
    """True unless something already listens on ``host:port``. With ``SO_REUSEPORT`` the
    front door's own bind would share a port held by another process of this user (another
    node started with workers on the same port): this probe, without ``SO_REUSEPORT``, fails
    instead. Port 0 is always free."""
    if port == 0:
        return True
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError:
        return True  # the front door reports an unusable host itself
    for family, kind, proto, _, addr in infos:
        s = socket.socket(family, kind, proto)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
            s.bind(addr)
        except OSError:
            return False
        finally:
            s.close()
    return True


# -- configuration across the pipe --------------------------------------------------------------


def config_to_json(cfg: Config) -> dict[str, Any]:
    """``cfg`` as JSON-able values (paths as strings)."""
    return {f.name: (str(v) if isinstance(v, pathlib.Path) else v)
            for f in dataclasses.fields(cfg) for v in [getattr(cfg, f.name)]}


def config_from_json(data: dict[str, Any]) -> Config:
    """Inverse of :func:`config_to_json`."""
    values = {}
    for f in dataclasses.fields(Config):
        if f.name not in data:
            continue
        v = data[f.name]
        if v is not None and "pathlib.Path" in str(f.type):
            v = pathlib.Path(v)
        values[f.name] = v
    return Config(**values)


# -- main side: the supervisor ------------------------------------------------------------------


@dataclasses.dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int = -1
    started_at: float = 0.0
    backoff_s: float = RESTART_MIN_S
    serving: bool = False


class ReadWorkers:
    """Runs ``cfg.read_workers`` worker processes for a node whose front door is bound to
    ``port``, and main's internal listener they talk to.

    ``handlers``: the node's public generic handlers (served to workers on the unix socket, on
    ``loop``, the front door's event loop, where they run for clients too);
    ``watermark``, ``serving`` (the node's health verdict), ``read_index`` (``ReadIndex.get``):
    what the workers follow. Every child is spawned and reaped by one supervisor thread, so
    ``PR_SET_PDEATHSIG`` (tied to the spawning thread) fires only when main is gone."""

    def __init__(self, cfg: Config, port: int, handlers: Sequence[grpc.GenericRpcHandler],
                 watermark: Watermark, serving: Callable[[], bool],
                 read_index: Callable[[], Future[int]],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._cfg = cfg
        self._port = port
        try:
            path = socket_path(cfg.data_dir)
        except ValueError as e:
            raise WorkerStartError(str(e)) from None
        self._server = InternalServer(path, handlers, watermark, serving, read_index, loop)
        self._children = [_Child(i) for i in range(cfg.read_workers)]
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._finish = threading.Event()
        self._start_error = ""
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._supervise, name="read-workers", daemon=True)
        #: Restarts so far (also ``gantry_read_worker_restarts_total``).
        self.restarts = 0

    # -- lifecycle (node's thread) --
    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the internal listener and every worker; returns once all serve. Raises
        :class:`WorkerStartError` (naming the worker and its exit code) otherwise."""
        try:
            self._server.start()
        except RuntimeError as e:
            raise WorkerStartError(str(e)) from None
        self._thread.start()
        if not self._started.wait(timeout_s + 5):
            self._start_error = self._start_error or "read workers did not start in time"
        if self._start_error:
            raise WorkerStartError(self._start_error)

    def begin_stop(self) -> None:
        """SIGTERM every worker: they stop taking calls and finish in-flight ones (``--grace``)."""
        self._stopping.set()
        for c in self._children:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)

    def finish_stop(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` seconds for the workers to exit (SIGKILL after), then stop
        the internal listener. Safe after a failed start."""
        self.begin_stop()
        self._deadline = time.monotonic() + timeout_s
        self._finish.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 5)
        self._server.stop()
        READ_WORKERS_ALIVE.set(0)

    def alive(self) -> int:
        """Workers serving now."""
        return sum(1 for c in self._children
                   if c.serving and c.proc is not None and c.proc.poll() is None)

    def pids(self) -> list[int]:
        """Process ids of the workers running now (for status and tests)."""
        return [c.proc.pid for c in self._children if c.proc is not None and c.proc.poll() is None]

    # -- the supervisor thread --
    def _supervise(self) -> None:
        try:
            for c in self._children:
                self._spawn(c)
            deadline = time.monotonic() + START_TIMEOUT_S
            for c in self._children:
                if not self._await_ready(c, deadline):
                    code = c.proc.poll() if c.proc is not None else None
                    self._start_error = (f"read worker {c.index} did not start"
                                         + (f" (exit code {code})" if code is not None else
                                            f" within {START_TIMEOUT_S:g}s"))
                    self._started.set()
                    self._stopping.set()
                    break
            else:
                self._started.set()
            while not self._stopping.wait(POLL_S):
                for c in self._children:
                    self._check(c)
        except Exception:
            log.exception("read_worker_supervisor_failed")
            self._start_error = self._start_error or "read worker supervisor failed"
            self._started.set()
        finally:
            self._reap_all()

    def _spawn(self, c: _Child) -> None:
        r, w = os.pipe()
        cmd = [sys.executable, "-m", "gantry.readworker", "--worker", str(c.index),
               "--ready-fd", str(w), "--parent", str(os.getpid())]
        env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"}
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, pass_fds=(w,), env=env)
        finally:
            os.close(w)
        stdin = cast(IO[bytes], proc.stdin)
        payload = {"config": config_to_json(self._cfg), "port": self._port,
                   "socket": str(self._server.path)}
        try:
            stdin.write(json.dumps(payload).encode() + b"\n")
            stdin.flush()  # kept open: its EOF tells the worker that main is gone
        except OSError:
            pass  # it died at once: _check sees it
        c.proc, c.ready_fd, c.started_at, c.serving = proc, r, time.monotonic(), False

    def _await_ready(self, c: _Child, deadline: float) -> bool:
        """Block until worker ``c`` says it serves (True), exits or ``deadline`` passes."""
        assert c.proc is not None
        while time.monotonic() < deadline and not self._stopping.is_set():
            ready, _, _ = select.select([c.ready_fd], [], [], min(POLL_S, deadline -
                                                                  time.monotonic()))
            if ready:
                ok = os.read(c.ready_fd, 1) == b"R"
                self._ready_seen(c, ok)
                return ok
        return False

    def _ready_seen(self, c: _Child, ok: bool) -> None:
        os.close(c.ready_fd)
        c.ready_fd = -1
        c.serving = ok
        if ok:
            assert c.proc is not None
            log.info("read_worker_started", worker=c.index, pid=c.proc.pid,
                     restarts=self.restarts)
        READ_WORKERS_ALIVE.set(self.alive())

    def _check(self, c: _Child) -> None:
        assert c.proc is not None
        code = c.proc.poll()
        if code is None:
            if c.ready_fd >= 0 and select.select([c.ready_fd], [], [], 0)[0]:
                self._ready_seen(c, os.read(c.ready_fd, 1) == b"R")
            return
        if c.ready_fd >= 0:
            os.close(c.ready_fd)
            c.ready_fd = -1
        log.warning("read_worker_exited", worker=c.index, pid=c.proc.pid, exit_code=code)
        c.serving = False
        READ_WORKERS_ALIVE.set(self.alive())
        lived = time.monotonic() - c.started_at
        c.backoff_s = RESTART_MIN_S if lived > STABLE_S else min(RESTART_MAX_S, c.backoff_s * 2)
        c.started_at = 0.0
        if self._stopping.wait(c.backoff_s if lived <= STABLE_S else RESTART_MIN_S):
            return
        self.restarts += 1
        READ_WORKER_RESTARTS.inc()
        self._close_stdin(c)
        self._spawn(c)

    def _close_stdin(self, c: _Child) -> None:
        if c.proc is not None and c.proc.stdin is not None:
            try:
                c.proc.stdin.close()
            except OSError:
                pass

    def _reap_all(self) -> None:
        """Stop: SIGTERM (again), wait until the deadline :meth:`finish_stop` set, SIGKILL."""
        for c in self._children:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        if not self._finish.wait(3600):  # finish_stop sets it right after begin_stop
            self._deadline = time.monotonic()
        for c in self._children:
            if c.proc is None:
                continue
            try:
                c.proc.wait(max(0.0, self._deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("read_worker_killed", worker=c.index, pid=c.proc.pid)
                c.proc.kill()
                c.proc.wait(5)
            if c.ready_fd >= 0:
                os.close(c.ready_fd)
                c.ready_fd = -1
            self._close_stdin(c)
            c.serving = False
            log.info("read_worker_reaped", worker=c.index, pid=c.proc.pid,
                     exit_code=c.proc.returncode)


# -- worker side: the child process -------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when main's supervising thread ends (Linux ``PR_SET_PDEATHSIG``),
    and exit now if main is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the stdin watch below still ends the worker
    if os.getppid() != parent:
        os._exit(0)


def _watch_stdin(stdin: IO[bytes]) -> None:
    """Main holds the write end of our stdin until it exits: EOF means it is gone."""
    while stdin.read(65536):
        pass
    structlog.get_logger("gantry.readworker").warning("read_worker_orphaned")
    logs.exit_now(0)


class _ReadsOnly(grpc.GenericRpcHandler):
    """The GantryService handler limited to :data:`READ_METHODS`."""

    def __init__(self, inner: grpc.GenericRpcHandler, service: str) -> None:
        self._inner = inner
        self._prefix = f"/{service}/"

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        m = handler_call_details.method
        if m.startswith(self._prefix) and m[len(self._prefix):] in READ_METHODS:
            return self._inner.service(handler_call_details)
        return None


async def _never_propose(command: command_pb2.Command,
                         timeout_s: float) -> tuple[ApplyResult, int]:
    """The worker's :class:`~gantry.api.service.Proposer`: never called (a worker answers only
    :data:`READ_METHODS`; writes are forwarded to main)."""
    raise RuntimeError("a read worker proposes nothing: writes are forwarded to main")


def serve_worker(index: int, cfg: Config, port: int, sock: pathlib.Path, ready_fd: int,
                 stop: threading.Event) -> int:
    """Run worker ``index`` until ``stop`` is set; returns the exit code (0 clean, 1 failed)."""
    import pykka
    from grpc_health.v1 import health

    from gantry import tlsconfig
    from gantry.actors.frontdoor import FrontDoorActor
    from gantry.api.admin import SERVICE_NAME as ADMIN_SERVICE_NAME
    from gantry.api.auth import admin_interceptor
    from gantry.api.internal import (
        MAX_MESSAGE_BYTES,
        AppliedFeed,
        Passthrough,
        RpcCountPusher,
        remote_read_index,
    )
    from gantry.api.service import SERVICE_NAME, GantryService
    from gantry.db import ReadPool

    wlog = structlog.get_logger("gantry.readworker")
    channel = grpc.insecure_channel(f"unix:{sock}", options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    watermark = Watermark()
    health_servicer = health.HealthServicer()
    feed = AppliedFeed(channel, watermark, health_servicer)
    if not feed.start(START_TIMEOUT_S):
        wlog.error("read_worker_start_failed", reason="no applied index from main")
        return 1
    reads = ReadPool(cfg.database)
    read_index = remote_read_index(channel)
    service = GantryService(reads, _never_propose, cfg.app_env, watermark, read_index,
                            heartbeats=cfg.heartbeat_interval_s > 0)
    auth = admin_interceptor(cfg)
    # Forwarded calls ride a grpc.aio channel of their own, made on the front door's loop.
    passthrough = Passthrough(f"unix:{sock}", (SERVICE_NAME, ADMIN_SERVICE_NAME),
                              streaming=(f"/{ADMIN_SERVICE_NAME}/Backup",),
                              options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                       ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    handlers = [_ReadsOnly(service.generic_handler(), SERVICE_NAME), passthrough]
    frontdoor: pykka.ActorRef[Any] = FrontDoorActor.start(
        cfg.host, port, handlers, health_servicer, cfg.reflection, (ADMIN_SERVICE_NAME,),
        tlsconfig.node_server_credentials(cfg), (auth,) if auth.required else (), reuse_port=True)
    err = frontdoor.proxy().get_start_error().get(timeout=30)
    if err:
        wlog.error("read_worker_start_failed", reason=err)
        frontdoor.stop()
        return 1
    counts = RpcCountPusher(channel)
    counts.start()
    wlog.info("read_worker_serving", grpc_port=port, pid=os.getpid())
    os.write(ready_fd, b"R")
    os.close(ready_fd)
    stop.wait()
    wlog.info("read_worker_stopping", grace_s=cfg.grace_s)
    grace = cfg.grace_s
    # Calls still waiting on the watermark or a read index answer "node stopping" just before
    # the grace ends, as on main (gantry/node.py:END_WAITS_MARGIN_S).
    timer = threading.Timer(max(0.0, grace - min(0.5, grace / 2)), watermark.close)
    timer.daemon = True
    timer.start()
    try:
        frontdoor.proxy().stop_serving(grace, keep_loop=True).get(timeout=grace + 5)
        loop = frontdoor.proxy().loop().get(timeout=5)
        if loop is not None:
            asyncio.run_coroutine_threadsafe(passthrough.aclose(), loop).result(timeout=5)
    except Exception:
        wlog.exception("frontdoor_stop_failed")
    frontdoor.stop()
    timer.cancel()
    watermark.close()
    counts.stop()
    feed.stop()
    reads.close()
    channel.close()
    wlog.info("read_worker_stopped", pid=os.getpid())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m gantry.readworker --worker I --ready-fd FD --parent PID``, spawned by
    :class:`ReadWorkers`; reads ``{"config", "port", "socket"}`` as one JSON line on stdin."""
    p = argparse.ArgumentParser(prog="gantry.readworker")
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--ready-fd", type=int, required=True)
    p.add_argument("--parent", type=int, required=True)
    ns = p.parse_args(argv)
    _die_with_parent(ns.parent)

    stdin = sys.stdin.buffer
    payload = json.loads(stdin.readline() or b"{}")
    if not payload:
        return 0  # main went away before it said anything
    cfg = config_from_json(payload["config"])
    logs.configure(cfg.node_id, cfg.log_format, cfg.log_level, extra={"worker": ns.worker})
    threading.Thread(target=_watch_stdin, args=(stdin,), name="parent-watch", daemon=True).start()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        code = serve_worker(ns.worker, cfg, int(payload["port"]), pathlib.Path(payload["socket"]),
                            ns.ready_fd, stop)
    except Exception:
        structlog.get_logger("gantry.readworker").exception("read_worker_failed")
        code = 1
    logs.exit_now(code)  # pykka/grpc threads must not hold the exit


if __name__ == "__main__":
    sys.exit(main())

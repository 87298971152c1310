"""The wire between a node's main process and its read workers (``--read-workers N``,
:mod:`gantry.readworker`): what the main process serves on its private unix socket, and the
pieces a worker builds on it.

Main side — :class:`InternalServer`, a ``grpc.aio`` server on the front door's event loop,
listening on ``unix:DATA_DIR/run/internal.sock`` (directory 0700; only started when workers are
on, never on a TCP port), serving

- the node's public handlers (GantryService, ClusterService, Backup), so a worker forwards a
  call it does not answer itself byte for byte and the main process answers it exactly as it
  answers a client (status, message, details, trailing metadata come from the same code);
- ``gantry.internal.v1.ReadWorkers/WatchApplied``: a server stream of ``(applied index,
  serving)`` — one message per change of the main process's :class:`~gantry.db.Watermark`
  (the writer advances it once per applied batch; a restore resets it) or of its health;
- ``gantry.internal.v1.ReadWorkers/ReadIndex``: the main process's ``ReadIndex.get()`` result
  (a log index, or the consensus error / deadline it failed with);
- ``gantry.internal.v1.ReadWorkers/AddRpcCounts``: the calls a worker answered itself since its
  last report (JSON ``[[service, method, code, count], …]``, every second), added to main's
  ``gantry_rpc_requests_total`` so ``/metrics`` counts every call once (durations stay
  main's own: a histogram cannot be merged from outside).

No authorization runs here: a worker applied the node's interceptor to the client's own
connection (:mod:`gantry.api.auth` needs its TLS peer), and only the node's user can reach the
socket.

Worker side — :class:`Passthrough` (forwards a call to main on a ``grpc.aio`` channel:
method, metadata, deadline, cancellation; relays status, details and trailing metadata),
:func:`remote_read_index`
(a :class:`~gantry.consensus.readindex.ReadIndex` whose request is one internal call: one in
flight per batch of waiting reads) and :class:`AppliedFeed` (consumes WatchApplied into the
worker's own Watermark and health).

Messages are a fixed 9-byte struct (WatchApplied) and a pickle of ``(index, exception)``
(ReadIndex): main and workers are the same build, and the worker trusts main entirely anyway
(it forwards every write to it). A typed consensus error crosses as itself, so the worker turns
it into the same status main would (:data:`gantry.api.errors.STATUSES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import pickle
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2

from gantry import metrics
from gantry.actors.frontdoor import LOOP_TIMEOUT_S, LoopThread
from gantry.api.rpc import FORWARDED_PEER_KEY
from gantry.consensus.errors import Stopping
from gantry.consensus.readindex import LoopReadIndex, ReadIndex
from gantry.db import Watermark

log = structlog.get_logger("gantry.internal")

SERVICE = "gantry.internal.v1.ReadWorkers"
WATCH_METHOD = f"/{SERVICE}/WatchApplied"
READ_INDEX_METHOD = f"/{SERVICE}/ReadIndex"
RPC_COUNTS_METHOD = f"/{SERVICE}/AddRpcCounts"
#: WatchApplied message: applied log index (int64, big-endian), serving (one byte 0/1).
_APPLIED = struct.Struct(">qB")
#: How often (seconds) a WatchApplied stream looks for a change no advance announced (a reset to
#: a lower index after a restore, a health change, the node stopping).
WATCH_POLL_S = 0.05
#: Longest a ReadIndex call waits on the main process's read index (seconds).
READ_INDEX_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Metadata a forwarded call does not carry on (gRPC sets these itself).
_HOP_KEYS = frozenset({"user-agent", "te", "content-type", "grpc-accept-encoding",
                       "grpc-encoding", "grpc-timeout", FORWARDED_PEER_KEY})
#: Longest client deadline passed on as such (seconds); beyond it (or none): no deadline.
_MAX_DEADLINE_S = 86400.0


def socket_path(data_dir: pathlib.Path) -> pathlib.Path:
    """Where the main process listens for its workers: ``DATA_DIR/run/internal.sock``. Creates
    ``DATA_DIR/run`` with mode 0700 (and tightens it if it existed). Raises ``ValueError`` when
    the path is too long for a unix socket (108 bytes on Linux)."""
    run = data_dir.resolve() / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    os.chmod(run, 0o700)
    path = run / "internal.sock"
    if len(str(path).encode()) > 100:
        raise ValueError(f"{path}: too long for a unix socket (100 bytes at most); use a "
                         "shorter --data-dir to run read workers")
    return path


# -- main side ----------------------------------------------------------------------------------


class InternalServer:
    """The main process's listener for its read workers (see the module docstring).

    ``handlers``: the node's public generic handlers (``grpc.aio`` coroutine handlers);
    ``watermark``: the applied index to publish; ``serving``: the node's health verdict;
    ``read_index``: ``() -> Future[int]`` (the node's ``ReadIndex.get``). ``loop``: the event loop
    the public handlers run on (the front door's: :class:`~gantry.api.service.GantryService` is
    served from one loop); without one, the server runs a loop thread of its own (tests).

    A ``grpc.aio`` server: the internal methods are coroutines too (``WatchApplied`` waits on
    the watermark as an asyncio future, ``ReadIndex`` through a
    :class:`~gantry.consensus.readindex.LoopReadIndex`), so no thread waits per stream or call."""

    def __init__(self, path: pathlib.Path, handlers: Iterable[grpc.GenericRpcHandler],
                 watermark: Watermark, serving: Callable[[], bool],
                 read_index: Callable[[], Future[int]],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.path = path
        self._handlers = list(handlers)
        self._watermark = watermark
        self._serving = serving
        self._loop_read_index = LoopReadIndex(_GetOnly(read_index))
        self._loop = loop
        self._own_loop: LoopThread | None = None
        self._server: grpc.aio.Server | None = None
        self._closing = False

    def start(self) -> None:
        """Bind ``unix:path`` (a stale socket file is replaced) and serve. Raises
        ``RuntimeError`` when the socket cannot be bound."""
        self.path.unlink(missing_ok=True)
        if self._loop is None:
            self._own_loop = LoopThread(name="grpc-internal", workers=2)
            self._loop = self._own_loop.loop
        try:
            self._run(self._start())
        except BaseException:
            self._close_own_loop()
            raise
        os.chmod(self.path, 0o600)
        log.info("internal_listener_started", path=str(self.path))

    async def _start(self) -> None:
        server = grpc.aio.server(
            handlers=[self._handler(), *self._handlers],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        try:
            port = server.add_insecure_port(f"unix:{self.path}")
        except RuntimeError:
            port = 0
        if port == 0:
            await server.stop(None)
            raise RuntimeError(f"cannot listen on unix:{self.path}")
        await server.start()
        self._server = server

    def _run(self, coro: Coroutine[Any, Any, None], timeout_s: float = LOOP_TIMEOUT_S) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout_s)

    def stop(self) -> None:
        """End the WatchApplied streams and stop at once (the workers are gone by now). Safe
        when the loop has already closed (nothing is left to stop then)."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None and self._loop is not None and not self._loop.is_closed():
            try:
                self._run(server.stop(0))
            except Exception:  # the loop stopped meanwhile: the server went with it
                log.warning("internal_listener_stop_failed", exc_info=True)
        self._close_own_loop()
        self.path.unlink(missing_ok=True)

    def _close_own_loop(self) -> None:
        if self._own_loop is not None:
            self._own_loop.close()
            self._own_loop = None
            self._loop = None

    def _handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "WatchApplied": grpc.unary_stream_rpc_method_handler(self.watch_applied),
            "ReadIndex": grpc.unary_unary_rpc_method_handler(self.read_index),
            "AddRpcCounts": grpc.unary_unary_rpc_method_handler(self.add_rpc_counts),
        })

    async def watch_applied(self, _req: bytes, context: grpc.aio.ServicerContext[Any, Any]
                            ) -> AsyncIterator[bytes]:
        """``(applied index, serving)`` now, then whenever either changes; ends when the
        watermark closes (the node is stopping) or the server stops."""
        wm = self._watermark
        sent: tuple[int, bool] | None = None
        while not self._closing:
            now = (wm.value, bool(self._serving()))
            if now != sent:
                sent = now
                yield _APPLIED.pack(now[0], now[1])
            if wm.closed:
                return
            # An asyncio future the writer resolves with its batch; the timeout catches what no
            # advance announces (a reset, a health change, the node stopping).
            await wm.wait_async(now[0] + 1, WATCH_POLL_S)

    async def read_index(self, _req: bytes, context: grpc.aio.ServicerContext[Any, Any]
                         ) -> bytes:
        """Pickle of ``(index, None)`` or ``(0, the exception)`` of the node's read index."""
        timeout = context.time_remaining()
        timeout = READ_INDEX_TIMEOUT_S if timeout is None else min(timeout, READ_INDEX_TIMEOUT_S)
        try:
            return pickle.dumps((int(await self._loop_read_index.index(timeout)), None))
        except Exception as e:  # a ConsensusError, TimeoutError: the worker maps it as main would
            return pickle.dumps((0, e))

    async def add_rpc_counts(self, req: bytes, _context: grpc.aio.ServicerContext[Any, Any]
                             ) -> bytes:
        """Add a worker's report to main's metrics: ``{"counts": [[service, method, code,
        count], …], "durations": [[service, method, [cumulative count per latency bucket,
        +Inf last], sum of seconds], …]}`` (deltas since its last report) to
        ``gantry_rpc_requests`` and ``gantry_rpc_duration_seconds``; a bare list is the counts
        alone (an older worker's report)."""
        report = json.loads(req)
        if isinstance(report, list):
            report = {"counts": report}
        for service, method, code, count in report.get("counts", ()):
            if count > 0:
                metrics.RPC_REQUESTS.labels(service, method, code).inc(count)
        for service, method, buckets, seconds in report.get("durations", ()):
            with contextlib.suppress(ValueError):  # another bucket layout: not mixed in
                metrics.add_worker_durations(service, method, buckets, seconds)
        return b""


class _GetOnly:
    """``read_index`` as the one method :class:`LoopReadIndex` calls on a ReadIndex (``get``)."""

    def __init__(self, get: Callable[[], Future[int]]) -> None:
        self.get = get


# -- worker side --------------------------------------------------------------------------------


def _forward_metadata(context: grpc.aio.ServicerContext[Any, Any], peer: str
                      ) -> list[tuple[str, str | bytes]]:
    """The call's metadata for main: without gRPC's own keys and any forwarded peer the client
    set, with the client's ``peer`` as :data:`~gantry.api.rpc.FORWARDED_PEER_KEY`."""
    kept: list[tuple[str, str | bytes]] = [
        (k, v) for k, v in (context.invocation_metadata() or ())
        if k not in _HOP_KEYS and not k.startswith(":")]
    return [*kept, (FORWARDED_PEER_KEY, peer)]


def _deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    r = context.time_remaining()
    return None if r is None or r > _MAX_DEADLINE_S else max(0.0, r)


class Passthrough(grpc.GenericRpcHandler):
    """Forwards every method of ``services`` not claimed by an earlier handler to the main
    process at ``target`` (``unix:…``), bytes in and out (method, metadata, deadline, the
    client's cancellation), on a ``grpc.aio`` server: each forwarded call is a coroutine on the
    front door's loop awaiting a ``grpc.aio`` call to main, so a call in flight holds no thread.
    ``streaming``: full method names answered with a response stream
    (``/gantry.admin.v1.ClusterService/Backup``); every other is unary. Logs one
    ``rpc_forwarded`` line per call (service, method, code, duration_ms, the client's peer,
    request_id); the main process logs the call's ``rpc_finished``.

    The channel is made on the loop at the first forwarded call (a ``grpc.aio`` channel belongs
    to the loop it was made on); :meth:`aclose` closes it, on that loop."""

    def __init__(self, target: str, services: Iterable[str], streaming: Iterable[str] = (),
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        self._target = target
        self._options = tuple(options)
        self._services = frozenset(services)
        self._streaming = frozenset(streaming)
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._lock = threading.Lock()
        self._channel: grpc.aio.Channel | None = None

    def _upstream(self) -> grpc.aio.Channel:
        if self._channel is None:  # on the loop's thread: no other coroutine runs meanwhile
            self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
        return self._channel

    async def aclose(self) -> None:
        """Close the channel to main (on the loop it was made on)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        service = method.lstrip("/").partition("/")[0]
        if service not in self._services:
            return None
        with self._lock:
            h = self._handlers.get(method)
            if h is None:
                if method in self._streaming:
                    h = grpc.unary_stream_rpc_method_handler(self._stream(method))
                else:
                    h = grpc.unary_unary_rpc_method_handler(self._unary(method))
                self._handlers[method] = h
        return h

    def _unary(self, method: str) -> Callable[[bytes, Any], Awaitable[bytes]]:
        async def forward(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            t0 = time.perf_counter()
            code = grpc.StatusCode.OK
            peer = context.peer()  # before the call ends: aio forgets it once the deadline passed
            call = self._upstream().unary_unary(method)(
                request, timeout=_deadline(context), metadata=_forward_metadata(context, peer))
            try:
                try:
                    response = await call
                except grpc.aio.AioRpcError as e:
                    code = e.code()
                    await _relay_error(context, e)
                    raise  # not reached: abort raised
                context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
                return bytes(response)
            except asyncio.CancelledError:  # the client cancelled (or its deadline passed)
                code = grpc.StatusCode.CANCELLED
                call.cancel()
                raise
            finally:
                _log_forwarded(method, code, t0, peer, context)

        return forward

    def _stream(self, method: str) -> Callable[[bytes, Any], AsyncIterator[bytes]]:
        async def forward(request: bytes, context: grpc.aio.ServicerContext[Any, Any]
                          ) -> AsyncIterator[bytes]:
            t0 = time.perf_counter()
            code = grpc.StatusCode.OK
            peer = context.peer()  # before the call ends: aio forgets it once the deadline passed
            call = self._upstream().unary_stream(method)(
                request, timeout=_deadline(context), metadata=_forward_metadata(context, peer))
            try:
                try:
                    async for msg in call:
                        yield bytes(msg)
                except grpc.aio.AioRpcError as e:
                    code = e.code()
                    await _relay_error(context, e)
                context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
            except (asyncio.CancelledError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                call.cancel()
                raise
            finally:
                _log_forwarded(method, code, t0, peer, context)

        return forward


async def _relay_error(context: grpc.aio.ServicerContext[Any, Any],
                       e: grpc.aio.AioRpcError) -> None:
    """Answer the client exactly what the main process answered: code, details and trailing
    metadata (``grpc-status-details-bin`` included). A main process that is gone reads as
    ``UNAVAILABLE`` from gRPC itself. Raises (``abort`` always does)."""
    await context.abort(e.code(), e.details() or "", tuple(e.trailing_metadata() or ()))


def _log_forwarded(method: str, code: grpc.StatusCode, t0: float, peer: str,
                   context: grpc.aio.ServicerContext[Any, Any]) -> None:
    service, _, name = method.lstrip("/").partition("/")
    fields: dict[str, Any] = {"grpc.service": service, "grpc.method": name,
                              "grpc.code": code.name,
                              "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
                              "peer": peer}
    for k, v in context.invocation_metadata() or ():
        if k == "x-request-id":
            fields["request_id"] = str(v)[:128]
    log.info("rpc_forwarded", **fields)


def remote_read_index(channel: grpc.Channel) -> ReadIndex:
    """A read index taken by the main process, for a worker's linearizable reads: a
    :class:`~gantry.consensus.readindex.ReadIndex` (its coalescing: at most one call in flight,
    reads arriving meanwhile share the next one) whose request is one internal ReadIndex call.
    The main process's read index is itself taken after the call arrived, so it is at least the
    commit index when the read began. The Future fails with the typed consensus error (or
    ``TimeoutError``) main's read index failed with, or with
    :class:`~gantry.consensus.errors.Stopping` when main cannot be reached."""
    call = channel.unary_unary(READ_INDEX_METHOD)

    def obtain() -> Future[int]:
        out: Future[int] = Future()

        def done(c: Any) -> None:
            try:
                index, error = pickle.loads(c.result())
            except grpc.RpcError:
                index, error = 0, Stopping()
            except Exception as e:  # noqa: BLE001 - undecodable: the read answers UNAVAILABLE
                index, error = 0, e
            if error is not None:
                out.set_exception(error)
            else:
                out.set_result(int(index))

        call.future(b"", timeout=READ_INDEX_TIMEOUT_S + 1).add_done_callback(done)
        return out

    return ReadIndex(obtain)


class AppliedFeed:
    """Follows the main process's WatchApplied stream on a thread of its own: advances
    ``watermark`` (or resets it, when main's went down after a restore) and mirrors health into
    ``health_servicer`` (NOT_SERVING while the stream is down). Reconnects until :meth:`stop`."""

    #: Pause (seconds) before reconnecting a broken stream.
    RETRY_S = 0.1

    def __init__(self, channel: grpc.Channel, watermark: Watermark,
                 health_servicer: health.HealthServicer) -> None:
        self._call = channel.unary_stream(WATCH_METHOD)
        self._watermark = watermark
        self._health = health_servicer
        self._stop = threading.Event()
        self._first = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name="watch-applied", daemon=True)

    def start(self, timeout_s: float) -> bool:
        """Start following; True once the first message arrived within ``timeout_s`` seconds."""
        self._thread.start()
        return self._first.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        self._thread.join(timeout=5)

    def _set_health(self, serving: bool) -> None:
        st = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
        self._health.set("", st)
        self._health.set("gantry.service.v1.GantryService", st)

    def _run(self) -> None:
        serving: bool | None = None
        while not self._stop.is_set():
            try:
                self._stream = self._call(b"", wait_for_ready=True)
                for msg in self._stream:
                    index, up = _APPLIED.unpack(msg)
                    if index >= self._watermark.value:
                        self._watermark.advance(index)
                    else:
                        self._watermark.reset(index)
                    if bool(up) != serving:
                        serving = bool(up)
                        self._set_health(serving)
                    self._first.set()
            except grpc.RpcError as e:
                if not self._stop.is_set():
                    log.warning("applied_feed_broken", code=e.code().name)
            if serving is not False:
                serving = False
                self._set_health(False)
            self._stop.wait(self.RETRY_S)



class RpcCountPusher:
    """Reports the calls this worker answered (its ``gantry_rpc_requests_total`` and its
    ``gantry_rpc_duration_seconds`` buckets) to the main process every ``interval_s`` seconds,
    as deltas; a report that fails is sent with the next one. :meth:`stop` sends a last
    report."""

    def __init__(self, channel: grpc.Channel, interval_s: float = 1.0) -> None:
        self._call = channel.unary_unary(RPC_COUNTS_METHOD)
        self._interval = interval_s
        self._sent: dict[tuple[str, str, str], float] = {}
        self._sent_durations: dict[tuple[str, str], tuple[list[float], float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rpc-counts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.push()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.push()

    def push(self) -> None:
        """Send what was counted since the last report that got through."""
        now: dict[tuple[str, str, str], float] = {}
        for family in metrics.RPC_REQUESTS.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    lb = sample.labels
                    now[(lb["grpc_service"], lb["grpc_method"], lb["grpc_code"])] = sample.value
        delta = [[*k, v - self._sent.get(k, 0.0)] for k, v in now.items()
                 if v > self._sent.get(k, 0.0)]
        durations = metrics.rpc_duration_samples()
        spans = []
        for key, (buckets, seconds) in durations.items():
            sent_buckets, sent_seconds = self._sent_durations.get(key, ([0.0] * len(buckets), 0.0))
            if buckets[-1] > sent_buckets[-1]:
                spans.append([*key, [a - b for a, b in zip(buckets, sent_buckets, strict=True)],
                              seconds - sent_seconds])
        if not delta and not spans:
            return
        try:
            self._call(json.dumps({"counts": delta, "durations": spans}).encode(), timeout=2)
        except grpc.RpcError:
            return  # main busy or gone: the next report carries these too
        self._sent, self._sent_durations = now, durations

"""FrontDoorActor: owns the gRPC server's lifecycle — start, health, graceful stop.

The API is served by a ``grpc.aio`` server on ONE asyncio event loop running in a thread of its
own (``grpc-aio``). Handlers (:class:`gantry.api.service.GantryService` and the admin services)
are coroutines on that loop: a call waiting for its write or its read index holds an asyncio
future, not a thread, and the writer resolves a whole applied batch in one hand-off to the loop
(``loop.call_soon_threadsafe``; :mod:`gantry.consensus.proposals`, :class:`gantry.db.Watermark`).
Work that must block (admin calls that ask a Raft actor, listings, backup file reads) runs on the
loop's small executor (:data:`EXECUTOR_WORKERS` threads, ``grpc-aside``), never on the loop.

This actor keeps the lifecycle: ``on_start`` starts the loop thread and the server on it and
records the bound port or why binding failed; :meth:`FrontDoorActor.stop_serving` flips health
to NOT_SERVING, then stops the server with a grace period; then the loop thread ends. Health is
flipped by the node from the Raft tick thread through the thread-safe (sync) health servicer.

Health has its own path: ``Health/Check`` is answered inline on the loop from the servicer's
table (microseconds), so it never queues behind waiting calls, however many wait (issue 7 item
11; issue 10). Overload: at most :data:`MAX_CONCURRENT_RPCS` calls at once, as before — the next
one is refused by gRPC with ``RESOURCE_EXHAUSTED "Concurrent RPC limit exceeded!"``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc
import pykka
import structlog
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from gantry.pb.service.v1 import service_pb2

log = structlog.get_logger("gantry.frontdoor")

#: Calls in progress at once (as the sync server's ``maximum_concurrent_rpcs`` was: 128 handler
#: threads × 8); the next is refused with RESOURCE_EXHAUSTED "Concurrent RPC limit exceeded!".
MAX_CONCURRENT_RPCS = 1024
#: Threads of the loop's executor: blocking admin calls, listings, backup reads.
EXECUTOR_WORKERS = 8
#: How often a ``Health/Watch`` stream looks for a change (seconds).
WATCH_POLL_S = 0.2
#: Largest request/response (bytes).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Longest the actor waits for the loop to start or stop the server, beyond the grace (seconds).
LOOP_TIMEOUT_S = 30.0
#: HTTP/2 keepalive of client connections with calls open (ms): the server pings after this
#: much silence and closes the connection when the ping is not answered within the timeout. A
#: health Watch or a Backup stream to a client whose host vanished otherwise held its call slot
#: (and a Backup its lock and copy) until gRPC's 2 h default.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
#: Least interval (ms) between a client's own keepalive pings the server accepts (etcd's
#: ``--grpc-keepalive-min-time``, 5 s; gRPC's default is 5 min, and a client pinging more often
#: is sent GOAWAY ``too_many_pings``).
CLIENT_PING_MIN_MS = 5_000

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running forever in a daemon thread named ``name``, with a default
    executor of ``workers`` threads. :meth:`run` runs a coroutine on it from another thread;
    :meth:`close` stops the loop, cancels what is left and joins the thread."""

    def __init__(self, name: str = "grpc-aio", workers: int = EXECUTOR_WORKERS) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="grpc-aside"))
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for t in pending:
                t.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run ``coro`` on the loop and wait up to ``timeout_s`` seconds for its result; raises
        what it raises, or ``TimeoutError``."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop (idempotent) and wait up to ``timeout_s`` seconds for its thread."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed meanwhile
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)


class FrontDoorActor(pykka.ThreadingActor):
    """Starts a grpc.aio server on ``host:port`` (port 0 = any free port) serving ``handlers``,
    the health service and, when ``reflection`` is set, server reflection. ``credentials``:
    TLS (:mod:`gantry.tlsconfig`), else plaintext; ``interceptors`` (``grpc.aio`` server
    interceptors) run before every handler (:mod:`gantry.api.auth`). ``reuse_port``: bind with
    ``SO_REUSEPORT``, so the node's read workers share the port (:mod:`gantry.readworker`); off,
    a port in use is a start error."""

    def __init__(
        self,
        host: str,
        port: int,
        handlers: list[grpc.GenericRpcHandler],
        health_servicer: health.HealthServicer,
        reflection_enabled: bool,
        extra_service_names: tuple[str, ...] = (),
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        reuse_port: bool = False,
    ) -> None:
        super().__init__()
        self._host = host
        self._port = port
        self._handlers = handlers
        self._health = health_servicer
        self._reflection = reflection_enabled
        self._extra = extra_service_names
        self._credentials = credentials
        self._interceptors = tuple(interceptors)
        self._reuse_port = reuse_port
        self._server: grpc.aio.Server | None = None
        self._loop: LoopThread | None = None
        self._bound_port = 0
        #: Why on_start failed (bind error), or "" when serving.
        self.start_error = ""

    def on_start(self) -> None:
        self._loop = LoopThread()
        try:
            self._loop.run(self._start(), LOOP_TIMEOUT_S)
        except Exception as e:  # the server did not start: say so, as for a bind error
            self.start_error = f"cannot start the gRPC server: {e!r}"
            log.exception("grpc_start_failed")
        if self._server is None:
            self._loop.close()
            self._loop = None
            return
        log.info("grpc_started", host=self._host, port=self._bound_port,
                 reflection=self._reflection, tls=self._credentials is not None)

    async def _start(self) -> None:
        """On the loop: build, bind and start the server (``self._server`` stays None when the
        address cannot be bound; ``start_error`` says why)."""
        server = grpc.aio.server(
            handlers=self._handlers,
            interceptors=self._interceptors,
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", int(self._reuse_port)),
                ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
                # grpcio 1.85 waits for the ping's ack this long, keepalive_timeout_ms aside
                # (default 60 s; measured: an unanswered ping closed the connection 62 s later).
                ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
                ("grpc.http2.min_ping_interval_without_data_ms", CLIENT_PING_MIN_MS),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        server.add_generic_rpc_handlers((_health_handler(self._health),))
        if self._reflection:
            names = (
                service_pb2.DESCRIPTOR.services_by_name["GantryService"].full_name,
                *self._extra,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            )
            reflection.enable_server_reflection(names, server)
        addr = f"{self._host}:{self._port}"
        try:
            if self._credentials is not None:
                self._bound_port = server.add_secure_port(addr, self._credentials)
            else:
                self._bound_port = server.add_insecure_port(addr)
        except RuntimeError:
            self._bound_port = 0
        if self._bound_port == 0:
            self.start_error = f"cannot listen on gRPC address {self._host}:{self._port} (in use?)"
            log.error("grpc_bind_failed", host=self._host, port=self._port)
            await server.stop(None)
            return
        await server.start()
        self._server = server

    def get_start_error(self) -> str:
        """"" when serving; otherwise why the server could not start."""
        return self.start_error

    def port(self) -> int:
        """The TCP port the server is bound to."""
        return self._bound_port

    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the API runs on (None once stopped); for tests and tools."""
        return None if self._loop is None else self._loop.loop

    def stop_serving(self, grace_s: float, keep_loop: bool = False) -> None:
        """Health NOT_SERVING, refuse new RPCs, give in-flight ones ``grace_s`` seconds, then
        cancel what is left and end the loop thread. ``keep_loop``: the loop thread runs on
        until the actor stops (the read workers' internal listener still serves on it)."""
        self._health.enter_graceful_shutdown()
        self._stop_server(grace_s, keep_loop)
        log.info("grpc_stopped")

    def _stop_server(self, grace_s: float, keep_loop: bool = False) -> None:
        server, self._server = self._server, None
        if server is not None and self._loop is not None:
            try:
                self._loop.run(server.stop(grace_s), grace_s + LOOP_TIMEOUT_S)
            except Exception:
                log.exception("grpc_stop_failed")
        if self._loop is not None and not keep_loop:
            self._loop.close()
            self._loop = None

    def on_stop(self) -> None:
        self._stop_server(0)

    def on_failure(self, *args: Any) -> None:
        self.on_stop()


class _StatusOnly:
    """The one thing the sync health servicer's ``Check`` asks of its context: ``set_code``."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code


def _health_handler(servicer: health.HealthServicer) -> grpc.GenericRpcHandler:
    """``grpc.health.v1.Health`` over the node's (thread-safe, sync) servicer. ``Check`` reads
    its table inline on the loop; ``Watch`` streams the status whenever it changes (looked at
    every :data:`WATCH_POLL_S`), ``SERVICE_UNKNOWN`` for a service it does not know."""

    async def check(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return servicer.Check(request, context)

    async def watch(request: Any, context: grpc.aio.ServicerContext[Any, Any]
                    ) -> AsyncIterator[Any]:
        last = None
        while True:
            probe = _StatusOnly()
            resp = servicer.Check(request, probe)
            status = (resp.status if probe.code == grpc.StatusCode.OK
                      else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            await asyncio.sleep(WATCH_POLL_S)

    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(
            watch,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
    })

"""FrontDoorActor: owns the gRPC server's lifecycle — start, health, graceful stop.

The server's own thread pool runs the handlers (:class:`gantry.api.service.GantryService`); this actor
only starts and stops it, so a slow RPC never blocks the actor. Health (``grpc.health.v1``) is
flipped by the node from the Raft tick thread through the thread-safe health servicer.

Health has its own path: ``Health/Check`` runs on a small pool of its own (grpcio's per-method
``experimental_thread_pool``), so it answers in milliseconds even when every handler thread is
held by a slow or waiting call (issue 7 item 11: it queued behind 300 calls and timed out).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures
from typing import Any

import grpc
import pykka
import structlog
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from gantry.pb.service.v1 import service_pb2

log = structlog.get_logger("gantry.frontdoor")

#: Handler threads; each blocks while its write is committed, so this bounds in-flight writes.
MAX_WORKERS = 128
#: Threads that answer only ``grpc.health.v1.Health/Check``.
HEALTH_WORKERS = 2
#: Largest request/response (bytes).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class FrontDoorActor(pykka.ThreadingActor):
    """Starts a grpc.Server on ``host:port`` (port 0 = any free port) serving ``handlers``,
    the health service and, when ``reflection`` is set, server reflection. ``credentials``:
    TLS (:mod:`gantry.tlsconfig`), else plaintext; ``interceptors`` run before every handler
    (:mod:`gantry.api.auth`). ``reuse_port``: bind with ``SO_REUSEPORT``, so the node's read
    workers share the port (:mod:`gantry.readworker`); off, a port in use is a start error."""

    def __init__(
        self,
        host: str,
        port: int,
        handlers: list[grpc.GenericRpcHandler],
        health_servicer: health.HealthServicer,
        reflection_enabled: bool,
        extra_service_names: tuple[str, ...] = (),
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
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
        self._server: grpc.Server | None = None
        self._health_pool: futures.ThreadPoolExecutor | None = None
        self._bound_port = 0
        #: Why on_start failed (bind error), or "" when serving.
        self.start_error = ""

    def on_start(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="grpc"),
            handlers=self._handlers,
            interceptors=self._interceptors,
            maximum_concurrent_rpcs=MAX_WORKERS * 8,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", int(self._reuse_port)),
            ],
        )
        self._health_pool = futures.ThreadPoolExecutor(max_workers=HEALTH_WORKERS,
                                                       thread_name_prefix="grpc-health")
        server.add_generic_rpc_handlers((_health_handler(self._health, self._health_pool),))
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
            return
        server.start()
        self._server = server
        log.info("grpc_started", host=self._host, port=self._bound_port,
                 reflection=self._reflection, tls=self._credentials is not None)

    def get_start_error(self) -> str:
        """"" when serving; otherwise why the server could not start."""
        return self.start_error

    def port(self) -> int:
        """The TCP port the server is bound to."""
        return self._bound_port

    def stop_serving(self, grace_s: float) -> None:
        """Health NOT_SERVING, refuse new RPCs, give in-flight ones ``grace_s`` seconds."""
        self._health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace_s).wait()
            self._server = None
            log.info("grpc_stopped")
        self._stop_health_pool()

    def on_stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait()
            self._server = None
        self._stop_health_pool()

    def _stop_health_pool(self) -> None:
        if self._health_pool is not None:
            self._health_pool.shutdown(wait=False, cancel_futures=True)
            self._health_pool = None

    def on_failure(self, *args: Any) -> None:
        self.on_stop()


def _health_handler(servicer: health.HealthServicer,
                    pool: futures.ThreadPoolExecutor) -> grpc.GenericRpcHandler:
    """``grpc.health.v1.Health`` with ``Check`` on ``pool`` (grpcio runs a behaviour that has an
    ``experimental_thread_pool`` attribute on that pool instead of the server's); ``Watch``, a
    long-lived stream, stays on the server's pool."""

    def check(request: Any, context: grpc.ServicerContext) -> Any:
        return servicer.Check(request, context)

    check.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
        "Watch": grpc.unary_stream_rpc_method_handler(
            servicer.Watch,
            request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString),
    })

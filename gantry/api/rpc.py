"""The wrapper every Gantry RPC runs in: requests that do not parse are refused
(``INVALID_ARGUMENT "malformed request"``), :class:`~gantry.api.errors.RpcError` becomes its
status (keeping trailing metadata already set, e.g. a write's log index), any other exception
becomes ``INTERNAL "internal error"`` with the stack in the log only, and every call logs one
``rpc_finished`` line (service, method, code, duration_ms, peer, request_id; ``via`` for a call
a read worker forwarded, whose peer is then the client's).

Used by both services (:mod:`gantry.api.service`, :mod:`gantry.api.admin`) through
:func:`build_handler`; runs on the gRPC event loop (``grpc.aio``, :mod:`gantry.actors.frontdoor`).
A handler is a coroutine function, awaited on the loop (it must never block: waits are asyncio
waits), or — ``blocking=True``, for the rare admin calls that ask a Raft actor and wait — a plain
function run on the loop's small executor (``asyncio.to_thread``), so the loop never blocks.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from gantry import logs, metrics
from gantry.api.errors import INTERNAL, RpcError, invalid_argument

LOGGER = "gantry.rpc"
log = structlog.get_logger(LOGGER)

REQUEST_ID_KEY = "x-request-id"
#: Metadata a read worker adds to each call it forwards to its main process: the client's peer as
#: the worker saw it. Believed only on a call that came over the internal unix socket (the
#: workers'; its directory is 0700), so a client cannot set what main logs as its peer.
FORWARDED_PEER_KEY = "x-gantry-forwarded-peer"
#: ``via`` of a call a read worker forwarded, in its ``rpc_finished`` line.
VIA_READ_WORKER = "read_worker"
_MSG_MALFORMED = "malformed request"


class _Malformed:
    """Stands in for a request whose bytes did not parse; the handler answers INVALID_ARGUMENT."""


MALFORMED = _Malformed()


def _deserializer(cls: type[Message]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        msg = cls()
        try:
            msg.ParseFromString(data)
        except (DecodeError, ValueError):
            return MALFORMED
        return msg

    return parse


def _serializer(msg: Message) -> bytes:
    return msg.SerializeToString()


def request_id(context: grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any]) -> str:
    """The call's ``x-request-id`` metadata (at most 128 characters), or ""."""
    for k, v in context.invocation_metadata() or ():
        if k == REQUEST_ID_KEY:
            return str(v)[:128]
    return ""


def call_origin(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, str, str]:
    """``(peer, request id, via)`` of a call: its peer (``ipv4:HOST:PORT``; for a call a read
    worker forwarded, the client's, with ``via`` = :data:`VIA_READ_WORKER`, else ``via`` is
    ""), and its ``x-request-id`` (at most 128 characters, or "")."""
    peer = context.peer() or ""
    rid = forwarded = ""
    for k, v in context.invocation_metadata() or ():
        if k == REQUEST_ID_KEY:
            rid = str(v)[:128]
        elif k == FORWARDED_PEER_KEY:
            forwarded = str(v)[:256]
    if forwarded and peer.startswith("unix:"):
        return forwarded, rid, VIA_READ_WORKER
    return peer, rid, ""


def build_handler(service: str,
                  methods: dict[str, tuple[Callable[..., Any], type[Message], type[Message]]],
                  blocking: bool = False) -> grpc.GenericRpcHandler:
    """A grpc generic handler for ``service``: method name → (handler, request type, response
    type). Every method refuses unparseable requests (INVALID_ARGUMENT), maps RpcError to its
    status, anything else to INTERNAL, and logs one ``rpc_finished`` line. Handlers are
    coroutine functions ``(request, context) -> response``; with ``blocking`` they are plain
    functions that may block, run off the loop (``asyncio.to_thread``)."""
    return grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(
            rpc_wrapper(service, name, _refuse_malformed(_on_loop(fn, blocking))),
            request_deserializer=_deserializer(req), response_serializer=_serializer)
        for name, (fn, req, _resp) in methods.items()
    })


Handler = Callable[[Any, Any], Awaitable[Any]]


def _on_loop(fn: Callable[..., Any], blocking: bool) -> Handler:
    """``fn`` as a coroutine function: itself when it is one; else, with ``blocking``, run in
    the loop's executor. Raises TypeError for a plain function without ``blocking`` (it would
    run on the loop and could stall every call)."""
    if inspect.iscoroutinefunction(fn):
        return fn
    if not blocking:
        raise TypeError(f"{fn!r} is not a coroutine function: pass blocking=True")

    async def off_loop(req: Any, context: Any) -> Any:
        return await asyncio.to_thread(fn, req, context)

    return off_loop


def _refuse_malformed(fn: Handler) -> Handler:
    async def handler(req: Any, context: Any) -> Any:
        if req is MALFORMED:
            raise invalid_argument(_MSG_MALFORMED, "")
        return await fn(req, context)

    return handler


def rpc_wrapper(service: str, method: str, fn: Handler) -> Handler:
    """Wrap a coroutine handler: map :class:`RpcError` to the status, any other exception to
    INTERNAL, and log one ``rpc_finished`` line (grpc.service, grpc.method, grpc.code,
    duration_ms, peer, request_id) and counts it in the metrics
    (:func:`gantry.metrics.rpc_observer`). A call cancelled by its client (or gRPC, at its
    deadline) logs ``CANCELLED``."""
    observe = metrics.rpc_observer(service, method)
    finished = logs.hot_info(LOGGER)

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        message = ""
        # Read before the call can be cancelled: grpcio's aio context must not be touched once
        # the call is cancelled (a Backup cancelled mid-stream crashed the node, SIGSEGV, in
        # invocation_metadata() from the finally block).
        peer, rid, via = call_origin(context)
        try:
            return await fn(request, context)
        except RpcError as e:
            code, message = e.code, e.message
            status = e.to_status()
            already = tuple(context.trailing_metadata() or ())  # e.g. the write's log index
            await context.abort(status.code, status.details,
                                tuple(status.trailing_metadata) + already)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code, message = INTERNAL.code, INTERNAL.message
            log.exception("rpc_failed", **{"grpc.service": service, "grpc.method": method})
            await context.abort(INTERNAL.code, INTERNAL.message)
        finally:
            elapsed = time.perf_counter() - t0
            observe(code, elapsed)
            fields = {
                "grpc.service": service,
                "grpc.method": method,
                "grpc.code": code.name,
                "duration_ms": round(elapsed * 1000, 3),
                "peer": peer,
            }
            if via:
                fields["via"] = via
            if rid:
                fields["request_id"] = rid
            if message:
                fields["message"] = message
            finished("rpc_finished", fields)

    return handler

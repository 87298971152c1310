"""The wrapper every Gantry RPC runs in: requests that do not parse are refused
(``INVALID_ARGUMENT "malformed request"``), :class:`~gantry.api.errors.RpcError` becomes its
status (keeping trailing metadata already set, e.g. a write's log index), any other exception
becomes ``INTERNAL "internal error"`` with the stack in the log only, and every call logs one
``rpc_finished`` line (service, method, code, duration_ms, peer, request_id).

Used by both services (:mod:`gantry.api.service`, :mod:`gantry.api.admin`) through
:func:`build_handler`; runs on the gRPC handler thread of the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from gantry import metrics
from gantry.api.errors import INTERNAL, RpcError, invalid_argument

log = structlog.get_logger("gantry.rpc")

REQUEST_ID_KEY = "x-request-id"
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


def request_id(context: grpc.ServicerContext) -> str:
    """The call's ``x-request-id`` metadata (at most 128 characters), or ""."""
    for k, v in context.invocation_metadata() or ():
        if k == REQUEST_ID_KEY:
            return str(v)[:128]
    return ""


def build_handler(service: str,
                  methods: dict[str, tuple[Callable[..., Any], type[Message], type[Message]]]
                  ) -> grpc.GenericRpcHandler:
    """A grpc generic handler for ``service``: method name → (handler, request type, response
    type). Every method refuses unparseable requests (INVALID_ARGUMENT), maps RpcError to its
    status, anything else to INTERNAL, and logs one ``rpc_finished`` line."""
    return grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(
            rpc_wrapper(service, name, _refuse_malformed(fn)),
            request_deserializer=_deserializer(req), response_serializer=_serializer)
        for name, (fn, req, _resp) in methods.items()
    })


def _refuse_malformed(fn: Callable[[Any, grpc.ServicerContext], Any]
                      ) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handler(req: Any, context: grpc.ServicerContext) -> Any:
        if req is MALFORMED:
            raise invalid_argument(_MSG_MALFORMED, "")
        return fn(req, context)

    return handler


class _Status(NamedTuple):
    """A grpc.Status (code, details, trailing_metadata) for abort_with_status."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def rpc_wrapper(service: str, method: str, fn: Callable[[Any, grpc.ServicerContext], Any]
                ) -> Callable[[Any, grpc.ServicerContext], Any]:
    """Wrap a handler: map :class:`RpcError` to the status, any other exception to INTERNAL,
    and log one ``rpc_finished`` line (grpc.service, grpc.method, grpc.code, duration_ms, peer,
    request_id) and counts it in the metrics (:func:`gantry.metrics.rpc_observer`)."""
    observe = metrics.rpc_observer(service, method)

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        message = ""
        try:
            return fn(request, context)
        except RpcError as e:
            code, message = e.code, e.message
            status = e.to_status()
            already = tuple(context.trailing_metadata() or ())  # e.g. the write's log index
            if already:
                status = _Status(status.code, status.details,
                                 tuple(status.trailing_metadata) + already)
            context.abort_with_status(status)
        except Exception:
            code, message = INTERNAL.code, INTERNAL.message
            log.exception("rpc_failed", **{"grpc.service": service, "grpc.method": method})
            context.abort(INTERNAL.code, INTERNAL.message)
        finally:
            elapsed = time.perf_counter() - t0
            observe(code, elapsed)
            fields = {
                "grpc.service": service,
                "grpc.method": method,
                "grpc.code": code.name,
                "duration_ms": round(elapsed * 1000, 3),
                "peer": context.peer(),
            }
            rid = request_id(context)
            if rid:
                fields["request_id"] = rid
            if message:
                fields["message"] = message
            log.info("rpc_finished", **fields)

    return handler

"""Who may change the cluster: ClusterService's authorization, in one place.

A node whose gRPC server is bound to loopback answers every ClusterService call, as before:
whoever reaches it is on the machine. A node bound beyond loopback (``--host`` 0.0.0.0, a LAN
address) answers ``Status`` to anyone who can connect — it is read-only and holds no secret, as
etcd leaves its member list and health endpoints readable — and every other ClusterService
method (membership, leadership transfer, backup, and whatever is added later: the list kept here
is of the *open* methods) only to a caller that presents

- a client certificate the TLS handshake verified against ``--tls-client-ca`` (mTLS: with a
  client CA every client holds one, so every client of such a node is an administrator — issue
  client certificates accordingly), or
- ``authorization: Bearer <GANTRY_ADMIN_TOKEN>`` metadata (compared in constant time).

Refusals, with stable messages:

- ``UNAUTHENTICATED "admin credentials required: a client certificate or an authorization: Bearer
  token"`` — nothing presented;
- ``UNAUTHENTICATED "invalid admin token"`` — a token that is not this node's;
- ``PERMISSION_DENIED "admin calls disabled: this node listens beyond loopback with neither
  GANTRY_ADMIN_TOKEN nor --tls-client-ca set"`` — nobody can be authorized.

It is a ``grpc.aio`` server interceptor, so it covers every ClusterService method however it is
registered (unary or streaming, coroutine or plain function). A refusal logs one
``admin_call_refused`` line instead of the wrapper's ``rpc_finished`` (the handler never runs).
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import structlog

from gantry.api.admin import SERVICE_NAME
from gantry.tlsconfig import AUTHORIZATION_KEY, BEARER

if TYPE_CHECKING:
    from gantry.config import Config

log = structlog.get_logger("gantry.auth")

#: ClusterService methods anyone who can connect may call.
OPEN_METHODS = frozenset({"Status"})

MSG_CREDENTIALS_REQUIRED = ("admin credentials required: a client certificate or an "
                            "authorization: Bearer token")
MSG_INVALID_TOKEN = "invalid admin token"
MSG_DISABLED = ("admin calls disabled: this node listens beyond loopback with neither "
                "GANTRY_ADMIN_TOKEN nor --tls-client-ca set")

Refusal = tuple[grpc.StatusCode, str]


class AdminAuth(grpc.aio.ServerInterceptor):
    """Guards ClusterService's closed methods when ``required`` (the server is bound beyond
    loopback). ``token``: the admin token ("" = none); ``client_certs``: the server verifies
    client certificates (``--tls-client-ca``)."""

    def __init__(self, required: bool, token: str = "", client_certs: bool = False) -> None:
        self.required = required
        self._token = token.encode()
        self._client_certs = client_certs

    @property
    def mode(self) -> str:
        """For the start-up log: how a closed method can be called."""
        if not self.required:
            return "open (loopback)"
        ways = [w for w, on in (("client certificate", self._client_certs),
                                ("admin token", bool(self._token))) if on]
        return " or ".join(ways) or "disabled"

    def refusal(self, context: Any) -> Refusal | None:
        """None when the call may proceed, else the status to answer."""
        if not self.required:
            return None
        if self._client_certs and context.auth_context().get("x509_pem_cert"):
            return None  # grpcio verified it against --tls-client-ca during the handshake
        presented = _bearer(context.invocation_metadata())
        if presented is not None and self._token:
            if hmac.compare_digest(presented.encode(), self._token):
                return None
            return grpc.StatusCode.UNAUTHENTICATED, MSG_INVALID_TOKEN
        if not self._token and not self._client_certs:
            return grpc.StatusCode.PERMISSION_DENIED, MSG_DISABLED
        if presented is not None:
            return grpc.StatusCode.UNAUTHENTICATED, MSG_INVALID_TOKEN
        return grpc.StatusCode.UNAUTHENTICATED, MSG_CREDENTIALS_REQUIRED

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
            handler_call_details: grpc.HandlerCallDetails) -> Any:
        """The method's handler, guarded when it is a closed ClusterService method."""
        handler = await continuation(handler_call_details)
        if handler is None or not self.required:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").partition("/")
        if service != SERVICE_NAME or method in OPEN_METHODS:
            return handler
        return _guarded(handler, method, self.refusal)


def _bearer(metadata: Any) -> str | None:
    """The token of an ``authorization: Bearer …`` header, "" for another scheme, None without
    the header."""
    for k, v in metadata or ():
        if k == AUTHORIZATION_KEY:
            text = v.decode(errors="replace") if isinstance(v, bytes) else str(v)
            return text[len(BEARER):].strip() if text.startswith(BEARER) else ""
    return None


def _guarded(handler: Any, method: str, refusal: Callable[[Any], Refusal | None]) -> Any:
    """``handler`` (a grpc.RpcMethodHandler of any shape) with ``refusal`` checked first; the
    behaviour may be a coroutine function, an async generator function or a plain one."""

    async def check(context: Any) -> None:
        refused = refusal(context)
        if refused is not None:
            code, message = refused
            log.warning("admin_call_refused", **{"grpc.service": SERVICE_NAME,
                                                 "grpc.method": method,
                                                 "grpc.code": code.name},
                        peer=context.peer(), message=message)
            await context.abort(code, message)

    def unary(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        async def guarded(request: Any, context: Any) -> Any:
            await check(context)
            result = fn(request, context)
            return await result if inspect.isawaitable(result) else result

        return guarded

    def streaming(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        async def guarded(request: Any, context: Any) -> AsyncIterator[Any]:
            await check(context)
            responses = fn(request, context)
            if hasattr(responses, "__aiter__"):
                async for r in responses:
                    yield r
            else:
                for r in responses:
                    yield r

        return guarded

    ser, de = handler.response_serializer, handler.request_deserializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), de, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), de, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), de, ser)
    return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), de, ser)


def admin_interceptor(cfg: Config) -> AdminAuth:
    """The node's :class:`AdminAuth`, from its configuration."""
    return AdminAuth(required=cfg.grpc_beyond_loopback, token=cfg.admin_token,
                     client_certs=cfg.tls_client_ca is not None)

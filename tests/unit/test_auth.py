"""ClusterService authorization (gantry/api/auth.py) over fake call contexts: who may call what,
and the statuses the others get. The process tests (tests/cluster/test_tls.py) show it on a node."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from gantry.api import auth

TOKEN = "0123456789abcdef0123"
ADMIN = "/gantry.admin.v1.ClusterService/"


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = (), cert: bool = False) -> None:
        self._metadata = metadata
        self._cert = cert
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        ctx = {"transport_security_type": [b"ssl"]}
        if self._cert:
            ctx["x509_pem_cert"] = [b"-----BEGIN CERTIFICATE-----"]
        return ctx

    def peer(self) -> str:
        return "ipv4:10.0.0.9:5000"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def call(a: auth.AdminAuth, method: str, ctx: FakeContext, streaming: bool = False) -> Any:
    """Run ``method`` through the (grpc.aio) interceptor on an event loop; the handler answers
    "ran" (a coroutine, or an async generator yielding it once)."""
    async def behaviour(request: Any, context: Any) -> str:
        return "ran"

    async def stream(request: Any, context: Any) -> Any:
        yield "ran"

    handler = (grpc.unary_stream_rpc_method_handler(stream) if streaming
               else grpc.unary_unary_rpc_method_handler(behaviour))

    async def continuation(_d: Any) -> Any:
        return handler

    async def run() -> Any:
        h = await a.intercept_service(continuation, Details(method))  # type: ignore[arg-type]
        try:
            if streaming:
                return [r async for r in h.unary_stream(None, ctx)][0]
            return await h.unary_unary(None, ctx)
        except Aborted:
            return ctx.aborted

    return asyncio.run(run())


def test_a_plain_function_behaviour_is_guarded_too() -> None:
    a = auth.AdminAuth(required=True, token=TOKEN)
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: "ran")

    async def continuation(_d: Any) -> Any:
        return handler

    async def run(ctx: FakeContext) -> Any:
        h = await a.intercept_service(continuation, Details(ADMIN + "AddNode"))  # type: ignore[arg-type]
        try:
            return await h.unary_unary(None, ctx)
        except Aborted:
            return ctx.aborted

    assert asyncio.run(run(FakeContext(bearer(TOKEN)))) == "ran"
    assert asyncio.run(run(FakeContext()))[0] == grpc.StatusCode.UNAUTHENTICATED


def test_loopback_is_open_as_before() -> None:
    a = auth.AdminAuth(required=False)
    assert call(a, ADMIN + "AddNode", FakeContext()) == "ran"
    assert a.mode == "open (loopback)"


def test_beyond_loopback_status_is_open_and_changes_need_credentials() -> None:
    a = auth.AdminAuth(required=True, token=TOKEN)
    assert call(a, ADMIN + "Status", FakeContext()) == "ran"
    for method in ("AddNode", "RemoveNode", "TransferLeadership", "Backup", "SomethingNew"):
        assert call(a, ADMIN + method, FakeContext()) == (
            grpc.StatusCode.UNAUTHENTICATED, auth.MSG_CREDENTIALS_REQUIRED), method
    # Streaming methods (Backup) are guarded the same way.
    assert call(a, ADMIN + "Backup", FakeContext(), streaming=True)[0] == \
        grpc.StatusCode.UNAUTHENTICATED
    assert call(a, ADMIN + "Backup", FakeContext(bearer(TOKEN)), streaming=True) == "ran"
    # Other services are not ClusterService's business.
    assert call(a, "/gantry.service.v1.GantryService/CreateBucket", FakeContext()) == "ran"
    assert call(a, "/grpc.health.v1.Health/Check", FakeContext()) == "ran"


def test_tokens() -> None:
    a = auth.AdminAuth(required=True, token=TOKEN)
    assert call(a, ADMIN + "AddNode", FakeContext(bearer(TOKEN))) == "ran"
    for md in (bearer("wrong"), bearer(TOKEN[:-1]), bearer(""), (("authorization", TOKEN),),
               (("authorization", f"Basic {TOKEN}"),)):
        assert call(a, ADMIN + "AddNode", FakeContext(md)) == (grpc.StatusCode.UNAUTHENTICATED,
                                                                auth.MSG_INVALID_TOKEN), md
    assert a.mode == "admin token"


def test_a_verified_client_certificate_is_enough_with_a_client_ca() -> None:
    a = auth.AdminAuth(required=True, client_certs=True)
    assert call(a, ADMIN + "AddNode", FakeContext(cert=True)) == "ran"
    assert call(a, ADMIN + "AddNode", FakeContext())[0] == grpc.StatusCode.UNAUTHENTICATED
    # Without --tls-client-ca a certificate proves nothing (grpcio did not ask for one).
    b = auth.AdminAuth(required=True, token=TOKEN)
    assert call(b, ADMIN + "AddNode", FakeContext(cert=True))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert auth.AdminAuth(required=True, token=TOKEN, client_certs=True).mode == \
        "client certificate or admin token"


@pytest.mark.parametrize("md", [(), bearer(TOKEN)])
def test_nobody_is_an_admin_without_a_token_or_a_client_ca(md: tuple[tuple[str, str], ...]) -> None:
    a = auth.AdminAuth(required=True)
    assert call(a, ADMIN + "AddNode", FakeContext(md)) == (grpc.StatusCode.PERMISSION_DENIED,
                                                            auth.MSG_DISABLED)
    assert call(a, ADMIN + "Status", FakeContext()) == "ran"
    assert a.mode == "disabled"

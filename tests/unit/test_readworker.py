"""The main process ↔ read worker wire (gantry/api/internal.py) on a real unix-socket gRPC
server in one process, and the configuration a worker receives (gantry/readworker.py)."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # before grpc loads: nodes are spawned

import grpc
import pytest
from grpc_health.v1 import health, health_pb2

from gantry.api import internal
from gantry.api.errors import Call, Kind, error_status
from gantry.config import Config
from gantry.consensus import errors as ce
from gantry.db import Watermark
from gantry.readworker import config_from_json, config_to_json
from tests.support import wait_until

T = 10


def _all_subclasses(cls: type[Exception]) -> list[type[Exception]]:
    out = [cls]
    sub: type[Exception]
    for sub in cls.__subclasses__():
        out += _all_subclasses(sub)
    return out


def _status(e: BaseException) -> tuple[Any, ...]:
    st = error_status(e, Call(Kind.READ, "GetBucket", lambda _addr: "127.0.0.1:1")).to_status()
    return st.code, st.details, st.trailing_metadata


def test_config_crosses_the_pipe_unchanged() -> None:
    cfg = Config(data_dir=pathlib.Path("d"), tls_cert=pathlib.Path("/c.pem"), peers=["h:1"],
                 read_workers=2, grace_s=2.5, admin_token="t" * 20)
    back = config_from_json(json.loads(json.dumps(config_to_json(cfg))))
    assert back == cfg
    assert isinstance(back.data_dir, pathlib.Path) and back.tls_key is None


@pytest.mark.parametrize("cls", _all_subclasses(ce.ConsensusError), ids=lambda c: c.__name__)
def test_read_index_errors_map_to_the_status_main_would_answer(cls: type[Exception]) -> None:
    e = cls("127.0.0.1:7001")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls
    assert _status(back) == _status(e)


def test_deadline_and_denial_cross_too() -> None:
    for e in (TimeoutError(), ce.RequestDenied("h:1", why="busy")):
        back = pickle.loads(pickle.dumps(e))
        assert _status(back) == _status(e)
        assert getattr(back, "why", None) == getattr(e, "why", None)


class _FakeReadIndex:
    """``get()`` futures the test resolves by hand, counting calls."""

    def __init__(self) -> None:
        self.calls: list[Future[int]] = []
        self.lock = threading.Lock()

    def get(self) -> Future[int]:
        f: Future[int] = Future()
        with self.lock:
            self.calls.append(f)
        return f


@pytest.fixture()
def wire(tmp_path: pathlib.Path) -> Iterator[tuple[internal.InternalServer, grpc.Channel,
                                                  Watermark, _FakeReadIndex, list[bool]]]:
    wm = Watermark(5)
    ri = _FakeReadIndex()
    serving = [True]
    server = internal.InternalServer(internal.socket_path(tmp_path), [], wm,
                                     lambda: serving[0], ri.get)
    server.start()
    ch = grpc.insecure_channel(f"unix:{server.path}")
    try:
        yield server, ch, wm, ri, serving
    finally:
        ch.close()
        wm.close()
        server.stop()


def test_socket_directory_is_private(tmp_path: pathlib.Path) -> None:
    path = internal.socket_path(tmp_path)
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_remote_read_index_one_call_per_batch_of_reads(wire: Any) -> None:
    _server, ch, _wm, ri, _ = wire
    remote = internal.remote_read_index(ch)
    first = remote.get()
    wait_until(lambda: len(ri.calls) == 1, T, what="the first call")
    later = [remote.get() for _ in range(5)]  # arrive while the first call flies
    assert len({id(f) for f in later}) == 1 and later[0] is not first
    ri.calls[0].set_result(7)
    assert first.result(T) == 7
    wait_until(lambda: len(ri.calls) == 2, T, what="the second call, for the later reads")
    ri.calls[1].set_exception(ce.NoLeader())
    with pytest.raises(ce.NoLeader):
        later[0].result(T)
    assert len(ri.calls) == 2  # nobody waits: no third call


def test_remote_read_index_without_main_is_stopping(tmp_path: pathlib.Path) -> None:
    ch = grpc.insecure_channel(f"unix:{tmp_path / 'nobody.sock'}")
    try:
        with pytest.raises(ce.Stopping):
            internal.remote_read_index(ch).get().result(T)
    finally:
        ch.close()


def test_applied_feed_follows_main(wire: Any) -> None:
    _server, ch, wm, _ri, serving = wire
    mine = Watermark()
    hs = health.HealthServicer()
    feed = internal.AppliedFeed(ch, mine, hs)

    def status() -> Any:
        return hs.Check(health_pb2.HealthCheckRequest(service=""), None).status

    try:
        assert feed.start(T)
        assert mine.value == 5 and status() == health_pb2.HealthCheckResponse.SERVING
        wm.advance(9)
        assert mine.wait_for(9, T)
        wm.reset(3)  # a restore took the file back: the worker's index follows it down
        wait_until(lambda: mine.value == 3, T, what="the reset")
        serving[0] = False
        wait_until(lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING, T,
                   what="NOT_SERVING mirrored")
    finally:
        feed.stop()


class _Echo(grpc.GenericRpcHandler):
    """Stands in for main's handlers: fails with details and trailing metadata, answers, streams
    or hangs until its call ends (``started``, ``ended``, the deadline it saw)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.ended = threading.Event()
        self.ended_remaining: float | None = None

    def service(self, hcd: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if hcd.method == "/t.S/Ok":
            def ok(req: bytes, context: grpc.ServicerContext) -> bytes:
                context.set_trailing_metadata((("x-ok", "1"),))
                return req + b"?"

            return grpc.unary_unary_rpc_method_handler(ok)
        if hcd.method == "/t.S/Hang":
            def hang(req: bytes, context: grpc.ServicerContext) -> bytes:
                self.ended_remaining = context.time_remaining()
                self.started.set()
                while context.is_active():
                    threading.Event().wait(0.02)
                self.ended.set()
                return b""

            return grpc.unary_unary_rpc_method_handler(hang)
        if hcd.method == "/t.S/Fail":
            def fail(req: bytes, context: grpc.ServicerContext) -> bytes:
                context.set_trailing_metadata((("x-a", "1"), ("grpc-status-details-bin", b"\x01"),
                                               ("x-md", dict(context.invocation_metadata())
                                                .get("x-md", ""))))
                context.abort(grpc.StatusCode.NOT_FOUND, "gone")
                raise AssertionError

            return grpc.unary_unary_rpc_method_handler(fail)
        if hcd.method == "/t.S/Stream":
            def stream(req: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
                context.set_trailing_metadata((("x-end", "yes"),))
                yield from (req, req + b"!")

            return grpc.unary_stream_rpc_method_handler(stream)
        return None


@pytest.fixture()
def passthrough(tmp_path: pathlib.Path) -> Iterator[tuple[grpc.Channel, _Echo]]:
    """A sync stand-in for main behind a worker's Passthrough on a grpc.aio server (its own
    loop thread, as the worker's front door); yields a client channel to the worker."""
    from concurrent import futures

    from gantry.actors.frontdoor import LoopThread

    echo = _Echo()
    main = grpc.server(futures.ThreadPoolExecutor(4), handlers=[echo])
    main.add_insecure_port(f"unix:{tmp_path / 'm.sock'}")
    main.start()
    pt = internal.Passthrough(f"unix:{tmp_path / 'm.sock'}", ["t.S"], ["/t.S/Stream"])
    lt = LoopThread(name="worker-loop", workers=1)

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(handlers=[pt])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    worker, port = lt.run(start(), T)
    client = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield client, echo
    finally:
        client.close()
        lt.run(worker.stop(0), T)
        lt.run(pt.aclose(), T)
        lt.close()
        main.stop(0).wait()


def test_passthrough_relays_status_details_and_trailers(passthrough: Any) -> None:
    client, _echo = passthrough
    with pytest.raises(grpc.RpcError) as ei:
        client.unary_unary("/t.S/Fail")(b"x", timeout=T, metadata=(("x-md", "v"),))
    e: Any = ei.value
    assert (e.code(), e.details()) == (grpc.StatusCode.NOT_FOUND, "gone")
    assert list(e.trailing_metadata()) == [("x-a", "1"), ("grpc-status-details-bin", b"\x01"),
                                           ("x-md", "v")]
    response, call = client.unary_unary("/t.S/Ok").with_call(b"ok", timeout=T)
    assert response == b"ok?" and dict(call.trailing_metadata())["x-ok"] == "1"
    call = client.unary_stream("/t.S/Stream")(b"hi", timeout=T)
    assert list(call) == [b"hi", b"hi!"]
    assert dict(call.trailing_metadata())["x-end"] == "yes"
    with pytest.raises(grpc.RpcError) as ei:
        client.unary_unary("/other.S/M")(b"", timeout=T)  # not forwarded: unknown here
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_passthrough_passes_the_deadline_and_cancellation_on(passthrough: Any) -> None:
    client, echo = passthrough
    with pytest.raises(grpc.RpcError) as ei:
        client.unary_unary("/t.S/Hang")(b"", timeout=0.5)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert echo.ended.wait(T) and echo.ended_remaining is not None
    assert echo.ended_remaining < 1  # main saw the client's deadline
    echo.ended.clear()
    echo.started.clear()
    fut = client.unary_unary("/t.S/Hang").future(b"", timeout=T)
    assert echo.started.wait(T)
    fut.cancel()
    assert echo.ended.wait(T / 2)  # main's call ended long before its deadline: cancelled

"""A client whose host vanishes while it holds a stream open: the node's HTTP/2 keepalive finds
out and closes the connection (``gantry.actors.frontdoor.KEEPALIVE_TIME_MS`` +
``KEEPALIVE_TIMEOUT_MS``), instead of holding the call slot until gRPC's 2 h default.

The vanished host is a TCP relay on 127.0.0.1 that stops forwarding in both directions without
closing anything, as a host that lost power or a partition does."""

from __future__ import annotations

import pathlib
import socket
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gantry.actors.frontdoor import KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS
from tests.support import single_node, wait_until


class _Relay:
    """Accepts one client on a free port and relays it to ``upstream``; after :meth:`vanish`
    nothing more is forwarded either way (bytes are read and dropped), and ``upstream_closed``
    is set once the node closes its side."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self._listen.getsockname()[1]}"
        self._upstream = upstream
        self._vanished = threading.Event()
        self.upstream_closed = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self._listen.accept()
        up = socket.create_connection(self._upstream)
        self._socks += [client, up]
        threading.Thread(target=self._pump, args=(client, up, False), daemon=True).start()
        threading.Thread(target=self._pump, args=(up, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_node: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                if from_node:
                    self.upstream_closed.set()
                return
            if not self._vanished.is_set():
                try:
                    dst.sendall(data)
                except OSError:
                    return

    def vanish(self) -> None:
        self._vanished.set()

    def close(self) -> None:
        for s in (*self._socks, self._listen):
            s.close()


@pytest.mark.slow
def test_a_stream_to_a_vanished_client_is_closed_by_keepalive(tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path) as nd:
        relay = _Relay(("127.0.0.1", nd.port))
        channel = grpc.insecure_channel(relay.addr)
        try:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
            relay.vanish()
            budget_s = (KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS) / 1000 + 15
            wait_until(relay.upstream_closed.is_set, budget_s, interval_s=0.5,
                       what="the node closes the vanished client's connection")
            assert nd.is_serving()
        finally:
            channel.close()
            relay.close()

"""Unit tests of ``gantry.consensus.probe`` against hand-made answers on a loopback socket."""

from __future__ import annotations

import pathlib
import pickle
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gantry.consensus import probe
from gantry.consensus.pysyncobj_compat import (
    PROBE_MAX_NOOP_TAIL,
    PROBE_REPLY_TYPE,
    _command_before_noops,
    entry_digest,
)


class _Touch:
    """Unpickling this creates a file: the proof that a class was built."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


@contextmanager
def _answering(payload: bytes) -> Iterator[str]:
    """A listener that reads one frame and answers ``payload`` (raw bytes after the frame)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            (n,) = struct.unpack("i", conn.recv(4))
            while n > 0:
                n -= len(conn.recv(n))
            conn.sendall(payload)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()
        t.join(5)


def _frame(message: object) -> bytes:
    body = zlib.compress(pickle.dumps(message))
    return struct.pack("i", len(body)) + body


def test_a_good_answer_is_read() -> None:
    reply = {"type": PROBE_REPLY_TYPE, "raft_addr": "127.0.0.1:7001",
             "members": ["127.0.0.1:7002", "127.0.0.1:7001"], "leader": None}
    with _answering(_frame(reply)) as addr:
        who = probe.ask(addr, own_addr="127.0.0.1:7000", password=None)
    assert who == probe.Identity("127.0.0.1:7001", ["127.0.0.1:7001", "127.0.0.1:7002"], None)


def test_an_answer_holding_objects_is_refused_unbuilt(tmp_path: pathlib.Path) -> None:
    """The Raft transport is pickle: a probe must not let another port make it build objects."""
    target = tmp_path / "built"
    with _answering(_frame({"type": PROBE_REPLY_TYPE, "x": _Touch(str(target))})) as addr:
        with pytest.raises(probe.ProbeError, match="does not decode"):
            probe.ask(addr, own_addr="127.0.0.1:7000", password=None)
    assert not target.exists()


@pytest.mark.parametrize(("payload", "match"), [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a Raft frame"),
    (struct.pack("i", 5) + b"hello", "does not decode"),
    (_frame({"type": "something else"}), "not a Gantry node's"),
    (b"", "closed before an answer"),
])
def test_foreign_answers_are_refused(payload: bytes, match: str) -> None:
    with _answering(payload) as addr:
        with pytest.raises(probe.ProbeError, match=match):
            probe.ask(addr, own_addr="127.0.0.1:7000", password=None, timeout_s=5)


def test_nothing_listening_is_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(probe.ProbeError, match="cannot connect|closed"):
        probe.ask(addr, own_addr="127.0.0.1:7000", password=None)


def test_an_answer_naming_a_noop_tail_is_read() -> None:
    reply = {"type": PROBE_REPLY_TYPE, "raft_addr": "127.0.0.1:7001", "members": ["127.0.0.1:7001"],
             "leader": None, "term": 4, "last": [12, 4, "d-noop"],
             "last_command": [10, 2, "d-cmd"], "noop_tail": [[11, 3], [12, 4]]}
    with _answering(_frame(reply)) as addr:
        who = probe.ask(addr, own_addr="127.0.0.1:7000", password=None)
    assert (who.last, who.last_command, who.noop_tail) == (
        (12, 4, "d-noop"), (10, 2, "d-cmd"), ((11, 3), (12, 4)))


def test_a_malformed_noop_tail_is_refused() -> None:
    reply = {"type": PROBE_REPLY_TYPE, "raft_addr": "127.0.0.1:7001", "members": ["127.0.0.1:7001"],
             "leader": None, "term": 4, "last": [12, 4, "d"], "last_command": [10, 2, "c"],
             "noop_tail": [[11, "3"]]}
    with _answering(_frame(reply)) as addr, pytest.raises(probe.ProbeError, match="not a Gantry"):
        probe.ask(addr, own_addr="127.0.0.1:7000", password=None)


NOOP, CMD = b"\x01", b"\x00some-command"


@pytest.mark.parametrize(("log", "expected"), [
    # ends at a command: nothing to add (its own last entry is compared)
    ([(NOOP, 1, 0), (CMD, 2, 1)], ([], [], False)),
    # a command, then a no-op per election won
    ([(NOOP, 1, 0), (CMD, 2, 1), (NOOP, 3, 2), (NOOP, 4, 3)],
     ([2, 1, entry_digest(CMD)], [[3, 2], [4, 3]], False)),
    # only no-ops back to the log's first entry: no command to compare
    ([(NOOP, 1, 0), (NOOP, 2, 1)], ([], [], False)),
    # more no-ops than an answer lists: nothing to compare, and the answer says so
    ([(CMD, 1, 1)] + [(NOOP, i, i) for i in range(2, PROBE_MAX_NOOP_TAIL + 3)], ([], [], True)),
])
def test_the_command_before_a_noop_tail(log: list[tuple[bytes, int, int]],
                                        expected: tuple[list[object], list[list[int]], bool]
                                        ) -> None:
    assert _command_before_noops(log) == expected

"""Ask the node at a Raft address who it is, over the Raft transport (override 23 of
:mod:`gantry.consensus.pysyncobj_compat` answers).

Purpose: ``add-node`` must only put a Gantry node that was started to join this cluster into
the configuration — every member counts toward quorum from the moment its entry is appended
(Raft thesis §4.1), so a wrong address (a gRPC port, a cradle, an alias of a member, a node
running its own cluster) can stall every write. etcd checks a new member's peer URL before
``member add`` in the same spirit.

The exchange is pysyncobj 0.3.17's framing (a native 4-byte length, then a zlib stream of a
pickle; Fernet-encrypted with the key derived from ``--raft-password`` when one is set, after
pysyncobj's random-key exchange), on a blocking socket with one deadline. What comes back is
unpickled with no classes allowed (only dicts, lists, strings, bytes, numbers, None): the Raft
port of another program cannot make this process build objects.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

from gantry.consensus.pysyncobj_compat import (
    PROBE_MAX_NOOP_TAIL,
    PROBE_REPLY_TYPE,
    PROBE_TYPE,
    encode_message,
)

#: The longest answer (bytes) read: a reply names a few addresses.
MAX_REPLY_BYTES = 64 * 1024


class ProbeError(RuntimeError):
    """No Gantry Raft node answered at the address; the message says what was seen."""


@dataclass(frozen=True)
class Identity:
    """What the node at a Raft address says of itself: its ``--raft-addr``, the members of its
    current configuration (itself included, sorted), the leader it follows (or None), its
    current term, and its last log entry ``(log index, term, entry digest)`` (``(0, 0, "")``
    from a node that did not say). When that log ends at no-ops (a leader appends one per term
    won, and every no-op's bytes are the same): ``last_command``, the last entry before them in
    the same form, and ``noop_tail``, the ``(log index, term)`` of each no-op after it in log
    order (``(0, 0, "")`` and ``()`` otherwise, or from a node that did not say)."""

    raft_addr: str
    members: list[str]
    leader: str | None
    term: int = 0
    last: tuple[int, int, str] = (0, 0, "")
    last_command: tuple[int, int, str] = (0, 0, "")
    noop_tail: tuple[tuple[int, int], ...] = ()
    #: Whether its log ends at more no-ops than an answer lists (then both of the above are empty).
    noop_tail_truncated: bool = False

    @property
    def has_history(self) -> bool:
        """Whether its log holds more than the no-op every new node starts with (index 1,
        term 0): a log of some cluster's entries."""
        index, term, _ = self.last
        return index > 1 or term > 0


class _NoClasses(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name}: a probe reply holds no objects")


def _encryptor(password: str | None) -> Any:
    if not password:
        return None
    from pysyncobj.encryptor import getEncryptor

    return getEncryptor(password)


def ask(raft_addr: str, *, own_addr: str, password: str | None,
        timeout_s: float = 2.0) -> Identity:
    """The :class:`Identity` of the node at ``raft_addr`` (``HOST:PORT``), asked as
    ``own_addr`` (only logged by the other side) with the cluster's ``password`` (None: no
    encryption), all within ``timeout_s`` seconds. Raises :class:`ProbeError` when nothing
    answers as a Gantry Raft node does: connection refused or closed, silence, a frame that
    does not decode (another protocol, another ``--raft-password``, a build older than
    override 23)."""
    deadline = time.monotonic() + timeout_s
    host, _, port = raft_addr.rpartition(":")
    enc = _encryptor(password)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as sock:
            conn = _Conn(sock, enc, deadline)
            if enc is not None:  # pysyncobj's key exchange: ours out, theirs back, wrapped
                mine = os.urandom(32)
                conn.send(mine)
                got = conn.recv()
                if not (isinstance(got, tuple) and len(got) == 2 and got[0] == mine
                        and isinstance(got[1], bytes)):
                    raise ProbeError("the key exchange was not pysyncobj's")
                conn.send_key, conn.recv_key = got[1], mine
            conn.send({"type": PROBE_TYPE, "from": own_addr})
            reply = conn.recv()
    except ProbeError:
        raise
    except TimeoutError:
        raise ProbeError(f"no answer within {timeout_s:g} s") from None
    except ConnectionError as e:
        raise ProbeError(f"the connection closed before an answer ({e.strerror or e})") from None
    except OSError as e:
        raise ProbeError(f"cannot connect ({e.strerror or e})") from None
    if not (isinstance(reply, dict) and reply.get("type") == PROBE_REPLY_TYPE
            and isinstance(reply.get("raft_addr"), str)
            and isinstance(reply.get("members"), list)
            and all(isinstance(m, str) for m in reply["members"])
            and (reply.get("leader") is None or isinstance(reply.get("leader"), str))):
        raise ProbeError("the answer is not a Gantry node's")
    term, last = reply.get("term", 0), reply.get("last", [0, 0, ""])
    command = reply.get("last_command") or [0, 0, ""]  # absent from builds before it
    tail = reply.get("noop_tail") or []
    truncated = reply.get("noop_tail_truncated", False)
    if not (isinstance(term, int) and _is_entry(last) and _is_entry(command)
            and isinstance(truncated, bool)
            and isinstance(tail, list) and len(tail) <= PROBE_MAX_NOOP_TAIL
            and all(isinstance(t, list) and len(t) == 2 and all(isinstance(v, int) for v in t)
                    for t in tail)):
        raise ProbeError("the answer is not a Gantry node's")
    return Identity(reply["raft_addr"], sorted(reply["members"]), reply.get("leader"), term,
                    (last[0], last[1], last[2]), (command[0], command[1], command[2]),
                    tuple((t[0], t[1]) for t in tail), truncated)


def _is_entry(v: Any) -> bool:
    """Whether ``v`` is ``[log index, term, digest]`` as a probe answer gives an entry."""
    return (isinstance(v, list) and len(v) == 3 and isinstance(v[0], int)
            and isinstance(v[1], int) and isinstance(v[2], str))


class _Conn:
    """One blocking probe connection: pysyncobj's frames, each read by ``deadline``."""

    def __init__(self, sock: socket.socket, enc: Any, deadline: float) -> None:
        self.sock, self.enc, self.deadline = sock, enc, deadline
        self.send_key: bytes | None = None  # pysyncobj's sendRandKey, once exchanged
        self.recv_key: bytes | None = None

    def send(self, message: Any) -> None:
        if self.send_key is not None:
            message = (self.send_key, message)
        data = encode_message(message)
        if self.enc is not None:
            data = self.enc.encrypt_at_time(data, int(time.monotonic()))
        self._settimeout()
        self.sock.sendall(struct.pack("i", len(data)) + data)

    def recv(self) -> Any:
        (length,) = struct.unpack("i", self._read(4))
        if not 0 < length <= MAX_REPLY_BYTES:
            raise ProbeError("the answer is not a Raft frame (another protocol on that port?)")
        data = self._read(length)
        try:
            if self.enc is not None:
                data = self.enc.decrypt(data)
            message = _NoClasses(io.BytesIO(zlib.decompress(data))).load()
        except Exception:  # noqa: BLE001 - whatever a foreign frame raises, it is one answer
            raise ProbeError("the answer does not decode as a Raft frame (another protocol, "
                             "or a different --raft-password)") from None
        if self.recv_key is not None:
            if not (isinstance(message, tuple) and len(message) == 2
                    and message[0] == self.recv_key):
                raise ProbeError("the answer is not from this connection's key exchange")
            message = message[1]
        return message

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            self._settimeout()
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ProbeError("the connection closed before an answer (not a Gantry node, "
                                 "a different --raft-password, or an older build)")
            buf += chunk
        return buf

    def _settimeout(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)

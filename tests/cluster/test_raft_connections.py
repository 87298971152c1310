"""The Raft port's connections (override 14 of :mod:`gantry.consensus.pysyncobj_compat`), on real
node processes: the link between two followers survives an idle spell and carries the first
pre-vote when the leader fails; sockets that never say who they are, or that a member replaced,
are closed; pysyncobj's unauthenticated utility commands and read-only nodes are refused.

Raw messages are framed as pysyncobj frames them: a 4-byte length, then a zlib stream of a
pickle (no ``--raft-password`` here, so nothing is encrypted)."""

from __future__ import annotations

import os
import pathlib
import pickle
import signal
import socket
import struct
import time
import zlib
from typing import Any

from tests.cluster.helpers import leader_of, status
from tests.support import NodeProcess, cluster, wait_until

#: pysyncobj's connectionTimeout as the Raft actor sets it (s): how long a link may read nothing.
CONNECTION_TIMEOUT_S = 3.5


def _frame(message: Any) -> bytes:
    body = zlib.compress(pickle.dumps(message), 3)
    return struct.pack("i", len(body)) + body


def _tcp() -> list[tuple[int, int, int]]:
    """(local port, remote port, socket inode) of every ESTABLISHED IPv4 TCP socket
    (/proc/net/tcp)."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[3] == "01":
                out.append((int(cols[1].split(":")[1], 16), int(cols[2].split(":")[1], 16),
                            int(cols[9])))
    return out


def _inodes(nd: NodeProcess) -> set[int]:
    """The socket inodes the node's process holds open."""
    assert nd.proc is not None
    found = set()
    fd_dir = pathlib.Path(f"/proc/{nd.proc.pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _link(a: NodeProcess, b: NodeProcess) -> tuple[int, int] | None:
    """The Raft connection between members ``a`` and ``b``: (listening port, the connecting
    side's ephemeral port), or None while there is none."""
    tcp = _tcp()
    for listening, other in ((a, b), (b, a)):
        mine, theirs = _inodes(listening), _inodes(other)
        for lport, rport, inode in tcp:
            if lport == listening.raft_port and inode in mine and any(
                    (l2, r2) == (rport, lport) and i2 in theirs for l2, r2, i2 in tcp):
                return (lport, rport)
    return None


def _closed_by_peer(s: socket.socket, deadline_s: float) -> bool:
    """Whether the node closes ``s`` before ``deadline_s`` (whatever it sent first is read and
    dropped)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            if s.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def test_the_followers_link_survives_an_idle_spell_and_carries_the_first_pre_vote(
        tmp_path: pathlib.Path) -> None:
    # Helper audit: followers never write to each other, so after connectionTimeout the first
    # pre-vote one sent the other when the leader froze made pysyncobj drop the link, and the
    # message with it: every failover needed a second election round.
    with cluster(tmp_path, 3) as nodes:
        lead = leader_of(nodes)
        f1, f2 = [n for n in nodes if n is not lead]
        link = wait_until(lambda: _link(f1, f2), 20, what="the followers' Raft link")
        # The fault needs the link idle for longer than connectionTimeout; meanwhile it must
        # stay the same connection (keep-alives keep it read on both sides).
        idle_until = time.monotonic() + CONNECTION_TIMEOUT_S + 1.5
        while time.monotonic() < idle_until:
            assert _link(f1, f2) == link, "the idle followers' link was dropped"
            time.sleep(0.2)
        assert lead.proc is not None
        os.kill(lead.proc.pid, signal.SIGSTOP)
        try:
            new = leader_of([f1, f2])
            assert _link(f1, f2) == link, "the election went over a new connection"
            assert status(new).term > 0
        finally:
            os.kill(lead.proc.pid, signal.SIGCONT)


def test_utility_commands_and_read_only_nodes_are_refused(tmp_path: pathlib.Path) -> None:
    # pysyncobj answers `add`/`remove`/`transfer` from anyone who can reach the Raft port (no
    # strict reconfig check, no admin credentials) and streams its log to a "readonly" node.
    with cluster(tmp_path, 1) as nodes:
        nd = nodes[0]
        members = [m.raft_addr for m in status(nd).members]
        for message in (["add", "127.0.0.1:1"], ["status"], "readonly"):
            with socket.create_connection(("127.0.0.1", nd.raft_port), timeout=5) as s:
                s.sendall(_frame(message))
                s.settimeout(5)
                try:
                    got = s.recv(65536)
                except OSError:
                    got = b""
                assert got == b"", f"{message!r} was answered"
        assert [m.raft_addr for m in status(nd).members] == members
        assert nd.is_serving()
        # A node not in the configuration (removed, left running) redials every 100 ms: its
        # refusals are logged once per 10 s, naming it (a new-user trial: 10-20 lines a second
        # on every member, none saying who).
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", nd.raft_port), timeout=5) as s:
                s.sendall(_frame("127.0.0.1:9"))
                assert _closed_by_peer(s, 5), "an unknown member was let in"
        unknown = wait_until(lambda: [e for e in nd.log_events()
                                      if e.get("event") == "raft_connection_refused"
                                      and e.get("reason") == "unknown member"], 10,
                             what="the unknown member's refusal logged")
        assert len(unknown) == 1, unknown
        assert unknown[0]["member"] == "127.0.0.1:9"
        assert unknown[0]["peer"].startswith("127.0.0.1:") and "removed" in unknown[0]["hint"]
        # A new-user trial: a first message announcing 1.5 GB was read for as long as it came
        # (the tick thread froze, a leader lost its term), and a socket trickling a byte at a
        # time never counted as silent.
        with socket.create_connection(("127.0.0.1", nd.raft_port), timeout=5) as s:
            s.sendall(struct.pack("i", 1_500_000_000) + bytes(65536))
            assert _closed_by_peer(s, 10), "an oversized first message was read on"
        with socket.create_connection(("127.0.0.1", nd.raft_port), timeout=5) as s:
            s.sendall(struct.pack("i", 1000))
            deadline = time.monotonic() + CONNECTION_TIMEOUT_S + 10
            closed = False
            while not closed and time.monotonic() < deadline:
                try:
                    s.sendall(b"x")
                except OSError:
                    closed = True
                    break
                closed = _closed_by_peer(s, 0.5)
            assert closed, "a socket trickling bytes stayed unidentified"
        assert nd.is_serving()
        refused = [e["reason"] for e in nd.log_events() if e.get("event") == "raft_connection_refused"]
        assert refused == ["utility command", "utility command", "read-only node",
                           "unknown member", "oversized first message"]
        dropped = [e["reason"] for e in nd.log_events() if e.get("event") == "raft_connection_dropped"]
        assert dropped == ["unidentified"]


def test_silent_and_replaced_connections_are_closed(tmp_path: pathlib.Path) -> None:
    # Helper audit: a socket that never names its member stayed open for good (one fd each),
    # and a member's reconnect left its old connection open beside the new one. A new-user
    # trial: a socket naming a member this node connects to itself replaced the real link, and
    # that member stayed cut off until a restart.
    with cluster(tmp_path, 3) as nodes:
        lo, mid, hi = sorted(nodes, key=lambda n: n.raft_addr)  # a higher address connects
        link = wait_until(lambda: _link(mid, lo), 20, what="mid's link to lo")
        hi.stop()
        silent = [socket.create_connection(("127.0.0.1", lo.raft_port), timeout=5) for _ in range(5)]
        first = socket.create_connection(("127.0.0.1", lo.raft_port), timeout=5)
        second = socket.create_connection(("127.0.0.1", lo.raft_port), timeout=5)
        impostor = socket.create_connection(("127.0.0.1", mid.raft_port), timeout=5)
        try:
            first.sendall(_frame(hi.raft_addr))
            # lo takes it for hi's connection (hi connects to lo): its hello arrives.
            first.settimeout(5)
            assert first.recv(65536), "lo sent nothing to hi's connection"
            second.sendall(_frame(hi.raft_addr))
            assert _closed_by_peer(first, 5), "the replaced connection was left open"
            impostor.sendall(_frame(lo.raft_addr))  # mid connects to lo itself: refused
            assert _closed_by_peer(impostor, 5), "a connection from the wrong side was taken"
            assert _link(mid, lo) == link
            for s in silent:
                assert _closed_by_peer(s, CONNECTION_TIMEOUT_S + 5), "a silent socket was left open"
            assert lo.is_serving() and mid.is_serving()
            refused = [e for e in mid.log_events() if e.get("event") == "raft_connection_refused"]
            assert [e["reason"] for e in refused] == ["member connects the other way"]
        finally:
            for s in (*silent, first, second, impostor):
                s.close()


def test_nodes_with_different_raft_passwords_say_so(tmp_path: pathlib.Path) -> None:
    """Override 22: two nodes whose --raft-password differ both sat NOT_SERVING with nothing in
    either log (pysyncobj closes a connection whose frame does not decrypt without a word)."""
    from tests.support import free_ports

    ports = free_ports(4)
    a = NodeProcess(tmp_path / "a", ports[0], ports[2], [ports[3]],
                    ["--raft-password", "secret-one"], node_id="a")
    b = NodeProcess(tmp_path / "b", ports[1], ports[3], [ports[2]],
                    ["--raft-password", "secret-two"], node_id="b")
    try:
        a.start()
        b.start()
        # pysyncobj dials one way per pair: the side that accepts the link reads the frame.
        event = wait_until(lambda: next((e for nd in (a, b) for e in nd.log_events()
                                         if e.get("event") == "raft_message_refused"), None),
                           30, 0.05, "a node says so")
        assert event["encrypted"] is True and "--raft-password" in event["hint"]
        assert event["peer"] == "incoming 127.0.0.1"
    finally:
        a.stop()
        b.stop()

"""Each override in :mod:`gantry.consensus.pysyncobj_compat` against the engine defect it fixes: the same
message sequence is fed to pysyncobj's stock ``SyncObj`` (showing the defect) and to
``SafeSyncObj`` (showing Raft's rule), on a real durable journal, without networking."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import pickle
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pysyncobj.syncobj as _syncobj_module
import pytest
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from pysyncobj import pickle as sync_pickle
from pysyncobj.node import TCPNode
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

from gantry.consensus.journal import DurableJournal
from gantry.consensus.pysyncobj_compat import (
    BATCH_KEY,
    BATCH_TYPE,
    CONNECT_TIMEOUT_S,
    FAIL_DISK_FULL,
    FEATURE_KEEPALIVE,
    HELLO_TYPE,
    KEEPALIVE_S,
    PRE_VOTE,
    PRE_VOTE_EARLY_S,
    PRE_VOTE_RESPONSE,
    RECONFIG_MAX_LAG,
    TERM_NOTICE,
    DurableTransport,
    SafeSyncObj,
    align_journal_to_dump,
    engine_clock,
    installed,
)
from gantry.consensus.readindex import ECHO_KEY, ROUND_KEY, ReadRounds
from gantry.diskspace import DiskFull
from tests.support import free_ports


class _Stock(SyncObj):  # type: ignore[misc]
    pass


def _make(cls: type, tmp: pathlib.Path, entries: list[tuple[bytes, int, int]], term: int,
          peers: int = 2, **conf: Any) -> tuple[Any, list[dict[str, Any]], list[TCPNode]]:
    """A follower node of ``cls`` whose journal holds ``entries`` (command, index, term), with
    ``peers`` other members; returns it, the list its sent messages land in, and the peers."""
    ports = free_ports(1 + peers)
    journal = DurableJournal(str(tmp / f"{cls.__name__}.log"))
    for e in entries:
        journal.add(*e)
    journal.setCurrentTerm(term, None)
    others = [f"127.0.0.1:{p}" for p in ports[1:]]
    with installed(journal):
        node = cls(f"127.0.0.1:{ports[0]}", others,
                   SyncObjConf(autoTick=False, dynamicMembershipChange=True, **conf))
    sent: list[dict[str, Any]] = []

    def send(_node: Any, message: dict[str, Any]) -> bool:
        sent.append(message)
        return True

    node._SyncObj__transport.send = send
    return node, sent, [TCPNode(a) for a in others]


@pytest.fixture
def made() -> Iterator[list[Any]]:
    nodes: list[Any] = []
    yield nodes
    for n in nodes:
        n._SyncObj__transport.destroy()
        n._SyncObj__raftLog._destroy()


def _append(term: int, prev: tuple[int, int], entries: list[tuple[bytes, int, int]],
            commit: int) -> dict[str, Any]:
    return {"type": "append_entries", "term": term, "commit_index": commit, "entries": entries,
            "prevLogIdx": prev[0], "prevLogTerm": prev[1]}


# A deposed leader: 1–3 committed at term 1, then its own uncommitted tail 4–5 at term 2.
DEPOSED = [(b"\x01", 1, 1), (b"a", 2, 1), (b"b", 3, 1), (b"stale-4", 4, 2), (b"stale-5", 5, 2)]


@pytest.mark.parametrize("cls, expected_commit", [(_Stock, 5), (SafeSyncObj, 3)])
def test_follower_commits_only_entries_the_leader_verified(
        tmp_path: pathlib.Path, made: list[Any], cls: type, expected_commit: int) -> None:
    """Raft Figure 2, AppendEntries rule 5. The new leader (term 3) has committed index 5 in its
    own log; a heartbeat proving only index 3 must not commit this node's stale 4–5. The stock
    engine commits up to its last log index (5): it would apply the stale tail."""
    node, _, peers = _make(cls, tmp_path, DEPOSED, term=2)
    made.append(node)
    node._SyncObj__onMessageReceived(peers[0], _append(3, (3, 1), [], commit=5))
    assert node.raftCommitIndex == expected_commit


def test_follower_commits_new_entries_once_they_replace_the_stale_tail(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    node, _, peers = _make(SafeSyncObj, tmp_path, DEPOSED, term=2)
    made.append(node)
    node._SyncObj__onMessageReceived(
        peers[0], _append(3, (3, 1), [(b"new-4", 4, 3), (b"new-5", 5, 3)], commit=5))
    assert node.raftCommitIndex == 5
    assert [e[2] for e in node._SyncObj__raftLog[3:5]] == [3, 3]


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_partial_or_empty_snapshot_message_commits_nothing(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """A ``serialized`` chunk that does not complete a snapshot proves nothing about the log."""
    node, _, peers = _make(cls, tmp_path, DEPOSED, term=2)
    made.append(node)
    node._SyncObj__onMessageReceived(peers[0], _append(3, (3, 1), [], commit=3))
    msg = {"type": "append_entries", "term": 3, "commit_index": 5,
           "serialized": (b"partial", False, False)}
    node._SyncObj__onMessageReceived(peers[0], msg)
    if cls is _Stock:
        assert node.raftCommitIndex == 5  # the engine defect
    else:
        assert node.raftCommitIndex == 3


def _chunk(term: int, data: bytes, first: bool, last: bool = False) -> dict[str, Any]:
    return {"type": "append_entries", "term": term, "commit_index": 3,
            "serialized": (data, first, last)}


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_snapshot_chunks_of_another_leader_or_term_are_not_spliced_in(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """Override 15: leader A (term 3) sent the first chunk of its snapshot; leader B (term 4)
    resumes a transfer it had started in an earlier term, with a later chunk. The stock engine
    appends B's chunk to A's: the installed file would be two snapshots spliced. Here it is
    dropped; B's first chunk starts a snapshot of its own, whose later chunks count."""
    node, _, peers = _make(cls, tmp_path, DEPOSED, term=2)
    made.append(node)
    incoming = "_Serializer__incomingTransmissionFile"
    node._SyncObj__onMessageReceived(peers[0], _chunk(3, b"A-first|", True))
    node._SyncObj__onMessageReceived(peers[1], _chunk(4, b"B-later|", False))
    received = getattr(node._SyncObj__serializer, incoming)
    if cls is _Stock:
        assert received == b"A-first|B-later|"  # the engine defect
        return
    assert received == b"A-first|"
    node._SyncObj__onMessageReceived(peers[0], _chunk(4, b"A-in-term-4|", False))  # A, new term
    assert getattr(node._SyncObj__serializer, incoming) == b"A-first|"
    node._SyncObj__onMessageReceived(peers[1], _chunk(4, b"B-first|", True))
    node._SyncObj__onMessageReceived(peers[1], _chunk(4, b"B-later|", False))
    assert getattr(node._SyncObj__serializer, incoming) == b"B-first|B-later|"


def test_a_leader_that_steps_down_cancels_its_snapshot_transfers(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    """Override 15, sending side: pysyncobj keeps a transfer's offset across its terms."""
    node, _, peers = _make(SafeSyncObj, tmp_path, DEPOSED, term=2)
    made.append(node)
    _lead(node, peers)
    transfers = node._SyncObj__serializer._Serializer__transmissions
    transfers[peers[0]] = {"transmitted": 65536, "data": b"x" * 100_000}
    node._SyncObj__setState(0)  # FOLLOWER
    assert transfers == {}


# Follower: 1–3 at term 1, then a long stale tail 4–10 at term 2. Leader (term 3): 4–20 at term 3.
STALE_TAIL = [(b"\x01", 1, 1), (b"a", 2, 1), (b"b", 3, 1)] + [
    (f"s{i}".encode(), i, 2) for i in range(4, 11)]


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_pipelined_rejections_never_undo_the_walk_back(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """The leader pipelines batches in one pass; the first is rejected at a conflict, the later
    ones because their previous entry is missing. The stock engine's last reply points the leader
    back at the follower's end (11), undoing the step back, so it never converges."""
    node, sent, peers = _make(cls, tmp_path, STALE_TAIL, term=2)
    made.append(node)
    node._SyncObj__onMessageReceived(peers[0], _append(3, (9, 3), [(b"x", 10, 3)], commit=3))
    node._SyncObj__onMessageReceived(peers[0], _append(3, (15, 3), [(b"y", 16, 3)], commit=3))
    replies = [m["next_node_idx"] for m in sent if m["type"] == "next_node_idx"]
    if cls is _Stock:
        assert replies == [9, 11]
    else:
        # The conflict hint skips the whole conflicting term; the later rejection keeps it.
        assert replies == [4, 4]
        node._SyncObj__onMessageReceived(
            peers[0], _append(3, (3, 1), [(f"n{i}".encode(), i, 3) for i in range(4, 8)], commit=5))
        assert node.raftCommitIndex == 5
        assert sent[-1]["success"] is True and sent[-1]["next_node_idx"] == 8


def _leader_view(node: Any, peers: list[TCPNode], match: list[int], commit: int) -> None:
    now = engine_clock()
    node._SyncObj__raftCommitIndex = commit
    node._SyncObj__raftMatchIndex = dict(zip(peers, match, strict=True))
    node._SyncObj__lastResponseTime = {p: now for p in peers}
    node.last_contact = {p.id: now for p in peers}
    node._SyncObj__noopIDx = 1
    node._SyncObj__raftLastApplied = 1


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_remove_refused_when_the_rest_would_need_a_stuck_replica(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """3 members, n3 stuck thousands of entries behind: removing n2 would leave {n1, n3}, whose
    quorum needs n3. The stock engine accepts it (then nothing commits, and configurations
    diverge); the strict check refuses and says why."""
    node, _, peers = _make(cls, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _leader_view(node, peers, match=[6900, 8], commit=6900)
    accepted = node._SyncObj__changeCluster(("rem", peers[0].id))
    if cls is _Stock:
        assert accepted
    else:
        assert not accepted
        assert "needs 2 caught-up members but only 1" in node.change_refusal


def test_remove_refused_while_the_rest_would_need_a_member_silent_for_a_second(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    """3 members, n3 caught up but silent for 1 s (frozen: within the 1.4 s maximum election
    timeout the check used to allow, past the 400 ms minimum it uses now). Removing n2 would
    leave {n1, n3}: accepted, the new configuration lost its leader until n3 resumed (a new-user
    trial, 2026-12-08)."""
    node, _, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _leader_view(node, peers, match=[6900, 6900], commit=6900)
    node.last_contact[peers[1].id] = engine_clock() - 1.0
    refusal = node._reconfig_refusal(("rem", peers[0].id))
    assert "needs 2 caught-up members but only 1 is reachable (answered in the last 400 ms)" \
        in refusal


def test_reconfig_check_allows_healthy_changes(tmp_path: pathlib.Path, made: list[Any]) -> None:
    node, _, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _leader_view(node, peers, match=[6900, 6900 - RECONFIG_MAX_LAG], commit=6900)
    assert node._reconfig_refusal(("rem", peers[0].id)) == ""
    assert node._reconfig_refusal(("add", "127.0.0.1:1")) == ""
    _leader_view(node, peers, match=[6900, 0], commit=6900)
    assert node._reconfig_refusal(("add", "127.0.0.1:1")) != ""  # 4 members, 2 caught up
    assert node._reconfig_refusal(("rem", peers[1].id)) == ""  # dropping the stuck one is fine


def test_one_member_cluster_may_grow(tmp_path: pathlib.Path, made: list[Any]) -> None:
    node, _, _ = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1, peers=0)
    made.append(node)
    assert node._reconfig_refusal(("add", "127.0.0.1:1")) == ""


def _with_dump(tmp: pathlib.Path, align: bool) -> list[int]:
    """A journal holding entries 1–10, a snapshot at (prev 5, last 6): start pysyncobj on it and
    return the log indexes its journal holds afterwards."""
    journal = DurableJournal(str(tmp / f"align-{align}.log"))
    entries = [(b"\x01", 1, 1)] + [(f"e{i}".encode(), i, 1) for i in range(2, 11)]
    for e in entries:
        journal.add(*e)
    journal.setCurrentTerm(1, None)
    dump = tmp / f"dump-{align}"
    dump.write_bytes(b"x")
    if align:
        assert align_journal_to_dump(journal, entries[4], entries[5]) == 4
    [port] = free_ports(1)
    conf = SyncObjConf(autoTick=False, fullDumpFile=str(dump),
                       serializer=lambda _p, _m: None,
                       deserializer=lambda _p: (entries[5], entries[4], set()))
    with installed(journal):
        node = SafeSyncObj(f"127.0.0.1:{port}", [], conf)
    try:
        node.doTick(0)
        return [e[1] for e in node._SyncObj__raftLog[:]]
    finally:
        node._SyncObj__transport.destroy()
        journal._destroy()


def test_start_up_keeps_entries_after_the_snapshot(tmp_path: pathlib.Path) -> None:
    """pysyncobj clears the whole journal at start-up unless it begins with the snapshot's two
    entries: entries 7–10, which this node may have acknowledged, would be gone."""
    assert _with_dump(tmp_path, align=False) == [5, 6]  # the engine defect
    assert _with_dump(tmp_path, align=True) == [5, 6, 7, 8, 9, 10]


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_installing_an_older_leader_snapshot_is_not_reported_as_lost_entries(
        tmp_path: pathlib.Path, cls: type, caplog: pytest.LogCaptureFixture) -> None:
    """This node had committed up to 10; the leader sends its snapshot at 6 (snapshots lag the
    commit index). The stock engine warns about "unsynced journal entries lost on crash" and
    clamps; nothing was lost, and after the install the commit index is the snapshot's."""
    ports = free_ports(2)
    journal = DurableJournal(str(tmp_path / "install.log"))
    entries = [(b"\x01", 1, 1)] + [(f"e{i}".encode(), i, 1) for i in range(2, 11)]
    for e in entries:
        journal.add(*e)
    journal.setCurrentTerm(2, None)
    journal.setRaftCommitIndex(10)
    conf = SyncObjConf(autoTick=False, fullDumpFile=str(tmp_path / "dump"),
                       serializer=lambda _p, _m: None,
                       deserializer=lambda _p: (entries[5], entries[4], set()))
    with installed(journal):
        node = cls(f"127.0.0.1:{ports[0]}", [f"127.0.0.1:{ports[1]}"], conf)
    node._SyncObj__transport.send = lambda *_a: True
    try:
        assert node.raftCommitIndex == 10
        msg = {"type": "append_entries", "term": 3, "commit_index": 12,
               "serialized": (b"snapshot-bytes", True, True)}
        node._SyncObj__onMessageReceived(TCPNode(f"127.0.0.1:{ports[1]}"), msg)
        assert node.raftCommitIndex == 6
        warned = any("exceeds journal end" in r.getMessage() for r in caplog.records)
        assert warned == (cls is _Stock)
    finally:
        node._SyncObj__transport.destroy()
        journal._destroy()


def test_a_silent_member_is_not_reported_reachable(tmp_path: pathlib.Path, made: list[Any]) -> None:
    """A partition that drops packets leaves the TCP connection "connected" for seconds; the
    leader reports a member reachable only if it answered recently."""
    node, _, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    node.isNodeConnected = lambda _n: True
    node._SyncObj__raftState = 2  # leader
    node.last_contact = {peers[0].id: engine_clock(), peers[1].id: engine_clock() - 10}
    assert node.reachable_members(1.4) == [peers[0].id]
    node._SyncObj__raftState = 0  # a follower's view: only its leader's silence counts
    node._SyncObj__raftLeader = peers[1]
    assert node.reachable_members(1.4) == [peers[0].id]
    node._SyncObj__raftLeader = peers[0]
    assert node.reachable_members(1.4) == sorted(p.id for p in peers)


def test_a_new_leader_does_not_count_unheard_members_as_caught_up(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    """Right after an election pysyncobj marks every member as having answered "now" and
    matched 0; with a small commit index that passed the check, so a remove that left the
    quorum needing an isolated member was accepted (found by tests/cluster/test_partitions.py)."""
    node, _, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _leader_view(node, peers, match=[10, 0], commit=10)
    node.last_contact = {peers[0].id: engine_clock()}  # peers[1] never answered this leader
    assert "only 1 is reachable" in node._reconfig_refusal(("rem", peers[0].id))


def test_gantry_payload_reads_what_pysyncobj_journals_for_apply_entry(
        tmp_path: pathlib.Path) -> None:
    """Pin: pysyncobj 0.3.17 journals a call of ``GantrySyncObj.apply_entry(data)`` as its
    REGULAR type byte + ``pickle((method id, (data,)), protocol 2)``; ``--force-new-cluster``
    and the disk-full refusal read entries back through :func:`gantry_payload`."""
    import pickle

    from gantry.actors.raft import GantrySyncObj
    from gantry.consensus.pysyncobj_compat import gantry_payload

    (port,) = free_ports(1)
    node = GantrySyncObj(f"127.0.0.1:{port}", [], SyncObjConf(autoTick=False),
                         lambda *_a: None)
    try:
        data = bytes(range(256))
        node.apply_entry(data, callback=lambda *_a: None)
        command, _callback = node._SyncObj__commandsQueue.get_nowait()
        assert gantry_payload(command) == data
    finally:
        node._SyncObj__transport.destroy()
    assert gantry_payload(b"\x01") is None  # pysyncobj's no-op
    assert gantry_payload(b"\x02" + pickle.dumps(["add", "a:1", "a:1"])) is None
    evil = b"\x00" + pickle.dumps((0, (TCPNode("a:1"),)), protocol=2)
    with pytest.raises(ValueError, match="unexpected global"):
        gantry_payload(evil)  # nothing but tuples, ints and bytes is ever unpickled


# -- override 8: entries and messages encoded once, cheaply --

def test_propose_call_is_the_entry_apply_entry_makes_pickled_with_protocol_5(
        tmp_path: pathlib.Path) -> None:
    """A proposal is the REGULAR call entry ``@replicated`` journals, with the same call inside
    (so pysyncobj 0.3.17 and older builds apply it as before), but pickled with protocol 5: the
    protobuf bytes are framed as they are, not spelled as a latin-1 string (protocol 2)."""
    import pickle

    from gantry.actors.raft import GantrySyncObj
    from gantry.consensus.pysyncobj_compat import gantry_payload

    (port,) = free_ports(1)
    node = GantrySyncObj(f"127.0.0.1:{port}", [], SyncObjConf(autoTick=False),
                         lambda *_a: None)
    try:
        data = bytes(range(256)) * 2
        node.apply_entry(data, callback=lambda *_a: None)
        stock, _ = node._SyncObj__commandsQueue.get_nowait()
        node.propose_call("apply_entry", data, lambda *_a: None)
        ours, _ = node._SyncObj__commandsQueue.get_nowait()
    finally:
        node._SyncObj__transport.destroy()
    assert ours[:1] == stock[:1] == b"\x00"
    assert pickle.loads(ours[1:]) == pickle.loads(stock[1:])
    assert ours[1:3] == b"\x80\x05"  # protocol 5; pysyncobj's is protocol 2
    assert len(ours) < len(data) + 40 < len(stock)
    assert gantry_payload(ours) == gantry_payload(stock) == data


def _sent_body(message: Any) -> bytes:
    """What a connection with :func:`use_encoded_send` writes for ``message``, without its
    4-byte length prefix, read from the other end of a real socket pair."""
    import socket
    import struct

    from pysyncobj.poller import createPoller
    from pysyncobj.tcp_connection import TcpConnection

    from gantry.consensus.pysyncobj_compat import use_encoded_send

    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        conn = TcpConnection(poller=createPoller("auto"), socket=a, timeout=10.0,
                             sendBufferSize=2**20, recvBufferSize=2**20)
        use_encoded_send(conn)
        conn.send(message)
        b.settimeout(5.0)
        head = b.recv(4, socket.MSG_WAITALL)
        (length,) = struct.unpack("i", head)
        body = b""
        while len(body) < length:
            body += b.recv(length - len(body))
        return body
    finally:
        a.close()
        b.close()


def test_raft_messages_are_stored_zlib_streams_of_protocol_5_pickles() -> None:
    """A heartbeat-sized message travels as a stored zlib stream (deflate level 0: no 256 KiB
    compressor set-up per message, ~100 µs with pysyncobj's ``zlib.compress(data, 3)``) of a
    protocol-5 pickle, which pysyncobj 0.3.17's receiver, ``pickle.loads(zlib.decompress(body))``,
    reads unchanged; a long message (a snapshot chunk) is still deflated."""
    import pickle
    import zlib

    from gantry.consensus.pysyncobj_compat import DEFLATE_MIN_BYTES

    small = {"type": "append_entries", "term": 3, "entries": [(b"\x00" + bytes(range(200)), 7, 3)]}
    body = _sent_body(small)
    assert pickle.loads(zlib.decompress(body)) == small
    raw = zlib.decompress(body)
    assert raw[:2] == b"\x80\x05"
    assert len(body) > len(raw)  # stored, not deflated: a zlib header, block headers, adler32
    big = {"type": "append_entries", "term": 3, "data": b"a" * DEFLATE_MIN_BYTES}
    body = _sent_body(big)
    assert pickle.loads(zlib.decompress(body)) == big
    assert len(body) < DEFLATE_MIN_BYTES // 10  # compressible and long: deflated


# -- override 6: a Raft log out of space (gantry.diskspace) --

class _FillingJournal(DurableJournal):
    """A durable journal on a disk with room for ``room`` more appends (None: unlimited)."""

    room: int | None = None

    def add(self, command: bytes, idx: int, term: int) -> None:
        if self.room is not None:
            if self.room <= 0:
                self.full = True
                raise DiskFull(OSError(errno.ENOSPC, "No space left on device"), command)
            self.room -= 1
        super().add(command, idx, term)

    def probe_space(self) -> bool:
        if self.full and (self.room is None or self.room > 0):
            self.full = False
        return not self.full


def _filling(cls: type, tmp: pathlib.Path, peers: int = 2) -> tuple[Any, list[Any], list[TCPNode]]:
    """A node of ``cls`` on a :class:`_FillingJournal` holding 1–3 (term 1); returns it, the
    ``(node, message)`` pairs it sent, and its peers."""
    ports = free_ports(1 + peers)
    journal = _FillingJournal(str(tmp / f"{cls.__name__}-fill.log"))
    for e in DEPOSED[:3]:
        journal.add(*e)
    journal.setCurrentTerm(1, None)
    others = [f"127.0.0.1:{p}" for p in ports[1:]]
    with installed(journal):
        node = cls(f"127.0.0.1:{ports[0]}", others, SyncObjConf(autoTick=False,
                                                                dynamicMembershipChange=True))
    sent: list[Any] = []

    def send(to: Any, message: Any) -> bool:
        sent.append((to, message))
        return True

    node._SyncObj__transport.send = send
    return node, sent, [TCPNode(a) for a in others]


def _lead(node: Any, peers: list[TCPNode]) -> None:
    _leader_view(node, peers, match=[3, 3], commit=3)
    node._SyncObj__raftState = 2  # LEADER
    node._SyncObj__raftLeader = node._SyncObj__selfNode
    node._SyncObj__raftCurrentTerm = 1
    node._SyncObj__raftNextIndex = {p: 4 for p in peers}
    node._SyncObj__raftLastApplied = 3


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_follower_batch_that_does_not_fit_is_taken_back_whole(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """The leader's batch holds an entry and a membership change; the disk has room for the
    first only. The stock engine raises out of the message handler with the entry kept but the
    batch's membership change never applied (log and configuration disagree until a restart);
    here the half-appended batch is taken back, nothing is acknowledged, and the resent batch
    lands whole."""
    node, sent, peers = _filling(cls, tmp_path)
    made.append(node)
    new = TCPNode("127.0.0.1:1")
    change = b"\x02" + sync_pickle.dumps(["add", new.id, new])
    batch = _append(1, (3, 1), [(b"four", 4, 1), (change, 5, 1)], commit=3)
    node._SyncObj__raftLog.room = 1
    if cls is _Stock:
        with pytest.raises(DiskFull):
            node._SyncObj__onMessageReceived(peers[0], batch)
        assert [e[1] for e in node._SyncObj__raftLog[:]] == [1, 2, 3, 4]  # the defect
        return
    node._SyncObj__onMessageReceived(peers[0], batch)
    assert [e[1] for e in node._SyncObj__raftLog[:]] == [1, 2, 3]
    assert not [m for _n, m in sent if m.get("type") == "next_node_idx"]
    assert new not in node.otherNodes
    node._SyncObj__raftLog.room = None
    node._SyncObj__onMessageReceived(peers[0], batch)
    assert [e[1] for e in node._SyncObj__raftLog[:]] == [1, 2, 3, 4, 5]
    assert new in node.otherNodes
    acks = [m for _n, m in sent if m.get("type") == "next_node_idx"]
    assert acks and acks[-1]["success"] and acks[-1]["next_node_idx"] == 6


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_leader_refuses_commands_while_its_log_is_full(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """The stock engine pops the command, fails to append it, raises out of the tick, and the
    command's callback is never called (its client waits for ever); commands behind it wait
    for the next tick to fail the same way. Here every queued command — local or forwarded by a
    follower — is answered FAIL_DISK_FULL, and the one whose append failed is kept for the Raft
    actor to fail its proposal."""
    node, sent, peers = _filling(cls, tmp_path)
    made.append(node)
    _lead(node, peers)
    got: list[tuple[str, int]] = []
    node._SyncObj__raftLog.room = 0
    node._applyCommand(b"\x00first", lambda _r, e: got.append(("first", e)))
    node._applyCommand(b"\x00second", lambda _r, e: got.append(("second", e)))
    node._applyCommand(b"\x00forwarded", (peers[0], 7))
    if cls is _Stock:
        with pytest.raises(DiskFull):
            node._checkCommandsToApply()
        assert got == []  # the defect: "first" is lost, the rest still queued
        return
    node._checkCommandsToApply()
    assert got == [("second", FAIL_DISK_FULL)]
    assert node.take_refused() == [b"\x00first"]
    replies = [m for n, m in sent if m.get("type") == "apply_command_response"]
    assert replies == [{"type": "apply_command_response", "request_id": 7,
                        "error": FAIL_DISK_FULL}]
    # While it stays full, later commands are refused without an append being tried.
    node._applyCommand(b"\x00third", lambda _r, e: got.append(("third", e)))
    node._checkCommandsToApply()
    assert got[-1] == ("third", FAIL_DISK_FULL)
    # Room again: commands are appended as usual.
    node._SyncObj__raftLog.room = None
    node._applyCommand(b"\x00fourth", lambda _r, e: got.append(("fourth", e)))
    node._checkCommandsToApply()
    assert node._SyncObj__raftLog[-1][0] == b"\x00fourth"


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_a_membership_change_that_does_not_fit_is_undone(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """pysyncobj applies a membership change in memory before appending it: when the append
    fails, the stock engine keeps the new member without any log entry for it."""
    node, _sent, peers = _filling(cls, tmp_path)
    made.append(node)
    _lead(node, peers)
    new = TCPNode("127.0.0.1:1")
    node._SyncObj__raftLog.room = 0
    node._applyCommand(sync_pickle.dumps(["add", new.id, new]), None, 2)
    if cls is _Stock:
        with pytest.raises(DiskFull):
            node._checkCommandsToApply()
        assert new in node.otherNodes  # the defect
        return
    node._checkCommandsToApply()
    assert new not in node.otherNodes and set(node.otherNodes) == set(peers)


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_a_leader_without_room_for_its_noop_steps_down(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    node, _sent, _peers = _filling(cls, tmp_path)
    made.append(node)
    node._SyncObj__raftLog.room = 0
    if cls is _Stock:
        with pytest.raises(DiskFull):
            node._SyncObj__onBecomeLeader()
        assert node._isLeader() and node._SyncObj__noopIDx is None  # the defect
        return
    node._SyncObj__onBecomeLeader()
    assert not node._isLeader() and node._getLeader() is None


# -- override 7: ReadIndex fields on pysyncobj's messages (gantry.consensus.readindex) --

def _ack7(term: int, round_id: int | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "next_node_idx", "next_node_idx": 4, "reset": False,
                           "success": True}
    if round_id is not None:
        msg[ECHO_KEY] = (term, round_id)
    return msg


def test_a_follower_echoes_the_round_of_the_append_entries_it_accepted(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    node, _, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=2)
    made.append(node)
    node._SyncObj__onMessageReceived(peers[0], {**_append(3, (3, 1), [], commit=3), ROUND_KEY: 7})
    assert node.reads.echo(peers[0].id, {"type": "next_node_idx"})[ECHO_KEY] == (3, 7)
    # A message of a lower term is ignored by the engine (no reply): nothing to echo for it.
    node._SyncObj__onMessageReceived(peers[1], {**_append(2, (3, 1), [], commit=3), ROUND_KEY: 9})
    assert ECHO_KEY not in node.reads.echo(peers[1].id, {"type": "next_node_idx"})


def test_a_leader_sends_a_round_at_once_and_counts_only_echoes_of_it(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    node, sent, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _lead(node, peers)
    node._SyncObj__noopIDx = 3  # its term's no-op is committed (commit index 3)
    for p in peers:  # both members run this build
        node._SyncObj__onMessageReceived(p, _ack7(1, 0))
    node._SyncObj__connectedNodes = set(node._SyncObj__otherNodes)
    fut: Future[int] = Future()
    sent.clear()
    node.reads.request(node, fut)
    assert [m["type"] for m in sent] == ["append_entries"] * 2, "the round goes out at once"
    rid = node.reads.round_id
    node._SyncObj__onMessageReceived(peers[0], _ack7(1, rid - 1))  # a reply to an older message
    node._SyncObj__onMessageReceived(peers[1], _ack7(2, rid))  # another term
    node._SyncObj__onMessageReceived(peers[1], _ack7(1, None))  # no echo
    assert not fut.done()
    node._SyncObj__onMessageReceived(peers[0], _ack7(1, rid))
    assert fut.result(timeout=0) == 3


@pytest.mark.parametrize("cls, rounds", [(_Stock, 10), (SafeSyncObj, 1)])
def test_a_leader_sends_one_append_entries_per_follower_per_drained_queue(
        tmp_path: pathlib.Path, made: list[Any], cls: type, rounds: int) -> None:
    """Override 9. Ten commands queued in one tick: the stock engine (append batching off)
    sends append_entries to each follower once per command; here once, with all ten entries."""
    node, sent, peers = _make(cls, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _lead(node, peers)
    node._SyncObj__connectedNodes = set(node._SyncObj__otherNodes)
    sent.clear()
    for i in range(10):
        node._applyCommand(b"c%d" % i, None, 0)
    node._SyncObj__conf.appendEntriesUseBatch = False  # as the Raft actor configures it
    node._checkCommandsToApply()
    appends = [m for m in sent if m["type"] == "append_entries"]
    assert len(appends) == len(peers) * rounds
    assert sorted(e[1] for m in appends for e in m["entries"]) == sorted(
        list(range(4, 14)) * len(peers))
    assert all(e[2] == 1 for m in appends for e in m["entries"])


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_a_large_entry_is_decoded_once_all_its_chunks_are_in(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """Override 11. A stock leader streams a 300 KB entry in 64 KiB chunks and marks several
    before the last ``finish``; the stock follower decodes each of them and raises on the
    truncated pickle. Here only the last one is decoded, nothing raises, and the follower
    appends the entry and acknowledges it, as the stock follower does after the true last
    chunk."""
    (tmp_path / "l").mkdir()
    (tmp_path / "f").mkdir()
    leader, sent, peers = _make(_Stock, tmp_path / "l", DEPOSED[:3], term=1)
    made.append(leader)
    _lead(leader, peers)
    leader._SyncObj__connectedNodes = {peers[0]}
    leader._SyncObj__otherNodes = {peers[0]}
    big = bytes(range(256)) * 1200  # half of it pickles (protocol 2) to two bytes a byte
    leader._applyCommand(big, None, 0)
    leader._SyncObj__conf.appendEntriesUseBatch = False  # as the Raft actor configures it
    leader._checkCommandsToApply()
    chunks = [m for m in sent if m.get("transmission")]
    marks = [m["transmission"] for m in chunks]
    assert marks[0] == "start" and marks.count("finish") >= 3, marks  # the leader's defect

    follower, replies, fpeers = _make(cls, tmp_path / "f", DEPOSED[:3], term=1)
    made.append(follower)
    raised = 0
    for m in chunks:
        try:
            follower._SyncObj__onMessageReceived(fpeers[0], m)
        except Exception:  # noqa: BLE001 - what the stock engine does with a truncated pickle
            raised += 1
    entry = follower._SyncObj__raftLog[-1]
    assert (entry[0][1:], entry[1], entry[2]) == (big, 4, 1)
    assert replies[-1]["type"] == "next_node_idx" and replies[-1]["success"] is True
    assert replies[-1]["next_node_idx"] == 5
    if cls is _Stock:
        assert raised == marks.count("finish") - 1
    else:
        assert raised == 0


def _bare_transport(monkeypatch: pytest.MonkeyPatch, connected: list[TCPNode]
                    ) -> tuple[DurableTransport, list[tuple[str, dict[str, Any]]]]:
    """A DurableTransport without sockets whose sends (to ``connected`` members) land in the
    returned list as (member, message)."""
    out: list[tuple[str, dict[str, Any]]] = []

    def sent(_self: Any, node: Any, msg: dict[str, Any]) -> bool:
        out.append((node.id, msg))
        return True

    monkeypatch.setattr(TCPTransport, "send", sent)
    transport = DurableTransport.__new__(DurableTransport)
    transport._syncObj = None
    transport._pending_acks = []
    transport._outbox = {}
    transport._holds_append = set()
    transport.batch_peers = set()
    transport.pre_vote_peers = set()
    transport.heard_peers = set()
    transport.keepalive_peers = set()
    transport._last_keepalive = 0.0
    transport._unknownConnections = set()
    up = type("Conn", (), {"state": CONNECTION_STATE.CONNECTED})()
    transport._connections = {n: up for n in connected}
    return transport, out


def test_a_drain_sends_one_batch_to_a_member_that_reads_batches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Override 10: what a drain sends to a member of this build is one message, in order; a
    member not known to read batches (an older build) gets each message as before."""
    new, old = TCPNode("127.0.0.1:1"), TCPNode("127.0.0.1:2")
    transport, out = _bare_transport(monkeypatch, [new, old])
    transport.batch_peers.add(new.id)
    transport.begin_batch()
    for i in range(3):
        transport.send(new, {"type": "apply_command", "command": b"c%d" % i, "request_id": i})
        transport.send(old, {"type": "apply_command", "command": b"c%d" % i, "request_id": i})
    assert [to for to, _m in out] == [old.id] * 3, "held for the new member, not for the old"
    transport.end_batch()
    to, batch = out[-1]
    assert to == new.id and batch["type"] == BATCH_TYPE
    assert [m["request_id"] for m in batch["messages"]] == [0, 1, 2]
    out.clear()
    transport.send(new, {"type": "apply_command", "command": b"x", "request_id": 9})
    assert out == [(new.id, {"type": "apply_command", "command": b"x", "request_id": 9})]
    out.clear()  # a catch-up loop: a batch holds one append_entries at most
    transport.begin_batch()
    for i in range(3):
        transport.send(new, {"type": "apply_command_response", "request_id": i})
        transport.send(new, {"type": "append_entries", "term": 1, "entries": [(b"e", i, 1)]})
    transport.end_batch()
    sent = [b.get("messages", [b]) for _to, b in out]
    assert [m.get("request_id", m.get("entries")) for b in sent for m in b] == [
        0, [(b"e", 0, 1)], 1, [(b"e", 1, 1)], 2, [(b"e", 2, 1)]], "in order, nothing lost"
    assert all(sum(m["type"] == "append_entries" for m in b) <= 1 for b in sent)
    out.clear()  # a chunk of a large entry travels alone, after what was held before it
    transport.begin_batch()
    transport.send(new, {"type": "apply_command_response", "request_id": 7})
    transport.send(new, {"type": "append_entries", "term": 1, "transmission": "start",
                         "data": b"chunk"})
    transport.send(new, {"type": "apply_command_response", "request_id": 8})
    transport.end_batch()
    assert [m.get("request_id", m.get("transmission")) for _to, m in out] == [7, "start", 8]


def test_a_batch_is_received_as_its_messages_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver hands a batch's messages to the engine one by one, as if sent alone, and
    learns who reads batches from the key on append_entries / next_node_idx."""
    seen: list[Any] = []
    monkeypatch.setattr(TCPTransport, "_onMessageReceived",
                        lambda _self, _node, msg: seen.append(msg))
    peer = TCPNode("127.0.0.1:1")
    transport, _out = _bare_transport(monkeypatch, [peer])
    inner = [{"type": "apply_command_response", "request_id": i, "log_idx": 10 + i,
              "log_term": 2} for i in range(3)]
    transport._onMessageReceived(peer, {"type": BATCH_TYPE, "messages": inner})
    assert seen == inner
    assert peer.id in transport.batch_peers
    transport._onMessageReceived(peer, {"type": "append_entries", "term": 2})  # an older build
    assert peer.id not in transport.batch_peers
    transport._onMessageReceived(peer, {"type": "next_node_idx", BATCH_KEY: 1})
    assert peer.id in transport.batch_peers


def test_the_durable_transport_stamps_rounds_and_echoes_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out: list[dict[str, Any]] = []

    def sent(_self: Any, _node: Any, msg: dict[str, Any]) -> bool:
        out.append(msg)
        return True

    monkeypatch.setattr(TCPTransport, "send", sent)
    reads = ReadRounds()
    reads.round_id = 12
    reads.on_append_entries("127.0.0.1:1", {"type": "append_entries", "term": 4, ROUND_KEY: 3})
    transport = DurableTransport.__new__(DurableTransport)  # no sockets: only send is tested
    transport._syncObj = type("Engine", (), {"reads": reads})()
    transport._pending_acks = []
    peer = TCPNode("127.0.0.1:1")
    transport.send(peer, {"type": "append_entries", "term": 5})
    transport.send(peer, {"type": "next_node_idx", "next_node_idx": 1})
    transport.send(TCPNode("127.0.0.1:2"), {"type": "next_node_idx", "next_node_idx": 1})
    assert out[0][ROUND_KEY] == 12
    assert out[1][ECHO_KEY] == (4, 3)
    assert ECHO_KEY not in out[2]  # never saw a round from that node
    assert all(m[BATCH_KEY] == 1 for m in out)  # override 10: this build reads batches


def _due(node: Any, peers: list[TCPNode], speakers: list[TCPNode],
         heard: list[TCPNode] | None = None) -> None:
    """``node``'s election timeout has passed; it is connected to ``peers``, of which
    ``speakers`` said they read pre-votes and ``heard`` (default: all) sent a message lately."""
    transport = node._SyncObj__transport
    node._SyncObj__connectedNodes = set(peers)
    node._SyncObj__raftElectionDeadline = 0
    transport.pre_vote_peers = {p.id for p in speakers}
    transport.heard_peers = {p.id for p in (peers if heard is None else heard)}
    node.last_contact = {p.id: engine_clock() for p in peers if p.id in transport.heard_peers}


def _tick(node: Any, peers: list[TCPNode]) -> None:
    """One engine tick, still connected to ``peers`` (nothing listens on their ports: the
    transport's own connection attempts drop them)."""
    node._SyncObj__connectedNodes = set(peers)
    node._onTick(0.0)


def _votes(sent: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(m["type"], m["term"]) for m in sent if m["type"] in ("request_vote", PRE_VOTE)]


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_a_follower_campaigns_only_once_a_majority_said_it_would_vote(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """Override 12 (PreVote, Raft thesis §9.6). The stock follower whose election timeout passed
    raises its term and asks for votes at once; here it first asks whether the members would
    vote, at the same term, and campaigns only after a yes that makes a majority."""
    node, sent, peers = _make(cls, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _due(node, peers, speakers=peers)
    _tick(node, peers)
    if cls is _Stock:
        assert node._SyncObj__raftCurrentTerm == 2
        assert _votes(sent) == [("request_vote", 2)] * 2
        return
    assert (node._SyncObj__raftCurrentTerm, node._SyncObj__raftState) == (1, 0)
    assert _votes(sent) == [(PRE_VOTE, 2)] * 2
    assert sent[0]["last_log_index"] == 3 and sent[0]["last_log_term"] == 1
    sent.clear()
    node._SyncObj__onMessageReceived(peers[0], {"type": PRE_VOTE_RESPONSE, "term": 2,
                                                "granted": False, "current_term": 1})
    _tick(node, peers)
    assert node._SyncObj__raftCurrentTerm == 1 and _votes(sent) == []
    node._SyncObj__onMessageReceived(peers[1], {"type": PRE_VOTE_RESPONSE, "term": 2,
                                                "granted": True, "current_term": 1})
    _tick(node, peers)
    assert node._SyncObj__raftCurrentTerm == 2
    assert _votes(sent) == [("request_vote", 2)] * 2


def test_a_member_that_hears_from_its_leader_says_no_and_keeps_its_term(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    """Override 12: a pre-vote changes nothing on the member asked; it says yes only when it
    has not heard from a leader within the minimum election timeout and the candidate's log is
    at least as up to date as its own."""
    node, sent, (leader, candidate) = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    node._SyncObj__onMessageReceived(leader, _append(1, (3, 1), [], 3))  # a heartbeat
    ask = {"type": PRE_VOTE, "term": 2, "last_log_index": 3, "last_log_term": 1}
    node._SyncObj__onMessageReceived(candidate, ask)
    assert sent[-1] == {"type": PRE_VOTE_RESPONSE, "term": 2, "granted": False, "current_term": 1}
    node.last_contact[leader.id] -= 10  # the leader has been silent since
    node._SyncObj__onMessageReceived(candidate, ask)
    assert sent[-1]["granted"] is True
    node._SyncObj__onMessageReceived(candidate, {**ask, "last_log_index": 2})  # shorter log
    assert sent[-1]["granted"] is False
    node._SyncObj__onMessageReceived(candidate, {**ask, "term": 1})  # not past this term
    assert sent[-1]["granted"] is False
    assert node._SyncObj__raftCurrentTerm == 1 and node._SyncObj__votedForNodeId is None
    assert node._SyncObj__raftLeader == leader


def test_members_of_an_older_build_count_as_a_yes_while_they_talk(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    """Override 12 during an upgrade: a member that never said it reads pre-votes cannot be
    asked, so it counts as a yes if it sent something on its connection lately (then this
    member campaigns as before); one that only connected does not (a member removed from the
    cluster is disconnected again at once by the others)."""
    node, sent, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _due(node, peers, speakers=[], heard=[])
    _tick(node, peers)
    assert node._SyncObj__raftCurrentTerm == 1 and _votes(sent) == []
    _due(node, peers, speakers=[])
    _tick(node, peers)
    assert node._SyncObj__raftCurrentTerm == 2 and _votes(sent) == [("request_vote", 2)] * 2


def test_a_leadership_transfer_campaigns_without_asking(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    """Override 12: the leader's ``timeout_now`` (a leadership transfer) starts the election
    at once, as etcd's does; the other members still hear from that leader, so a pre-vote
    would fail."""
    node, sent, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    node._SyncObj__onMessageReceived(peers[0], _append(1, (3, 1), [], 3))
    _due(node, peers, speakers=peers)
    node._SyncObj__onMessageReceived(peers[0], {"type": "timeout_now", "term": 1})
    _tick(node, peers)
    assert node._SyncObj__raftCurrentTerm == 2 and _votes(sent) == [("request_vote", 2)] * 2


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_a_leader_behind_a_members_term_learns_it_and_steps_down(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """Override 12. A member whose term passed its leader's (it campaigned alone) ignores that
    leader's append_entries; pysyncobj's acknowledgements carry no term, so the stock leader
    never learns it (stock members freed themselves by campaigning again, which PreVote stops).
    Here the member answers with its term and the leader steps down."""
    (tmp_path / "l").mkdir()
    (tmp_path / "f").mkdir()
    member, replies, mpeers = _make(cls, tmp_path / "f", DEPOSED[:3], term=3)
    made.append(member)
    member._SyncObj__onMessageReceived(mpeers[0], _append(1, (3, 1), [], 3))
    assert member._SyncObj__raftCurrentTerm == 3 and member._SyncObj__raftLeader is None
    if cls is _Stock:
        assert replies == []
        return
    assert replies == [{"type": TERM_NOTICE, "term": 3}]
    leader, _, lpeers = _make(cls, tmp_path / "l", DEPOSED[:3], term=1)
    made.append(leader)
    _lead(leader, lpeers)
    leader._SyncObj__onMessageReceived(lpeers[0], replies[0])
    assert (leader._SyncObj__raftCurrentTerm, leader._SyncObj__raftState) == (3, 0)
    assert leader._SyncObj__raftLeader is None


def test_a_no_with_a_higher_term_is_adopted(tmp_path: pathlib.Path, made: list[Any]) -> None:
    """Override 12: a candidate with the longer log but the lower term takes the term a member
    answered with (Raft §5.1), so its next pre-vote can pass that member's term."""
    node, sent, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _due(node, peers, speakers=peers)
    _tick(node, peers)
    node._SyncObj__onMessageReceived(peers[0], {"type": PRE_VOTE_RESPONSE, "term": 2,
                                                "granted": False, "current_term": 7})
    assert (node._SyncObj__raftCurrentTerm, node._SyncObj__raftState) == (7, 0)
    sent.clear()
    _due(node, peers, speakers=peers)
    _tick(node, peers)
    assert _votes(sent) == [(PRE_VOTE, 8)] * 2


def test_the_transport_learns_who_reads_pre_votes_from_their_hello(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Override 12: a hello marks its member as one that reads pre-votes, any other message as
    one heard from on this connection; a disconnect forgets both (it may come back as another
    build). The hello itself goes to nobody else."""
    member = TCPNode("127.0.0.1:1")
    transport, _ = _bare_transport(monkeypatch, [member])
    engine: list[Any] = []
    monkeypatch.setattr(TCPTransport, "_onMessageReceived", lambda _s, _n, m: engine.append(m))
    transport._onMessageReceived(member, {"type": HELLO_TYPE, "features": ["pre_vote"]})
    assert transport.pre_vote_peers == {member.id} and transport.heard_peers == set()
    transport._onMessageReceived(member, {"type": "next_node_idx"})
    assert transport.heard_peers == {member.id} and engine == [{"type": "next_node_idx"}]
    monkeypatch.setattr(transport, "_connToNode", lambda _conn: member)
    monkeypatch.setattr(TCPTransport, "_onDisconnected", lambda _s, _c: None)
    transport._onDisconnected(object())
    assert transport.pre_vote_peers == set() and transport.heard_peers == set()


def test_a_new_connection_says_it_reads_pre_votes_before_it_is_fully_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Override 12: the connecting side learns of its connection while it is still CONNECTING
    (``send`` refuses it then): the hello goes out on the connection itself, as pysyncobj's own
    address does."""
    member = TCPNode("127.0.0.1:1")
    transport, out = _bare_transport(monkeypatch, [])
    wrote: list[Any] = []
    conn = type("Conn", (), {"state": CONNECTION_STATE.CONNECTING, "send": lambda _s, m: wrote.append(m)})()
    transport._connections = {member: conn}
    monkeypatch.setattr(TCPTransport, "_onNodeConnected", lambda _s, _n: None)
    transport._onNodeConnected(member)
    assert wrote == [{"type": HELLO_TYPE, "features": ["pre_vote", FEATURE_KEEPALIVE]}] and out == []


def test_a_timeout_about_to_pass_starts_the_pre_vote_itself(
        tmp_path: pathlib.Path, made: list[Any]) -> None:
    """Override 12: the engine reads the clock again after the pre-vote check; an election
    timeout passing in between let it campaign without asking. A timeout that passes within
    PRE_VOTE_EARLY_S is taken as passed, so the pre-vote goes first and pushes it back."""
    node, sent, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _due(node, peers, speakers=peers)
    node._SyncObj__raftElectionDeadline = engine_clock() + PRE_VOTE_EARLY_S / 2
    _tick(node, peers)
    assert node._SyncObj__raftCurrentTerm == 1 and _votes(sent) == [(PRE_VOTE, 2)] * 2
    assert node._SyncObj__raftElectionDeadline > engine_clock() + PRE_VOTE_EARLY_S


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_a_deposed_leader_waits_a_fresh_election_timeout(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """Override 12. A leader deposed by a candidate it does not vote for (the candidate's log
    is behind: a transfer under load) kept the election deadline from before its term, long
    past, and campaigned at its next tick, taking leadership back. Here it waits a fresh
    election timeout, as a follower does."""
    node, sent, peers = _make(cls, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _lead(node, peers)
    _due(node, peers, speakers=peers)  # the deadline from before it led: long past
    node._SyncObj__raftState = 2
    sent.clear()
    node._SyncObj__onMessageReceived(peers[0], {"type": "request_vote", "term": 2,
                                                "last_log_index": 2, "last_log_term": 1})
    assert (node._SyncObj__raftState, node._SyncObj__raftCurrentTerm) == (0, 2)
    _tick(node, peers)
    if cls is _Stock:
        assert _votes(sent) == [("request_vote", 3)] * 2
    else:
        assert _votes(sent) == []


#: How far pysyncobj's clock (CLOCK_MONOTONIC_RAW) is set apart from ``time.monotonic`` in the
#: drift tests below (s): NTP slews CLOCK_MONOTONIC by up to 500 ppm, so a node up for a few
#: hours sees seconds between the two.
CLOCK_DRIFT_S = 5.0


@pytest.mark.parametrize("drift_s", [-CLOCK_DRIFT_S, CLOCK_DRIFT_S])
def test_the_election_timeout_is_read_on_the_engines_clock(
        tmp_path: pathlib.Path, made: list[Any], monkeypatch: pytest.MonkeyPatch,
        drift_s: float) -> None:
    """Override 12 kept its own times on ``time.monotonic`` and compared them with the election
    deadline pysyncobj stamps on its raw clock. A follower whose engine clock ran behind took
    an election timeout as passed 50 ms after a heartbeat, so it lost its leader and started a
    pre-vote every few seconds on an idle cluster (every tick once the drift passed the shortest
    election timeout); one whose engine clock ran ahead never asked for a pre-vote and let the
    engine campaign. Whatever the drift: a follower just heard keeps its leader, one whose
    timeout passed asks for pre-votes first, and a deposed leader waits a fresh timeout."""
    monkeypatch.setattr(_syncobj_module, "monotonicTime", lambda: time.monotonic() + drift_s)
    node, sent, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _due(node, peers, speakers=peers)
    # A heartbeat just arrived: the engine set a deadline of the shortest election timeout.
    node._SyncObj__raftElectionDeadline = engine_clock() + node._SyncObj__conf.raftMinTimeout
    node._SyncObj__raftLeader = peers[0]
    _tick(node, peers)
    assert _votes(sent) == [] and node._SyncObj__raftLeader == peers[0]
    # The leader has been silent for an election timeout.
    node._SyncObj__raftElectionDeadline = engine_clock() - 0.01
    _tick(node, peers)
    assert node._SyncObj__raftCurrentTerm == 1 and _votes(sent) == [(PRE_VOTE, 2)] * 2
    # A leader deposed by a higher term waits between the election timeouts, on that clock.
    _lead(node, peers)
    node._SyncObj__onMessageReceived(peers[0], {"type": "request_vote", "term": 5,
                                                "last_log_index": 0, "last_log_term": 0})
    wait_s = node._SyncObj__raftElectionDeadline - engine_clock()
    conf = node._SyncObj__conf
    assert conf.raftMinTimeout * 0.9 <= wait_s <= conf.raftMaxTimeout


def test_an_unanswered_connection_attempt_is_made_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Override 13: a connect still unanswered after CONNECT_TIMEOUT_S (its SYNs dropped by a
    partition) is dropped, so pysyncobj makes a new attempt instead of waiting on the kernel's
    SYN retries; a younger attempt and an established connection are left alone."""
    transport, _ = _bare_transport(monkeypatch, [])
    monkeypatch.setattr(TCPTransport, "_onTick", lambda _s: None)
    dropped: list[str] = []

    def conn(name: str, state: int, age_s: float) -> Any:
        c = type("Conn", (), {"state": state, "disconnect": lambda _s: dropped.append(name)})()
        c._TcpConnection__lastReadTime = engine_clock() - age_s
        return c

    transport._connections = {
        TCPNode("127.0.0.1:1"): conn("stale", CONNECTION_STATE.CONNECTING, CONNECT_TIMEOUT_S + 1),
        TCPNode("127.0.0.1:2"): conn("young", CONNECTION_STATE.CONNECTING, 0.0),
        TCPNode("127.0.0.1:3"): conn("up", CONNECTION_STATE.CONNECTED, CONNECT_TIMEOUT_S + 1),
    }
    transport._onTick()
    assert dropped == ["stale"]


def test_keepalives_go_to_members_that_send_them_and_a_silent_one_is_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Override 14: every KEEPALIVE_S a hello goes to each connected member that said it sends
    keep-alives (an older build's link would read nothing here and be dropped at the next send);
    such a member's connection that read nothing for connectionTimeout (3.5 s) is dropped, an
    older build's is left to pysyncobj; so is an unidentified incoming socket."""
    transport, _ = _bare_transport(monkeypatch, [])
    monkeypatch.setattr(TCPTransport, "_onTick", lambda _s: None)
    events: list[tuple[str, Any]] = []

    def conn(name: str, age_s: float) -> Any:
        c = type("Conn", (), {"state": CONNECTION_STATE.CONNECTED,
                              "disconnect": lambda _s: events.append(("dropped", name)),
                              "send": lambda _s, m: events.append((name, m))})()
        c._TcpConnection__lastReadTime = c._gantry_accepted = engine_clock() - age_s
        return c

    new, old, silent = TCPNode("127.0.0.1:1"), TCPNode("127.0.0.1:2"), TCPNode("127.0.0.1:3")
    transport._connections = {new: conn("new", 0.0), old: conn("old", 10.0), silent: conn("silent", 4.0)}
    transport._unknownConnections = {conn("stranger", 4.0), conn("greeting", 0.0)}
    for member in (new, silent):
        transport._onMessageReceived(member, {"type": HELLO_TYPE, "features": [FEATURE_KEEPALIVE]})
    assert transport.keepalive_peers == {new.id, silent.id}
    transport._onTick()
    assert ("dropped", "silent") in events and ("dropped", "stranger") in events
    assert ("dropped", "old") not in events and ("dropped", "new") not in events
    hellos = [name for name, m in events if name != "dropped"]
    assert "new" in hellos and "old" not in hellos
    assert all(m["type"] == HELLO_TYPE and FEATURE_KEEPALIVE in m["features"]
               for name, m in events if name != "dropped")
    events.clear()
    transport._onTick()  # within KEEPALIVE_S of the last round: no second hello
    assert [e for e in events if e[0] == "new"] == []
    transport._last_keepalive -= KEEPALIVE_S
    transport._onTick()
    assert [e[0] for e in events if e[0] == "new"] == ["new"]


def test_a_member_that_connects_again_replaces_its_old_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Override 14: the old connection of a member that connects again is closed (it stayed
    open beside the new one); a utility command or a read-only node is refused and its
    connection closed."""
    transport, _ = _bare_transport(monkeypatch, [])
    member, below = TCPNode("127.0.0.1:1"), TCPNode("127.0.0.1:0")
    transport._nodeAddrToNode = {member.address: member, below.address: below}
    # This node connects to ``below`` itself (pysyncobj: the higher address connects).
    monkeypatch.setattr(transport, "_shouldConnect", lambda n: n is below)
    closed: list[str] = []
    named: list[Any] = []

    def take(self: Any, c: Any, m: Any) -> None:  # pysyncobj's: the connection becomes the member's
        named.append((c.name, m))
        self._connections[member] = c

    monkeypatch.setattr(TCPTransport, "_onIncomingMessageReceived", take)

    def conn(name: str) -> Any:
        return type("Conn", (), {"name": name, "state": CONNECTION_STATE.CONNECTED, "sendRandKey": None,
                                 "disconnect": lambda _s: closed.append(name)})()

    first, second = conn("first"), conn("second")
    transport._onIncomingMessageReceived(first, member.address)
    assert closed == [] and transport._connections[member] is first
    transport._onIncomingMessageReceived(second, member.address)
    assert closed == ["first"] and transport._connections[member] is second
    for message in (["add", "127.0.0.1:9"], "readonly", "127.0.0.1:9", {"not": "a name"},
                    below.address):
        transport._onIncomingMessageReceived(conn("intruder"), message)
    assert closed == ["first"] + ["intruder"] * 5
    assert named == [("first", member.address), ("second", member.address)]


def test_a_stopping_member_never_campaigns(tmp_path: pathlib.Path, made: list[Any]) -> None:
    """Override 12: a member handing over before it stops (``draining``) neither asks for
    pre-votes nor campaigns, so stopping every member at once does not raise the term (its
    request_vote was dropped, but its own term rose at each timeout: seen in a new-user trial)."""
    node, sent, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _due(node, peers, speakers=[])  # members that would count as a yes: it would campaign
    node._SyncObj__transport.draining = True
    _tick(node, peers)
    assert node._SyncObj__raftCurrentTerm == 1 and _votes(sent) == []


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_a_leader_transferring_leadership_appends_no_new_command(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """Override 12. The stock leader keeps appending commands after its ``timeout_now``, so
    under load the target campaigns with a shorter log, the old leader refuses it its vote, and
    a transfer took several terms (a new-user trial saw 3–6). Here commands wait in the queue
    for an election timeout (they go to the new leader once this node follows it); the caller
    still hears SUCCESS."""
    node, sent, peers = _make(cls, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _lead(node, peers)
    node._SyncObj__connectedNodes = set(node._SyncObj__otherNodes)
    node._SyncObj__raftMatchIndex = {p: node._SyncObj__getCurrentLogIndex() for p in peers}
    answers: list[Any] = []
    node.transferLeadership(peers[0].id, lambda _r, err: answers.append(err))
    assert [m["type"] for m in sent][-1] == "timeout_now" and answers == [FAIL_REASON.SUCCESS]
    node._applyCommand(b"late", None, 0)
    node._SyncObj__conf.appendEntriesUseBatch = False
    node._checkCommandsToApply()
    assert (node._SyncObj__getCurrentLogIndex() > 3) is (cls is _Stock)
    if cls is SafeSyncObj:  # after the hold, the queued command is appended
        node.transfer_hold_until = 0.0
        node._checkCommandsToApply()
        assert node._SyncObj__getCurrentLogIndex() == 4


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_leadership_goes_only_to_a_follower_that_answers(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """Override 25. Both followers are connected and caught up, but the one with the higher id
    (the stock tie-break) has not answered for an election timeout (frozen: its TCP connection
    stays up). The stock leader sends it ``timeout_now`` whether picked or named; here the
    picked target is the one that answers, and the silent one, named, is refused."""
    node, _sent, peers = _make(cls, tmp_path, DEPOSED[:3], term=1)
    made.append(node)
    _lead(node, peers)
    node._SyncObj__connectedNodes = set(node._SyncObj__otherNodes)
    live, silent = sorted(peers, key=lambda p: p.id)
    node.last_contact[silent.id] = engine_clock() - 2 * node._SyncObj__conf.raftMinTimeout
    to: list[tuple[str, str]] = []

    def send(n: Any, message: dict[str, Any]) -> bool:
        to.append((n.id, message["type"]))
        return True

    node._SyncObj__transport.send = send
    answers: list[Any] = []
    node.transferLeadership(None, lambda _r, err: answers.append(err))
    assert answers == [FAIL_REASON.SUCCESS]
    assert to == [((silent if cls is _Stock else live).id, "timeout_now")]
    to.clear()
    node.transferLeadership(silent.id, lambda _r, err: answers.append(err))
    if cls is _Stock:
        assert to == [(silent.id, "timeout_now")]
    else:
        assert to == [] and answers[-1] == FAIL_REASON.REQUEST_DENIED
        assert node.transfer_refusal.startswith(f"{silent.id} has not answered for ")


def _wake_bytes(node: Any) -> int:
    """How many wake-up bytes wait in the engine's pipe (read, so they are gone after)."""
    fd = node._SyncObj__pipeNotifier._PipeNotifier__pipeR
    n = 0
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return n
        if not chunk:
            return n
        n += len(chunk)


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_proposals_write_one_wake_up_byte_a_tick(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:
    """Override 26. The stock engine writes its wake-up byte (a syscall that releases the GIL,
    and a wake of the tick thread) for every proposal; here once until the next tick begins,
    and again for a proposal made after it began."""
    node, _sent, peers = _make(cls, tmp_path, DEPOSED[:3], term=1, appendEntriesUseBatch=False)
    made.append(node)
    for i in range(10):
        node._applyCommand(b"c%d" % i, None, 0)
    assert _wake_bytes(node) == (10 if cls is _Stock else 1)
    _tick(node, peers)  # drains the queue (a follower without a leader: each one is refused)
    node._applyCommand(b"after", None, 0)
    node._applyCommand(b"after-2", None, 0)
    assert _wake_bytes(node) == (2 if cls is _Stock else 1)


def test_membership_change_reads_pysyncobj_entries_and_nothing_else() -> None:
    from pysyncobj import pickle as sync_pickle

    from gantry.consensus.pysyncobj_compat import membership_change

    addr = "127.0.0.1:7003"
    assert membership_change(b"\x02" + sync_pickle.dumps(["add", addr, TCPNode(addr)])) == ("add", addr)
    assert membership_change(b"\x02" + sync_pickle.dumps(["rem", addr, TCPNode(addr)])) == ("rem", addr)
    for bad in (b"\x00" + sync_pickle.dumps((0, (b"x",))),  # a regular call
                b"\x02" + pickle.dumps(["add", addr, pathlib.Path("/")]),  # another class
                b"\x02" + pickle.dumps({"add": addr})):
        with pytest.raises(ValueError):
            membership_change(bad)


def test_reads_are_bounded_per_event_and_for_unidentified_connections() -> None:
    """Override 14: one poll event reads at most READ_BUDGET_BYTES from a connection (pysyncobj
    read for as long as data came), and an unidentified connection announcing a frame longer
    than UNIDENTIFIED_MAX_FRAME_BYTES is closed at once (it buffered a 1.5 GB frame)."""
    import socket as socket_mod

    from gantry.consensus.pysyncobj_compat import (
        READ_BUDGET_BYTES,
        UNIDENTIFIED_MAX_FRAME_BYTES,
        _bounded_read,
    )

    def conn_over(sock: Any) -> Any:
        c = type("Conn", (), {"disconnect": lambda self: setattr(self, "closed", True)})()
        c.closed = False
        c._TcpConnection__socket = sock
        c._TcpConnection__recvBufferSize = 8192
        c._TcpConnection__readBuffer = b""
        return c

    a, b = socket_mod.socketpair()
    try:
        a.settimeout(10)  # blocking: every recv gets data while the sender has some
        def send() -> None:  # more than a socket buffer: it blocks until read, then is cut off
            with contextlib.suppress(OSError):
                b.sendall(struct.pack("i", 10_000_000) + bytes(3 * READ_BUDGET_BYTES))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        member = conn_over(a)
        while _bounded_read(member, lambda: False):  # one poll event's reads
            pass
        got = len(member._TcpConnection__readBuffer)
        assert not member.closed and READ_BUDGET_BYTES <= got < READ_BUDGET_BYTES + 8192 + 4
        stranger = conn_over(a)
        stranger._TcpConnection__readBuffer = struct.pack("i", UNIDENTIFIED_MAX_FRAME_BYTES + 1)
        assert not _bounded_read(stranger, lambda: True) and stranger.closed
    finally:
        a.close()
        sender.join(10)
        b.close()


def test_a_snapshot_whose_last_entry_the_log_holds_is_not_installed(tmp_path: pathlib.Path) -> None:
    """Override 19 (Raft Figure 13, InstallSnapshot step 6): this follower's log holds 1–10,
    committed to 5; the leader sends its snapshot at 6 (term 1), which the log holds. The stock
    engine discards the whole log (7–10 included, which this node may have acknowledged)."""

    class Engine(SafeSyncObj):  # type: ignore[misc]
        def received_snapshot_last_entry(self, path: str) -> tuple[int, int] | None:
            return (6, 1) if pathlib.Path(path).read_bytes() == b"leader" else None

    ports = free_ports(2)
    journal = DurableJournal(str(tmp_path / "retain.log"))
    for i in range(1, 11):
        journal.add(b"\x01" if i == 1 else f"e{i}".encode(), i, 1)
    journal.setCurrentTerm(2, None)
    journal.setRaftCommitIndex(5)
    dump = tmp_path / "dump"
    dump.write_bytes(b"own")
    loads: list[str] = []
    sent: list[Any] = []

    def deserializer(path: str) -> Any:
        loads.append(path)
        return (b"e6", 6, 1), (b"e5", 5, 1), set()

    def send(_node: Any, message: Any) -> bool:
        sent.append(message)
        return True

    conf = SyncObjConf(autoTick=False, fullDumpFile=str(dump), serializer=lambda _p, _m: None,
                       deserializer=deserializer)
    with installed(journal):
        node = Engine(f"127.0.0.1:{ports[0]}", [f"127.0.0.1:{ports[1]}"], conf)
    node._SyncObj__transport.send = send
    loads.clear()
    try:
        msg = {"type": "append_entries", "term": 3, "commit_index": 12,
               "serialized": (b"leader", True, True)}
        node._SyncObj__onMessageReceived(TCPNode(f"127.0.0.1:{ports[1]}"), msg)
        assert [e[1] for e in node._SyncObj__raftLog[:]] == list(range(1, 11))
        assert not loads, "the leader's snapshot was loaded"
        assert node.raftCommitIndex == 6
        assert dump.read_bytes() == b"own"  # the dump matches the log again
        replies = [m for m in sent if m.get("type") == "next_node_idx"]
        assert replies and all(m["success"] for m in replies) and replies[-1]["next_node_idx"] == 7
    finally:
        node._SyncObj__transport.destroy()
        journal._destroy()


def test_a_kept_tail_keeps_its_membership_changes(tmp_path: pathlib.Path) -> None:
    """Override 20: the follower's log holds 1–10, 9 adding a member; the leader re-sends a
    shorter batch (prev 6, entry 7). pysyncobj rolls back the tail's membership changes and used
    to have the tail cut (the journal truncated it to match): entries 8–10, acknowledged, were
    gone until the leader re-sent them. Now the tail stays and the member stays added."""
    import pickle as std_pickle

    ports = free_ports(3)
    me, leader_addr, extra = (f"127.0.0.1:{p}" for p in ports)
    journal = DurableJournal(str(tmp_path / "kept.log"))
    member = b"\x02" + std_pickle.dumps(["add", extra, TCPNode(extra)])
    for i in range(1, 11):
        journal.add(b"\x01" if i == 1 else (member if i == 9 else f"e{i}".encode()), i, 1)
    journal.setCurrentTerm(2, None)
    journal.setRaftCommitIndex(5)
    with installed(journal):
        node = SafeSyncObj(me, [leader_addr], SyncObjConf(autoTick=False, dynamicMembershipChange=True))
    node._SyncObj__transport.send = lambda *_a: True
    leader = TCPNode(leader_addr)
    try:
        node._SyncObj__doChangeCluster(["add", extra, TCPNode(extra)])  # as when 9 was appended
        assert TCPNode(extra) in node.otherNodes
        node._SyncObj__onMessageReceived(leader, {
            "type": "append_entries", "term": 2, "commit_index": 6, "prevLogIdx": 6,
            "prevLogTerm": 1, "entries": [(b"e7", 7, 1)]})
        assert [e[1] for e in journal[:]] == list(range(1, 11)), "the matching tail was cut"
        assert TCPNode(extra) in node.otherNodes, "the kept membership change was lost"
    finally:
        node._SyncObj__transport.destroy()
        journal._destroy()

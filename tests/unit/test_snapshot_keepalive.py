"""Override 5 of :mod:`gantry.consensus.pysyncobj_compat`: a follower receiving a snapshot in chunks
answers its leader while it does. Found by ops/bench_backup.py at 1M objects: a restored
single-node cluster adding its second member streamed a 343 MB snapshot for longer than the
leader's CheckQuorum timeout; the new member (needed for the two-member quorum) said nothing
until the last chunk, so the leader stepped down every 1.4 s and the transfer restarted in each
new term, for ever. Same harness as tests/unit/test_pysyncobj_compat.py (no networking)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from gantry.consensus.pysyncobj_compat import SNAPSHOT_KEEPALIVE_S, SafeSyncObj, engine_clock
from tests.unit.test_pysyncobj_compat import DEPOSED, _make, _Stock, made  # noqa: F401


def _chunk(first: bool, last: bool) -> dict[str, Any]:
    return {"type": "append_entries", "term": 3, "commit_index": 3,
            "serialized": (b"snapshot-bytes", first, last)}


@pytest.mark.parametrize("cls", [_Stock, SafeSyncObj])
def test_a_follower_answers_while_a_snapshot_streams(
        tmp_path: pathlib.Path, made: list[Any], cls: type) -> None:  # noqa: F811
    node, sent, peers = _make(cls, tmp_path, DEPOSED[:3], term=2, peers=1)
    made.append(node)
    commit = node.raftCommitIndex
    node._SyncObj__onMessageReceived(peers[0], _chunk(True, False))
    node._SyncObj__onMessageReceived(peers[0], _chunk(False, False))
    answers = [m for m in sent if m.get("type") == "next_node_idx"]
    if cls is _Stock:
        assert answers == []  # the engine defect: silence until the last chunk
        return
    # One keep-alive per SNAPSHOT_KEEPALIVE_S, neither success nor reset: the leader only
    # refreshes this follower's last response time.
    assert answers == [{"type": "next_node_idx", "next_node_idx": 4, "reset": False,
                        "success": False}]
    node._snapshot_keepalive_at -= SNAPSHOT_KEEPALIVE_S
    node._SyncObj__onMessageReceived(peers[0], _chunk(False, False))
    assert len([m for m in sent if m.get("type") == "next_node_idx"]) == 2
    assert node.raftCommitIndex == commit  # and a chunk still proves nothing about the log


def test_the_leader_takes_a_keepalive_as_a_sign_of_life_only(
        tmp_path: pathlib.Path, made: list[Any]) -> None:  # noqa: F811
    node, _, peers = _make(SafeSyncObj, tmp_path, DEPOSED[:3], term=3, peers=1)
    made.append(node)
    node._SyncObj__raftState = 2  # leader
    node._SyncObj__raftCurrentTerm = 3
    node._SyncObj__raftNextIndex = {peers[0]: 1}
    node._SyncObj__raftMatchIndex = {peers[0]: 0}
    node._SyncObj__lastResponseTime = {peers[0]: engine_clock() - 10}
    node._SyncObj__onMessageReceived(peers[0], {
        "type": "next_node_idx", "next_node_idx": 4, "reset": False, "success": False})
    assert node._SyncObj__raftNextIndex == {peers[0]: 1}
    assert node._SyncObj__raftMatchIndex == {peers[0]: 0}
    assert engine_clock() - node._SyncObj__lastResponseTime[peers[0]] < 1

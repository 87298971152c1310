"""Unit tests of ``gantry.api.admin`` over a fake :class:`ClusterControl` (no node, no network)."""

from __future__ import annotations

import grpc
import pytest

from gantry.api.admin import AdminService
from gantry.api.errors import RpcError
from gantry.consensus.errors import ConsensusError
from gantry.consensus.probe import Identity
from gantry.pb.admin.v1 import admin_pb2 as pb

SELF, LEADER = "127.0.0.1:7001", "127.0.0.1:7002"


class FakeContext:
    def __init__(self, remaining_s: float) -> None:
        self.remaining_s = remaining_s

    def time_remaining(self) -> float:
        return self.remaining_s


class FakeNode:
    """A follower that learns the leader only after ``unknown_for`` status calls."""

    def __init__(self, unknown_for: int) -> None:
        self.unknown_for = unknown_for
        self.calls = 0

    def cluster_status(self) -> pb.StatusResponse:
        self.calls += 1
        known = self.calls > self.unknown_for
        return pb.StatusResponse(
            raft_addr=SELF, role="follower", leader_raft_addr=LEADER if known else "",
            leader_grpc_addr="127.0.0.1:8002" if known else "",
            members=[pb.Member(raft_addr=SELF), pb.Member(raft_addr=LEADER)])

    def change_membership(self, op: str, raft_addr: str,
                          timeout_s: float) -> ConsensusError | None:
        raise AssertionError("not used")

    def transfer_leadership(self, raft_addr: str, timeout_s: float) -> str:
        raise AssertionError("a follower never transfers itself")

    def identify(self, raft_addr: str, timeout_s: float) -> Identity:
        raise AssertionError("not used")

    def log_entry(self, index: int) -> tuple[int, str] | None:
        raise AssertionError("not used")

    def log_noops_match(self, pairs: list[tuple[int, int]]) -> bool:
        raise AssertionError("not used")


def test_transfer_through_a_follower_waits_to_learn_the_leader() -> None:
    # Right after an election a follower may not have heard from the new leader yet: the call
    # waits for it (bounded) instead of answering a spurious "no leader" (a CI flake, stop 11).
    node = FakeNode(unknown_for=3)
    resp = AdminService(node).transfer(pb.TransferLeadershipRequest(raft_addr=LEADER),
                                       FakeContext(5.0))  # type: ignore[arg-type]
    assert resp.new_leader_raft_addr == LEADER
    assert node.calls > 3


def test_transfer_with_no_leader_still_answers_unavailable() -> None:
    node = FakeNode(unknown_for=10**9)
    with pytest.raises(RpcError) as e:
        AdminService(node).transfer(pb.TransferLeadershipRequest(raft_addr=LEADER),
                                    FakeContext(0.3))  # type: ignore[arg-type]
    assert (e.value.code, e.value.message) == (grpc.StatusCode.UNAVAILABLE, "no leader")


def test_transfer_to_a_members_other_name_is_that_member() -> None:
    # add-node recognises localhost:PORT as 127.0.0.1:PORT; transfer-leader said NOT_FOUND
    # (a new-user trial). The leader is asked with the member's own name.
    node = FakeNode(unknown_for=0)
    resp = AdminService(node).transfer(
        pb.TransferLeadershipRequest(raft_addr="localhost:" + LEADER.rpartition(":")[2]),
        FakeContext(5.0))  # type: ignore[arg-type]
    assert resp.new_leader_raft_addr == LEADER
    with pytest.raises(RpcError) as e:
        AdminService(node).transfer(pb.TransferLeadershipRequest(raft_addr="localhost:1"),
                                    FakeContext(5.0))  # type: ignore[arg-type]
    assert (e.value.code, e.value.message) == (grpc.StatusCode.NOT_FOUND, "node is not a member")


def test_a_membership_change_with_no_leader_answers_no_leader() -> None:
    # It was proposed on this follower anyway, logged membership_change_proposed, and failed
    # "membership change not committed" (a new-user trial).
    node = FakeNode(unknown_for=10**9)
    with pytest.raises(RpcError) as e:
        AdminService(node).remove_node(pb.RemoveNodeRequest(raft_addr=LEADER),
                                       FakeContext(0.3))  # type: ignore[arg-type]
    assert (e.value.code, e.value.message) == (grpc.StatusCode.UNAVAILABLE, "no leader")


class LogNode(FakeNode):
    """A leader whose log holds a command at index 10 (term 2) and no-ops at 11 (term 3) and
    12 (term 4)."""

    def __init__(self) -> None:
        super().__init__(unknown_for=0)

    def log_entry(self, index: int) -> tuple[int, str] | None:
        return (2, "d-cmd") if index == 10 else None

    def log_noops_match(self, pairs: list[tuple[int, int]]) -> bool:
        return all({11: 3, 12: 4}.get(i) == t for i, t in pairs)


def _joiner(command: tuple[int, int, str], tail: tuple[tuple[int, int], ...]) -> Identity:
    last = (tail[-1][0], tail[-1][1], "d-noop") if tail else command
    return Identity(SELF, [SELF], None, 4, last, command, tail)


@pytest.mark.parametrize(("command", "tail", "ours"), [
    ((10, 2, "d-cmd"), ((11, 3), (12, 4)), True),
    ((10, 2, "d-cmd"), ((11, 3),), True),  # behind: its no-ops are a prefix of ours
    ((10, 2, "d-other"), ((11, 3), (12, 4)), False),  # another command at that index
    ((10, 2, "d-cmd"), ((11, 3), (12, 5)), False),  # a no-op of another term
    ((10, 2, "d-cmd"), ((11, 3), (13, 4)), False),  # not the entries right after it
    ((10, 2, "d-cmd"), ((11, 3), (12, 4), (13, 5)), False),  # a no-op this log lacks
    ((0, 0, ""), ((11, 3), (12, 4)), False),  # no command named
    ((10, 2, "d-cmd"), (), False),  # no no-op tail
])
def test_a_noop_tail_is_ours_only_entry_by_entry(command: tuple[int, int, str],
                                                 tail: tuple[tuple[int, int], ...],
                                                 ours: bool) -> None:
    service = AdminService(LogNode())
    assert service._noops_after_a_command_here(_joiner(command, tail)) is ours


class JoinerNode(LogNode):
    """:class:`LogNode` asked about a joiner that answers ``who``."""

    def __init__(self, who: Identity) -> None:
        super().__init__()
        self.who = who

    def identify(self, raft_addr: str, timeout_s: float) -> Identity:
        return self.who


@pytest.mark.parametrize(("last", "snapshot_index", "seen", "truncated"), [
    # its command where this log holds a no-op (index 11): not "compacted"
    ((11, 3, "d-foreign"), 0, "its log ends at index 11 (term 3), an entry this cluster's log "
                              "does not hold", False),
    ((10, 2, "d-foreign"), 0, "its log ends at index 10 (term 2), an entry this cluster's log "
                              "does not hold", False),
    ((5, 1, "d-old"), 9, "its log ends at index 5 (term 1), which this cluster's log no longer "
                         "holds (compacted into its snapshot)", False),
    ((1020, 1006, "d-noop"), 0, "its log ends at index 1020 (term 1006) after more than 1000 "
                                "no-ops in a row, too many to compare", True),
])
def test_a_refused_history_says_what_was_seen(last: tuple[int, int, str], snapshot_index: int,
                                              seen: str, truncated: bool) -> None:
    joiner = "127.0.0.1:7009"
    who = Identity(joiner, [joiner, SELF], None, 4, last, noop_tail_truncated=truncated)
    service = AdminService(JoinerNode(who))
    st = pb.StatusResponse(term=4, last_snapshot_index=snapshot_index)
    with pytest.raises(RpcError) as e:
        service._check_joiner(joiner, {SELF, LEADER}, st, 5.0)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    [info] = e.value.details
    assert info.reason == "JOINER_HAS_OTHER_HISTORY"  # type: ignore[attr-defined]
    assert info.metadata["seen"] == seen  # type: ignore[attr-defined]


def test_a_joiner_that_ran_as_its_own_cluster_is_told_about_its_history() -> None:
    # Started with --force-new-cluster, then again with --peers: its stored configuration (only
    # itself) wins over --peers, so "restart it with the current members as --peers" (the
    # advice it got) could never help; its history is what makes it another cluster's.
    joiner = "127.0.0.1:7009"
    who = Identity(joiner, [joiner], joiner, 4, (10, 2, "d-its-own"))
    with pytest.raises(RpcError) as e:
        AdminService(JoinerNode(who))._check_joiner(joiner, {SELF, LEADER},
                                                    pb.StatusResponse(term=4), 5.0)
    assert e.value.message == ("node runs as another cluster: stop it, empty its data directory, "
                               "start it with the current members as --peers, then add it")
    [info] = e.value.details
    assert info.reason == "JOINER_NOT_JOINING"  # type: ignore[attr-defined]
    assert info.metadata["seen"] == (  # type: ignore[attr-defined]
        "its other members: none; its log ends at index 10 (term 2), an entry this cluster's "
        "log does not hold")
    # Without a history it is still told to restart it with --peers.
    fresh = Identity(joiner, [joiner], None)
    with pytest.raises(RpcError) as e:
        AdminService(JoinerNode(fresh))._check_joiner(joiner, {SELF, LEADER},
                                                      pb.StatusResponse(term=4), 5.0)
    [info] = e.value.details
    assert info.reason == "JOINER_NOT_JOINING"  # type: ignore[attr-defined]

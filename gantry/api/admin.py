"""``gantry.admin.v1.ClusterService``: cluster status and membership, apart from the metadata API.

Membership changes go through the Raft log one at a time (pysyncobj's dynamic membership); a call
returns once this node applied the change. Removing the leader is refused (transfer first), as is
a change while another is still in flight. The preconditions checked here (member or not,
reachable, the leader, a leader to pass a transfer to) are request checks and raise their status
where they are decided; a change's consensus outcome or deadline takes its status from
:data:`gantry.api.errors.STATUSES`.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from gantry.api.errors import (
    MSG_NO_LEADER,
    Call,
    Kind,
    RpcError,
    error_info,
    error_status,
    invalid_argument,
)
from gantry.api.reads import timeout_of
from gantry.api.rpc import build_handler
from gantry.config import ConfigError, check_addr
from gantry.consensus.errors import ConsensusError, RequestDenied
from gantry.consensus.probe import Identity, ProbeError
from gantry.consensus.pysyncobj_compat import PROBE_MAX_NOOP_TAIL
from gantry.pb.admin.v1 import admin_pb2 as pb
from gantry.pb.admin.v1 import admin_pb2_grpc
from gantry.tlsconfig import PLAINTEXT, ClientConfig

SERVICE_NAME = "gantry.admin.v1.ClusterService"
DEFAULT_TIMEOUT_S = 10.0
LEADER_WAIT_S = 3.0  # how long a follower waits to learn the leader before "no leader"
LEADER_POLL_S = 0.05
#: A transfer passed to the leader waits this long (s) for it before asking again whoever leads
#: then: a frozen or cut-off leader is replaced by an election in about 1–2 s.
FORWARD_ATTEMPT_S = 3.0
PROBE_TIMEOUT_S = 2.0  # how long a node to be added gets to say who it is


class ClusterControl(Protocol):
    """What the admin service needs from a node (see :class:`gantry.node.Node`)."""

    def cluster_status(self) -> pb.StatusResponse: ...

    def change_membership(self, op: str, raft_addr: str,
                          timeout_s: float) -> ConsensusError | None:
        """Propose the change: None once applied here, else its typed error (a refusal is
        RequestDenied with the reason). Raises TimeoutError."""
        ...

    def transfer_leadership(self, raft_addr: str, timeout_s: float) -> str:
        """The new leader's Raft address, "" when none took over in time; raises RequestDenied
        when the target (or every follower) does not answer."""
        ...

    def log_entry(self, index: int) -> tuple[int, str] | None:
        """``(term, entry digest)`` of this node's log entry at ``index``, None if not held (or
        a no-op)."""
        ...

    def log_noops_match(self, pairs: list[tuple[int, int]]) -> bool:
        """Whether this node's log holds a no-op at each ``(log index, term)`` of ``pairs``."""
        ...

    def identify(self, raft_addr: str, timeout_s: float) -> Identity:
        """Who the node at ``raft_addr`` says it is (:func:`gantry.consensus.probe.ask`).
        Raises :class:`~gantry.consensus.probe.ProbeError`."""
        ...


def _timeout(context: grpc.ServicerContext) -> float:
    return timeout_of(context, DEFAULT_TIMEOUT_S)


def _addr(req: Any, field: str = "raft_addr", required: bool = True) -> str:
    value = getattr(req, field)
    if not value and not required:
        return ""
    try:
        check_addr(value, what=field)
    except ConfigError:
        raise invalid_argument("InvalidRaftAddress", field) from None
    return str(value)


def _member_named(addr: str, members: set[str]) -> str:
    """The member address ``addr`` names: itself when it is one, else the one member with the
    same port at an address its host resolves to (``localhost:7081`` for ``127.0.0.1:7081``,
    as add-node recognises), else ``addr``. No DNS beyond what the host name already is: a
    name that does not resolve is left as it is."""
    if addr in members:
        return addr
    host, _, port = addr.rpartition(":")
    try:
        ips = {info[4][0] for info in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)}
    except (OSError, ValueError):
        return addr
    same = [m for m in members if m.rpartition(":")[2] == port and m.rpartition(":")[0] in ips]
    return same[0] if len(same) == 1 else addr


def _reachable(raft_addr: str, timeout_s: float = 1.0) -> bool:
    host, _, port = raft_addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


class AdminService:
    """Handlers for ClusterService over a :class:`ClusterControl`. ``peer``: how this node
    calls another one (a follower passing TransferLeadership to the leader): TLS with the node's
    own certificate and its admin token when configured (:func:`gantry.tlsconfig.node_client`)."""

    def __init__(self, node: ClusterControl, peer: ClientConfig = PLAINTEXT) -> None:
        self._node = node
        self._peer = peer

    def generic_handler(self) -> grpc.GenericRpcHandler:
        methods: dict[str, tuple[Any, type[Message], type[Message]]] = {
            "Status": (self.status, pb.StatusRequest, pb.StatusResponse),
            "AddNode": (self.add_node, pb.AddNodeRequest, pb.AddNodeResponse),
            "RemoveNode": (self.remove_node, pb.RemoveNodeRequest, pb.RemoveNodeResponse),
            "TransferLeadership": (self.transfer, pb.TransferLeadershipRequest,
                                   pb.TransferLeadershipResponse),
        }
        # Every method asks a Raft actor and waits (or calls the leader): off the event loop.
        return build_handler(SERVICE_NAME, methods, blocking=True)

    def status(self, req: Any, context: grpc.ServicerContext) -> pb.StatusResponse:
        return self._node.cluster_status()

    def _change(self, op: str, req: Any, context: grpc.ServicerContext) -> None:
        addr = _addr(req)
        st = self._node.cluster_status()
        members = {m.raft_addr for m in st.members}
        if op == "add" and addr in members:
            raise RpcError(grpc.StatusCode.ALREADY_EXISTS, "node is already a member")
        if op == "add" and not _reachable(addr):
            # Raft needs the new member for quorum as soon as the change is appended: adding a
            # node that is not running can stall every write (etcd's strict reconfig check).
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           "node not reachable at its Raft address: start it first "
                           "(with the current members as --peers), then add it")
        if op == "add":
            self._check_joiner(addr, members, st, _timeout(context))
        if op == "remove":
            if addr not in members:
                raise RpcError(grpc.StatusCode.NOT_FOUND, "node is not a member")
            if addr == st.leader_raft_addr:
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                               "cannot remove the leader: transfer leadership first")
        if st.role != "leader" and not st.leader_raft_addr:
            # A change proposed here would only fail ("not committed") without reaching anyone:
            # wait a moment for an election, as transfer-leader does, then say why.
            st = self._await_leader(time.monotonic() + _timeout(context))
            if st.role != "leader" and not st.leader_raft_addr:
                raise RpcError(grpc.StatusCode.UNAVAILABLE, MSG_NO_LEADER)
        call = Call(Kind.MEMBERSHIP, "AddNode" if op == "add" else "RemoveNode")
        try:
            failure = self._node.change_membership(op, addr, _timeout(context))
        except TimeoutError as e:
            raise error_status(e, call) from None
        # A refusal says why: the strict reconfig check (gantry.consensus.pysyncobj_compat).
        if failure is not None:
            raise error_status(failure, call)

    def _check_joiner(self, addr: str, members: set[str], st: pb.StatusResponse,
                      timeout_s: float) -> None:
        """Refuse (FAILED_PRECONDITION, or ALREADY_EXISTS for another name of a member) unless
        the node at ``addr`` answers as a Gantry node whose ``--raft-addr`` is ``addr``, which
        was started to join this cluster (its configuration names a current member), follows
        no leader outside it, and holds no Raft history but this cluster's: an empty log, or
        one whose last entry (index, term, digest) this node's log holds — for a log ending at
        no-ops, its last other entry, with each no-op after it one here at the same index and
        term — at a term no newer than this node's. Every member counts toward quorum once its
        entry is appended, so a wrong one can stall every write, and one carrying another
        cluster's log can win an election and replace this cluster's committed entries (a
        new-user trial, 2026-12-03). etcd checks a new member's peer URL and cluster ID
        likewise."""
        try:
            who = self._node.identify(addr, min(PROBE_TIMEOUT_S, max(0.1, timeout_s)))
        except ProbeError as e:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           "no Gantry node answered at that Raft address",
                           error_info("JOINER_NOT_A_GANTRY_NODE", raft_addr=addr,
                                      seen=str(e))) from None
        if who.raft_addr != addr:
            if who.raft_addr in members:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, "node is already a member",
                               error_info("JOINER_IS_A_MEMBER", raft_addr=addr,
                                          seen=f"it is member {who.raft_addr}"))
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           "the node at that address has another --raft-addr: add it by that one",
                           error_info("JOINER_HAS_ANOTHER_ADDRESS", raft_addr=addr,
                                      seen=f"it answers as {who.raft_addr}"))
        others = set(who.members) - {addr}
        if not others & members:
            # Its stored configuration wins over --peers: one that ran as its own cluster (no
            # --peers, or --force-new-cluster) keeps it, and only an empty directory mends it.
            history = self._history_seen(who, st) if who.has_history else None
            seen = "its other members: " + (", ".join(sorted(others)) or "none")
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           "node was not started to join this cluster: restart it with the "
                           "current members as --peers, then add it" if history is None else
                           "node runs as another cluster: stop it, empty its data directory, "
                           "start it with the current members as --peers, then add it",
                           error_info("JOINER_NOT_JOINING", raft_addr=addr,
                                      seen=seen if history is None else f"{seen}; {history}"))
        if who.leader and who.leader not in members and who.leader != addr:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           "node follows the leader of another cluster",
                           error_info("JOINER_IN_ANOTHER_CLUSTER", raft_addr=addr,
                                      seen=f"it follows {who.leader}"))
        history = self._history_seen(who, st) if who.has_history else None
        if history is not None:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           "node holds a Raft history that is not this cluster's: stop it, "
                           "empty its data directory, start it again and add it",
                           error_info("JOINER_HAS_OTHER_HISTORY", raft_addr=addr, seen=history))

    def _history_seen(self, who: Identity, st: pb.StatusResponse) -> str | None:
        """What shows a joiner's Raft history is not this cluster's (the refusal's ``seen``), or
        None when it is this cluster's."""
        # A history is this cluster's only if its last entry is one this log holds, byte for
        # byte: the same (index, term) in another cluster's log means nothing, and a foreign
        # prefix that happened to match at the leader's first append would stay in the new
        # member's log and database. A compacted entry cannot be compared: refused. A no-op's
        # bytes are the same in every cluster, so a log ending at no-ops is compared at the last
        # entry before them, and each no-op after it must be one here at the same index and term.
        index, term, digest = who.last
        mine = self._node.log_entry(index)
        if mine is None and self._noops_after_a_command_here(who):
            mine = (term, digest)
        if who.term <= st.term and mine == (term, digest):
            return None
        compacted = (mine is None and index <= st.last_snapshot_index
                     or 0 < who.last_command[0] <= st.last_snapshot_index)
        if who.term > st.term:
            return f"its term {who.term} is newer than this cluster's {st.term}"
        if compacted:
            return (f"its log ends at index {index} (term {term}), which this cluster's log no "
                    "longer holds (compacted into its snapshot)")
        if who.noop_tail_truncated:
            return (f"its log ends at index {index} (term {term}) after more than "
                    f"{PROBE_MAX_NOOP_TAIL} no-ops in a row, too many to compare")
        return (f"its log ends at index {index} (term {term}), an entry this cluster's log does "
                "not hold")

    def _noops_after_a_command_here(self, who: Identity) -> bool:
        """Whether the joiner's log ends at no-ops that follow an entry this log holds byte for
        byte, each of them a no-op here at the same log index and term: then its whole tail is
        this log's, and so is what its database applied."""
        c_index, c_term, c_digest = who.last_command
        tail = who.noop_tail
        if not c_index or not tail or tail[-1][0] != who.last[0]:
            return False
        if [i for i, _ in tail] != list(range(c_index + 1, c_index + 1 + len(tail))):
            return False
        if self._node.log_entry(c_index) != (c_term, c_digest):
            return False
        return self._node.log_noops_match(list(tail))

    def add_node(self, req: Any, context: grpc.ServicerContext) -> pb.AddNodeResponse:
        self._change("add", req, context)
        return pb.AddNodeResponse()

    def remove_node(self, req: Any, context: grpc.ServicerContext) -> pb.RemoveNodeResponse:
        self._change("remove", req, context)
        return pb.RemoveNodeResponse()

    def _await_leader(self, deadline: float) -> pb.StatusResponse:
        """This node's status once it is the leader or knows the leader's gRPC address, or at
        ``min(deadline, now + LEADER_WAIT_S)``. Right after an election a follower may not have
        heard from the new leader yet, or not applied its address announcement: a short wait
        instead of a spurious ``UNAVAILABLE "no leader"``."""
        until = min(deadline, time.monotonic() + LEADER_WAIT_S)
        while True:
            st = self._node.cluster_status()
            if st.role == "leader" or st.leader_grpc_addr or time.monotonic() >= until:
                return st
            time.sleep(LEADER_POLL_S)

    def transfer(self, req: Any, context: grpc.ServicerContext) -> pb.TransferLeadershipResponse:
        addr = _addr(req, required=False)
        st = self._node.cluster_status()
        members = {m.raft_addr for m in st.members}
        if addr:
            addr = _member_named(addr, members)
            req = pb.TransferLeadershipRequest(raft_addr=addr)  # the name the leader knows
        if addr and addr not in members:
            raise RpcError(grpc.StatusCode.NOT_FOUND, "node is not a member")
        if addr and addr == st.leader_raft_addr:
            return pb.TransferLeadershipResponse(new_leader_raft_addr=addr)
        deadline = time.monotonic() + _timeout(context)
        if st.role != "leader" and not st.leader_grpc_addr:
            st = self._await_leader(deadline)
            if addr and addr == st.leader_raft_addr:
                return pb.TransferLeadershipResponse(new_leader_raft_addr=addr)
        while st.role != "leader":
            # Any node takes the request: a follower passes it to the leader.
            if not st.leader_grpc_addr:  # seen in the status: no consensus error, no ErrorInfo
                raise RpcError(grpc.StatusCode.UNAVAILABLE, MSG_NO_LEADER)
            remaining = deadline - time.monotonic()
            attempt = min(remaining, FORWARD_ATTEMPT_S)
            with self._peer.channel(st.leader_grpc_addr) as ch:
                try:
                    resp: pb.TransferLeadershipResponse = admin_pb2_grpc.ClusterServiceStub(
                        ch).TransferLeadership(req, timeout=max(0.1, attempt),
                                               metadata=self._peer.metadata())
                    return resp
                except grpc.RpcError as e:
                    silent = e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                          grpc.StatusCode.UNAVAILABLE)
                    if not silent:
                        raise RpcError(e.code(), e.details() or "transfer failed") from None
                    if attempt >= remaining - 0.1:
                        raise RpcError(grpc.StatusCode.UNAVAILABLE,
                                       f"the leader ({st.leader_grpc_addr}) did not answer: "
                                       "retry") from None
            # The leader this node knew did not answer (frozen, cut off, gone): ask whoever
            # leads now — an election has likely made another member leader meanwhile.
            st = self._await_leader(deadline)
            if addr and addr == st.leader_raft_addr:
                return pb.TransferLeadershipResponse(new_leader_raft_addr=addr)
        if len(st.members) < 2:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           "no other members: a one-member cluster has no one to transfer to")
        try:
            new = self._node.transfer_leadership(addr, max(0.0, deadline - time.monotonic()))
        except RequestDenied as e:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"leadership transfer refused: {e.why}") from None
        if not new:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           "no caught-up follower took over; retry when followers are in sync")
        return pb.TransferLeadershipResponse(new_leader_raft_addr=new)

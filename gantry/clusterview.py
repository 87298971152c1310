"""One view of the cluster, for ``gantry status --cluster``.

- **Purpose.** Ask one node for the member list (``ClusterService.Status``), then ask every
  member for its own Status over the gRPC address it announced through the log, and put the
  answers in one table: node id, Raft and gRPC address, role, term, commit index, applied index,
  lag behind the leader's commit index, SERVING or not, reachable or not.
- **Invariant.** Every member is a row, whatever happens: a member whose gRPC address is unknown,
  that refuses the connection, fails the call or does not answer within a short timeout
  (:data:`MEMBER_TIMEOUT_S`) is *unreachable*, with the reason — never a traceback. Each row holds
  what the member says about itself; the asked node contributes only the member list and the
  addresses.
- **Trade-off.** One round of parallel calls, not a consistent snapshot: the members answer at
  slightly different moments, so a few entries of lag on a busy cluster are normal. Lag is the
  leader's commit index minus the member's applied index (unknown while no leader answered).

JSON (:meth:`ClusterView.to_dict`, :func:`message_to_dict`) uses the proto field names and
prints integers as numbers (protobuf's ``MessageToJson`` writes int64 as strings, in camelCase).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from gantry.pb.admin.v1 import admin_pb2 as pb
from gantry.pb.admin.v1 import admin_pb2_grpc
from gantry.tlsconfig import PLAINTEXT, ClientConfig

#: The longest (seconds) a member gets to answer before it shows as unreachable.
MEMBER_TIMEOUT_S = 2.0

#: ``gantry status --cluster`` exit code when a member is unreachable or not SERVING.
EXIT_UNHEALTHY = 3


def message_to_dict(msg: Message) -> dict[str, Any]:
    """Every field of ``msg`` (also unset ones) by its proto name; integers stay numbers."""
    out: dict[str, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        value = getattr(msg, f.name)
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_repeated(f):
                out[f.name] = [message_to_dict(v) for v in value]
            else:
                out[f.name] = message_to_dict(value) if msg.HasField(f.name) else None
        else:
            out[f.name] = [_scalar(f, v) for v in value] if _is_repeated(f) else _scalar(f, value)
    return out


def _scalar(f: FieldDescriptor, value: Any) -> Any:
    if f.type == FieldDescriptor.TYPE_ENUM:
        known = f.enum_type.values_by_number
        return known[value].name if value in known else value
    if f.type == FieldDescriptor.TYPE_BYTES:
        return value.hex()
    return value


def _is_repeated(f: FieldDescriptor) -> bool:
    is_repeated = getattr(f, "is_repeated", None)  # protobuf ≥ 5.29; `label` is deprecated
    if isinstance(is_repeated, bool):
        return is_repeated
    return bool(f.label == FieldDescriptor.LABEL_REPEATED)


@dataclass
class MemberRow:
    """One member as it described itself (None: unknown, it did not answer)."""

    node_id: str
    raft_addr: str
    grpc_addr: str
    role: str | None = None
    term: int | None = None
    commit_index: int | None = None
    applied_index: int | None = None
    last_applied: int | None = None
    lag: int | None = None
    serving: bool | None = None
    reachable: bool = False
    error: str = ""  # why it is unreachable


@dataclass
class ClusterView:
    """The asked node's member list, each member's own answer, and the leader's commit index."""

    asked: str
    members: list[MemberRow]
    leader_raft_addr: str | None
    leader_commit_index: int | None

    @property
    def healthy(self) -> bool:
        """Every member answered and is SERVING."""
        return all(m.reachable and m.serving for m in self.members)

    def exit_code(self) -> int:
        return 0 if self.healthy else EXIT_UNHEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {"asked": self.asked, "healthy": self.healthy,
                "leader_raft_addr": self.leader_raft_addr,
                "leader_commit_index": self.leader_commit_index,
                "members": [{**dataclasses.asdict(m), "error": m.error or None}  # null: none
                            for m in self.members]}

    def table(self) -> str:
        """The text form: one line per member, then the problems, then a summary."""
        head = ("NODE", "RAFT", "GRPC", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "SERVING",
                "REACHABLE")
        rows = [head] + [(m.node_id or "-", m.raft_addr, m.grpc_addr or "-", _cell(m.role),
                          _cell(m.term), _cell(m.commit_index), _cell(m.applied_index),
                          _cell(m.lag), _yes_no(m.serving), _yes_no(m.reachable))
                         for m in self.members]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines += [f"{m.node_id or m.raft_addr}: {m.error}" for m in self.members if m.error]
        down = sum(not m.reachable for m in self.members)
        serving = sum(bool(m.serving) for m in self.members)
        leader = self.leader_raft_addr or "none answered"
        lines.append(f"{len(self.members)} members, {serving} SERVING, {down} unreachable; "
                     f"leader {leader}")
        return "\n".join(lines)


def _cell(v: object) -> str:
    return "-" if v is None else str(v)


def _yes_no(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


def ask_status(addr: str, timeout_s: float, client: ClientConfig = PLAINTEXT) -> pb.StatusResponse:
    """``ClusterService.Status`` of the node at gRPC ``addr`` (raises ``grpc.RpcError``), over
    ``client``'s TLS settings (Status needs no admin credentials)."""
    with client.channel(addr) as ch:
        resp = admin_pb2_grpc.ClusterServiceStub(ch).Status(pb.StatusRequest(), timeout=timeout_s)
    assert isinstance(resp, pb.StatusResponse)
    return resp


def _row(m: pb.Member, st: pb.StatusResponse | None, error: str) -> MemberRow:
    if st is None:
        return MemberRow(m.node_id, m.raft_addr, m.grpc_addr, reachable=False, error=error)
    if st.raft_addr != m.raft_addr:  # the address now belongs to another node
        return MemberRow(m.node_id, m.raft_addr, m.grpc_addr, reachable=False,
                         error=f"unreachable: {m.grpc_addr} answers as Raft {st.raft_addr}")
    return MemberRow(st.node_id or m.node_id, m.raft_addr, m.grpc_addr or st.grpc_addr,
                     reachable=True, role=st.role, term=st.term, commit_index=st.commit_index,
                     applied_index=st.applied_index, last_applied=st.last_applied,
                     serving=st.serving)


def _ask_member(m: pb.Member, timeout_s: float,
                client: ClientConfig = PLAINTEXT) -> tuple[pb.StatusResponse | None, str]:
    if not m.grpc_addr:
        return None, "unreachable: gRPC address unknown (not announced through the log yet)"
    try:
        return ask_status(m.grpc_addr, timeout_s, client), ""
    except grpc.RpcError as e:
        code = e.code()
        return None, f"unreachable: {code.name if code else 'UNKNOWN'}: {e.details()}"
    except Exception as e:  # noqa: BLE001 - a row, never a traceback (e.g. an unparsable address)
        return None, f"unreachable: {e}"


def build(asked: str, seed: pb.StatusResponse,
          answers: dict[str, tuple[pb.StatusResponse | None, str]]) -> ClusterView:
    """The view from the asked node's Status ``seed`` and ``answers`` by member Raft address
    (a member missing from ``answers`` is unreachable)."""
    rows = []
    for m in seed.members:
        st, error = (seed, "") if m.is_self else answers.get(m.raft_addr, (None, "unreachable"))
        rows.append(_row(m, st, error))
    leaders = [r for r in rows if r.role == "leader" and r.commit_index is not None]
    leader = max(leaders, key=lambda r: r.term or 0, default=None)  # a deposed one has a lower term
    commit = leader.commit_index if leader is not None else None
    for r in rows:
        if commit is not None and r.applied_index is not None:
            r.lag = max(0, commit - r.applied_index)
    return ClusterView(asked, rows, leader.raft_addr if leader else None, commit)


def collect(addr: str, timeout_s: float, member_timeout_s: float = MEMBER_TIMEOUT_S,
            client: ClientConfig = PLAINTEXT) -> ClusterView:
    """Ask the node at ``addr`` for the members (raises ``grpc.RpcError`` if it does not answer
    within ``timeout_s``), then every other member in parallel, each within ``member_timeout_s``,
    all over ``client``'s TLS settings."""
    seed = ask_status(addr, timeout_s, client)
    others = [m for m in seed.members if not m.is_self]
    each = min(timeout_s, member_timeout_s)
    answers: dict[str, tuple[pb.StatusResponse | None, str]] = {}
    if others:
        with ThreadPoolExecutor(max_workers=len(others), thread_name_prefix="status") as pool:
            for m, answer in zip(others, pool.map(lambda m: _ask_member(m, each, client), others),
                                 strict=True):
                answers[m.raft_addr] = answer
    return build(addr, seed, answers)

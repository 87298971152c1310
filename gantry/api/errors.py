"""gRPC errors with stable messages and packed details (google.rpc.Status, as upstream sends),
and the one table that decides them.

Handlers raise :class:`RpcError`; the service wrapper turns it into the call's status with
``grpc_status.rpc_status``. Any other exception becomes ``INTERNAL "internal error"`` on the wire
(no stack trace) and a logged exception on the node.

:data:`STATUSES` maps every domain outcome (:class:`~gantry.state.statemachine.Outcome`) and
every consensus error or deadline (:mod:`gantry.consensus.errors`, ``TimeoutError``), by what the
call was doing (:class:`Kind`), to ``(status code, stable message, detail builder)`` — etcd's
``toGRPCErrorMap``. :func:`outcome_error`, :func:`outcome_status` and :func:`error_status` are
the only ways the API turns one of them into a status. Request checks (validation, an admin
call's preconditions) are not outcomes: their handlers raise :func:`invalid_argument` or an
:class:`RpcError` where they decide. Codes, messages and details are API (DESIGN.md §1, the
README's status table): change none of them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gantry import diskspace
from gantry.consensus.errors import (
    ConsensusError,
    Discarded,
    NoLeader,
    NoSpace,
    NotCommitted,
    NotLeader,
    OutcomeUnknown,
    Overloaded,
    RequestDenied,
    Stopping,
)
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.state.statemachine import ApplyResult, Outcome

#: google.rpc.ErrorInfo domain for Gantry's own details.
DOMAIN = "gantry.blockcloset"


class RpcError(Exception):
    """A non-OK gRPC outcome: ``code`` (grpc.StatusCode), stable ``message``, detail messages."""

    def __init__(self, code: grpc.StatusCode, message: str, *details: Message) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_status(self) -> grpc.Status:
        st = status_pb2.Status(code=self.code.value[0], message=self.message)
        for d in self.details:
            a = any_pb2.Any()
            a.Pack(d)
            st.details.append(a)
        return rpc_status.to_status(st)


def invalid_argument(message: str, field: str) -> RpcError:
    """``INVALID_ARGUMENT message`` with a ``google.rpc.BadRequest`` naming ``field``."""
    br = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field,
                                                                      description=message)]
    )
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message, br)


def error_info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    """A ``google.rpc.ErrorInfo`` detail in Gantry's domain."""
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)


INTERNAL = RpcError(grpc.StatusCode.INTERNAL, "internal error")
assert code_pb2.INTERNAL == grpc.StatusCode.INTERNAL.value[0]


# -- the status table --

class Kind(enum.Enum):
    """What a call was doing when an error ended it: the same consensus error or deadline means
    something else to a write, a read and a membership change."""

    WRITE = "write"  # proposing this call's Command and waiting for it to apply here
    READ = "read"  # a read's consistency wait: read index, applied index
    MEMBERSHIP = "membership"  # an admin membership change through the log


def _no_addr(raft_addr: str) -> str:
    return ""


@dataclass(frozen=True)
class Call:
    """What a detail builder may need of the call a status answers: its :class:`Kind`, its
    method name (``"PlanWrite"``, …) and ``grpc_addr_of(raft_addr)``, the gRPC address a node
    announced ("" when unknown)."""

    kind: Kind = Kind.WRITE
    method: str = ""
    grpc_addr_of: Callable[[str], str] = _no_addr


class IndexNotApplied(TimeoutError):
    """A read-your-writes wait (``x-gantry-min-log-index``) ended before this node applied
    log index ``index``."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


#: ``(subject, call) -> details``: the packed details of a status; the subject is the
#: ApplyResult of an outcome or the exception.
DetailBuilder = Callable[[Any, Call], tuple[Message, ...]]


def _no_details(subject: Any, call: Call) -> tuple[Message, ...]:
    return ()


@dataclass(frozen=True)
class Rule:
    """One row of :data:`STATUSES`: the status ``code``, the stable ``message`` (a few carry a
    ``{s.field}`` of the subject: SQLite's text, a refusal's reason, a log index) and the
    ``details`` builder."""

    code: grpc.StatusCode
    message: str
    details: DetailBuilder = _no_details

    def error(self, subject: Any, call: Call) -> RpcError:
        """The RpcError for ``subject`` (an ApplyResult or an exception) in ``call``."""
        return RpcError(self.code, self.message.format(s=subject), *self.details(subject, call))


def _consensus_info(e: ConsensusError, call: Call) -> tuple[Message, ...]:
    """ErrorInfo: the error's reason; the leader's Raft and gRPC addresses when known."""
    meta = {}
    if e.leader_hint:
        meta["leader_raft_addr"] = e.leader_hint
        grpc_addr = call.grpc_addr_of(e.leader_hint)
        if grpc_addr:
            meta["leader"] = grpc_addr
    return (error_info(e.reason, **meta),)


def _ownership_conflict(r: ApplyResult, call: Call) -> tuple[Message, ...]:
    return (svc.BucketOwnershipConflict(reason=r.reason, bucket=r.bucket),)  # type: ignore[arg-type]


def _plan_write_error(r: ApplyResult, call: Call) -> tuple[Message, ...]:
    return (svc.PlanWriteError(reason=r.reason, bucket=r.bucket),)  # type: ignore[arg-type]


def _bucket_not_found(r: ApplyResult, call: Call) -> tuple[Message, ...]:
    """PlanWrite reports it as upstream does (PlanWriteError); every other call, read or write,
    with ErrorInfo BUCKET_NOT_FOUND."""
    if call.method == "PlanWrite":
        return _plan_write_error(r, call)
    return (error_info("BUCKET_NOT_FOUND", bucket=r.bucket),)


def _bucket_not_empty(r: ApplyResult, call: Call) -> tuple[Message, ...]:
    return (error_info("BucketNotEmpty", bucket=r.bucket),)


def _cradle_info(reason: str) -> DetailBuilder:
    def build(r: ApplyResult, call: Call) -> tuple[Message, ...]:
        return (error_info(reason, address=r.cradle_address),)

    return build


_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED
_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

MSG_NO_LEADER = "no leader"
MSG_NODE_STOPPING = "node stopping"
MSG_LEADER_CHANGED = "write not committed: leader changed"
MSG_OUTCOME_UNKNOWN = "write outcome unknown: retry with the same x-request-id"
MSG_NOT_COMMITTED = "write not committed: retry"
MSG_READ_RETRY = "read not confirmed by a leader (leader changed): retry"

#: Every status for a domain outcome or a consensus error. Keys: an Outcome (whatever the call),
#: or ``(Kind, exception class)``, looked up along the exception's MRO (the most specific class
#: first). "Not committed" messages are safe to retry blindly; "outcome unknown" ones with the
#: same x-request-id.
STATUSES: dict[Outcome | tuple[Kind, type[BaseException]], Rule] = {
    # Domain outcomes: an ApplyResult, or what a query found.
    Outcome.BUCKET_EXISTS: Rule(grpc.StatusCode.ALREADY_EXISTS, "bucket already exists",
                                _ownership_conflict),
    Outcome.BUCKET_NOT_FOUND: Rule(grpc.StatusCode.NOT_FOUND, "bucket not found",
                                   _bucket_not_found),
    Outcome.NO_CRADLES: Rule(_PRECONDITION, "no cradle servers available", _plan_write_error),
    Outcome.OBJECT_NOT_FOUND: Rule(grpc.StatusCode.NOT_FOUND, "object not found"),
    Outcome.OBJECT_NOT_PENDING: Rule(_PRECONDITION, "object is not pending"),
    Outcome.BUCKET_NOT_EMPTY: Rule(_PRECONDITION, "BucketNotEmpty", _bucket_not_empty),
    Outcome.CONSTRAINT_VIOLATED: Rule(_PRECONDITION, "constraint violated: {s.detail}"),
    Outcome.VALUE_OUT_OF_RANGE: Rule(grpc.StatusCode.INVALID_ARGUMENT, "value out of range"),
    Outcome.REQUEST_ID_REUSED: Rule(grpc.StatusCode.INVALID_ARGUMENT,
                                    "x-request-id reused for a different request"),
    Outcome.CRADLE_NOT_FOUND: Rule(grpc.StatusCode.NOT_FOUND, "cradle server not found",
                                   _cradle_info("CRADLE_SERVER_NOT_FOUND")),
    Outcome.CRADLE_HAS_LIVE_OBJECTS: Rule(_PRECONDITION, "cradle server has live objects",
                                          _cradle_info("CRADLE_SERVER_HAS_LIVE_OBJECTS")),
    # A write: its proposal failed, or it was not applied here before the deadline.
    (Kind.WRITE, NoLeader): Rule(_UNAVAILABLE, MSG_NO_LEADER, _consensus_info),
    (Kind.WRITE, NotLeader): Rule(_UNAVAILABLE, MSG_LEADER_CHANGED, _consensus_info),
    (Kind.WRITE, Discarded): Rule(_UNAVAILABLE, MSG_LEADER_CHANGED, _consensus_info),
    (Kind.WRITE, Overloaded): Rule(_UNAVAILABLE, "write not committed: node overloaded",
                                   _consensus_info),
    (Kind.WRITE, RequestDenied): Rule(_UNAVAILABLE, "write not committed: request denied",
                                      _consensus_info),
    (Kind.WRITE, NoSpace): Rule(grpc.StatusCode.RESOURCE_EXHAUSTED, diskspace.MESSAGE,
                                _consensus_info),
    (Kind.WRITE, OutcomeUnknown): Rule(_UNAVAILABLE, MSG_OUTCOME_UNKNOWN, _consensus_info),
    # (a new kind of "not committed" without a row of its own: still safe to retry blindly)
    (Kind.WRITE, NotCommitted): Rule(_UNAVAILABLE, MSG_NOT_COMMITTED, _consensus_info),
    # (any other consensus error: not known to have failed, so its outcome is unknown)
    (Kind.WRITE, ConsensusError): Rule(_UNAVAILABLE, MSG_OUTCOME_UNKNOWN, _consensus_info),
    (Kind.WRITE, Stopping): Rule(_UNAVAILABLE, MSG_NODE_STOPPING, _consensus_info),
    (Kind.WRITE, TimeoutError): Rule(_DEADLINE,
                                     "write not applied before the deadline; outcome unknown"),
    # A read's consistency wait: no write is involved, so any lost read index is one message.
    (Kind.READ, NoLeader): Rule(_UNAVAILABLE, MSG_NO_LEADER, _consensus_info),
    (Kind.READ, Stopping): Rule(_UNAVAILABLE, MSG_NODE_STOPPING, _consensus_info),
    (Kind.READ, ConsensusError): Rule(_UNAVAILABLE, MSG_READ_RETRY, _consensus_info),
    (Kind.READ, IndexNotApplied): Rule(
        _DEADLINE, "log index {s.index} not applied on this node before the deadline"),
    (Kind.READ, TimeoutError): Rule(_DEADLINE, "read index not reached before the deadline"),
    (Kind.READ, Exception): Rule(_UNAVAILABLE, MSG_READ_RETRY),
    # An admin membership change.
    (Kind.MEMBERSHIP, RequestDenied): Rule(_PRECONDITION, "membership change refused: {s.why}"),
    (Kind.MEMBERSHIP, ConsensusError): Rule(_UNAVAILABLE, "membership change not committed"),
    (Kind.MEMBERSHIP, TimeoutError): Rule(_DEADLINE,
                                          "membership change not applied before the deadline"),
}


def outcome_error(result: ApplyResult, call: Call) -> RpcError:
    """The status for a non-OK ApplyResult. Raises KeyError for an OK one."""
    return STATUSES[result.outcome].error(result, call)


def outcome_status(outcome: Outcome, call: Call | None = None, **fields: Any) -> RpcError:
    """The status for a domain outcome a query found or a handler met before proposing (no entry
    applied), e.g. ``outcome_status(Outcome.BUCKET_NOT_FOUND, bucket=name)``; ``fields`` are
    ApplyResult fields the detail builder reads."""
    return outcome_error(ApplyResult(outcome, **fields), call or Call(Kind.READ))


def error_status(error: BaseException, call: Call) -> RpcError:
    """The status for ``error`` (a consensus error, a deadline, or for a read any exception)
    ending ``call``. Raises LookupError when the table has no row for it (the caller caught
    something it should not have: INTERNAL on the wire)."""
    for cls in type(error).__mro__:
        rule = STATUSES.get((call.kind, cls))
        if rule is not None:
            return rule.error(error, call)
    raise LookupError(f"no status for {type(error).__name__} in a {call.kind.value}") from error

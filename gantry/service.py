"""``gantry.service.v1.GantryService`` handlers: validate, then read locally or propose a Command.

Upstream BlockCloset behaviour is kept: the order of checks, status codes, messages and error
details (``BucketOwnershipConflict``, ``PlanWriteError``) are stable API (see DESIGN.md §1).
Writes return after the entry is committed and applied on this node; the log index of the write
travels back in the ``x-gantry-log-index`` trailing metadata.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple, Protocol

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from gantry import commands, validation
from gantry.errors import RpcError, error_info, invalid_argument
from gantry.ids import rfc3339_us
from gantry.pb.bucket.v1 import bucket_pb2
from gantry.pb.command.v1 import command_pb2
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.write_plan.v1 import write_plan_pb2
from gantry.proposals import ProposalError
from gantry.statemachine import ApplyResult, Code
from gantry.store import ReadPool

log = structlog.get_logger("gantry.rpc")

SERVICE_NAME = "gantry.service.v1.GantryService"
LOG_INDEX_KEY = "x-gantry-log-index"
REQUEST_ID_KEY = "x-request-id"
#: Longest a write waits for commit + apply when the client set no deadline (seconds).
DEFAULT_WRITE_TIMEOUT_S = 10.0
#: Object ids are 26-character ULIDs; anything far longer cannot exist and is not proposed.
MAX_OBJECT_ID_LEN = 64

_MSG_MALFORMED = "malformed request"


class Proposer(Protocol):
    """Proposes a Command through Raft and waits until this node applied it.

    Returns ``(ApplyResult, log index)``. Raises :class:`~gantry.proposals.ProposalError` when
    consensus failed and ``concurrent.futures.TimeoutError`` after ``timeout_s`` seconds.
    """

    def __call__(self, command: command_pb2.Command, timeout_s: float) -> tuple[ApplyResult, int]:
        ...


class _Malformed:
    """Stands in for a request whose bytes did not parse; the handler answers INVALID_ARGUMENT."""


MALFORMED = _Malformed()


def _deserializer(cls: type[Message]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        msg = cls()
        try:
            msg.ParseFromString(data)
        except (DecodeError, ValueError):
            return MALFORMED
        return msg

    return parse


def _serializer(msg: Message) -> bytes:
    return msg.SerializeToString()


def _request_id(context: grpc.ServicerContext) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == REQUEST_ID_KEY:
            return str(v)[:128]
    return ""


class GantryService:
    """The four upstream RPCs. ``reads`` serves queries; ``propose`` writes through Raft."""

    def __init__(self, reads: ReadPool, propose: Proposer, app_env: str = "production") -> None:
        self._reads = reads
        self._propose = propose
        self._app_env = app_env

    # -- wiring --
    def generic_handler(self) -> grpc.GenericRpcHandler:
        """A handler for grpc.Server that logs one line per RPC and never leaks INTERNAL details."""
        methods: dict[str, tuple[Callable[..., Any], type[Message], type[Message]]] = {
            "CreateBucket": (self.create_bucket, svc.CreateBucketRequest, svc.CreateBucketResponse),
            "ListBuckets": (self.list_buckets, svc.ListBucketsRequest, svc.ListBucketsResponse),
            "PlanWrite": (self.plan_write, svc.PlanWriteRequest, svc.PlanWriteResponse),
            "CommitObject": (self.commit_object, svc.CommitObjectRequest,
                             svc.CommitObjectResponse),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    rpc_wrapper(SERVICE_NAME, name, fn),
                    request_deserializer=_deserializer(req),
                    response_serializer=_serializer,
                )
                for name, (fn, req, resp) in methods.items()
            },
        )

    # -- helpers --
    def _write(self, context: grpc.ServicerContext, cmd: command_pb2.Command) -> ApplyResult:
        remaining = context.time_remaining()
        # No client deadline shows up as None or as an enormous number of seconds.
        if remaining is None or remaining > DEFAULT_WRITE_TIMEOUT_S:
            timeout = DEFAULT_WRITE_TIMEOUT_S
        else:
            timeout = max(0.0, remaining - 0.005)
        try:
            result, index = self._propose(cmd, timeout)
        except FutureTimeout:
            raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           "write not applied before the deadline; outcome unknown") from None
        except ProposalError as e:
            meta = {}
            if e.leader:
                meta["leader_raft_addr"] = e.leader
                grpc_addr = self._leader_grpc_addr(e.leader)
                if grpc_addr:
                    meta["leader"] = grpc_addr
            raise RpcError(grpc.StatusCode.UNAVAILABLE, unavailable_message(e.reason),
                           error_info(e.reason, **meta)) from None
        context.set_trailing_metadata(((LOG_INDEX_KEY, str(index)),))
        return result

    def _leader_grpc_addr(self, raft_addr: str) -> str:
        try:
            row = self._reads.conn().execute(
                "SELECT grpc_addr FROM cluster_nodes WHERE raft_addr = ?", (raft_addr,)).fetchone()
        except Exception:  # best effort: the error is still UNAVAILABLE without it
            return ""
        return str(row[0]) if row else ""

    # -- RPCs --
    def create_bucket(self, req: Any, context: grpc.ServicerContext) -> svc.CreateBucketResponse:
        if req is MALFORMED:
            raise invalid_argument(_MSG_MALFORMED, "")
        err = validation.bucket_name_error(req.name)
        if err:
            raise invalid_argument(err, "name")
        res = self._write(context, commands.create_bucket(req.name, _request_id(context)))
        if res.code == Code.ALREADY_EXISTS:
            raise RpcError(
                grpc.StatusCode.ALREADY_EXISTS,
                res.message,
                svc.BucketOwnershipConflict(reason=res.reason, bucket=res.bucket),  # type: ignore[arg-type]
            )
        _raise_unless_ok(res)
        return svc.CreateBucketResponse(
            bucket=bucket_pb2.Bucket(name=res.name, created_at_rfc3339=rfc3339_us(res.created_at_us))
        )

    def list_buckets(self, req: Any, context: grpc.ServicerContext) -> svc.ListBucketsResponse:
        if req is MALFORMED:
            raise invalid_argument(_MSG_MALFORMED, "")
        rows = self._reads.conn().execute(
            "SELECT name, created_at FROM buckets ORDER BY created_at, id"
        ).fetchall()
        return svc.ListBucketsResponse(
            buckets=[bucket_pb2.Bucket(name=n, created_at_rfc3339=rfc3339_us(c)) for n, c in rows]
        )

    def plan_write(self, req: Any, context: grpc.ServicerContext) -> svc.PlanWriteResponse:
        if req is MALFORMED:
            raise invalid_argument(_MSG_MALFORMED, "")
        err = validation.size_error(req.size)
        if err:
            raise invalid_argument(err, "size")
        if validation.bucket_name_error(req.bucket):
            raise invalid_argument(validation.INVALID_BUCKET_NAME, "bucket")
        if validation.key_error(req.key):
            raise invalid_argument(validation.INVALID_KEY_NAME, "key")
        # The storage server is chosen here, before proposing, so apply stays deterministic.
        ids = [r[0] for r in self._reads.conn().execute("SELECT id FROM cradle_servers")]
        cradle = random.choice(ids) if ids else ""
        cmd = commands.plan_write(req.bucket, req.key, req.size, cradle, _request_id(context))
        res = self._write(context, cmd)
        if res.code in (Code.NOT_FOUND, Code.FAILED_PRECONDITION) and res.reason:
            code = (grpc.StatusCode.NOT_FOUND if res.code == Code.NOT_FOUND
                    else grpc.StatusCode.FAILED_PRECONDITION)
            raise RpcError(code, res.message, svc.PlanWriteError(reason=res.reason,  # type: ignore[arg-type]
                                                                 bucket=res.bucket))
        _raise_unless_ok(res)
        return svc.PlanWriteResponse(
            write_plan=write_plan_pb2.WritePlan(object_id=res.object_id,
                                                cradle_address=res.cradle_address)
        )

    def commit_object(self, req: Any, context: grpc.ServicerContext) -> svc.CommitObjectResponse:
        if req is MALFORMED:
            raise invalid_argument(_MSG_MALFORMED, "")
        if req.size <= 0:
            raise invalid_argument(validation.INVALID_SIZE, "size")
        if not req.object_id:
            raise invalid_argument(validation.INVALID_OBJECT_ID, "object_id")
        if validation.last_modified_error(req.last_modified_ms):
            raise invalid_argument(validation.INVALID_LAST_MODIFIED_MS, "last_modified_ms")
        if len(req.object_id) > MAX_OBJECT_ID_LEN:
            raise RpcError(grpc.StatusCode.NOT_FOUND, "object not found")
        cmd = commands.commit_object(req.object_id, req.size, req.last_modified_ms,
                                     _request_id(context))
        _raise_unless_ok(self._write(context, cmd))
        return svc.CommitObjectResponse()


#: Stable UNAVAILABLE messages by pysyncobj failure reason. "Not committed" reasons are safe to
#: retry blindly; "outcome unknown" ones are safe to retry with the same x-request-id.
_UNAVAILABLE = {
    "MISSING_LEADER": "no leader",
    "NOT_LEADER": "write not committed: leader changed",
    "DISCARDED": "write not committed: leader changed",
    "QUEUE_FULL": "write not committed: node overloaded",
    "REQUEST_DENIED": "write not committed: request denied",
    "NODE_STOPPING": "node stopping",
}
MSG_OUTCOME_UNKNOWN = "write outcome unknown: retry with the same x-request-id"


def unavailable_message(reason: str) -> str:
    """The stable UNAVAILABLE message for a pysyncobj failure reason."""
    return _UNAVAILABLE.get(reason, MSG_OUTCOME_UNKNOWN)


def _raise_unless_ok(res: ApplyResult) -> None:
    if res.code == Code.OK:
        return
    code = {
        Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
        Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
        Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
        Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    }.get(res.code, grpc.StatusCode.INTERNAL)
    raise RpcError(code, res.message)


class _Status(NamedTuple):
    """A grpc.Status (code, details, trailing_metadata) for abort_with_status."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def rpc_wrapper(service: str, method: str, fn: Callable[[Any, grpc.ServicerContext], Any]
                ) -> Callable[[Any, grpc.ServicerContext], Any]:
    """Wrap a handler: map :class:`RpcError` to the status, any other exception to INTERNAL,
    and log one ``rpc_finished`` line (grpc.service, grpc.method, grpc.code, duration_ms, peer,
    request_id)."""

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        message = ""
        try:
            return fn(request, context)
        except RpcError as e:
            code, message = e.code, e.message
            status = e.to_status()
            already = tuple(context.trailing_metadata() or ())  # e.g. the write's log index
            if already:
                status = _Status(status.code, status.details,
                                 tuple(status.trailing_metadata) + already)
            context.abort_with_status(status)
        except Exception:
            code, message = grpc.StatusCode.INTERNAL, "internal error"
            log.exception("rpc_failed", **{"grpc.service": service, "grpc.method": method})
            context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            fields = {
                "grpc.service": service,
                "grpc.method": method,
                "grpc.code": code.name,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
                "peer": context.peer(),
            }
            rid = _request_id(context)
            if rid:
                fields["request_id"] = rid
            if message:
                fields["message"] = message
            log.info("rpc_finished", **fields)

    return handler

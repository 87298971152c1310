"""gRPC errors with stable messages and packed details (google.rpc.Status, as upstream sends).

Handlers raise :class:`RpcError`; the service wrapper turns it into the call's status with
``grpc_status.rpc_status``. Any other exception becomes ``INTERNAL "internal error"`` on the wire
(no stack trace) and a logged exception on the node.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

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

"""Batch mutations: request checks, placement and replies of ``DeleteObjects`` and ``PutObjects``.

Purpose: many objects in one Raft log entry, applied in one transaction
(:func:`gantry.state.statemachine._delete_objects` / ``_put_objects``). Everything here is a pure
function of the request (and, for placement, of a read of ``cradle_servers``), so the gRPC
handlers in :mod:`gantry.api.service` stay thin: plan → ``self._write`` → reply.

Invariants:
- An item gets exactly the checks, in the order, and the stable message of its single-item RPC
  (``DeleteObject``; ``PlanWrite`` then ``CommitObject``). An item that fails them never enters
  the log; its result is rebuilt from the request, so a retried batch (same ``x-request-id``)
  answers with the original per-item outcomes: the applied items' from the request-id dedupe
  table, the refused ones from the same checks.
- Request-level problems (bucket name, item count, key bytes) refuse the whole call with
  ``INVALID_ARGUMENT`` before anything is proposed; an unknown bucket is decided on apply and
  refuses the whole call too (``NOT_FOUND "bucket not found"``, S3's NoSuchBucket).

Limits (bounded so one entry stays far below gRPC's 4 MiB message and applies in a bounded time):
:data:`MAX_DELETE_KEYS` keys per DeleteObjects (S3's limit; 1000 keys of at most 1024 bytes is
1 MiB), :data:`MAX_PUT_OBJECTS` objects and :data:`MAX_PUT_KEY_BYTES` bytes of keys per PutObjects.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from gantry import validation
from gantry.api.errors import STATUSES, Call, Kind, RpcError
from gantry.pb.command.v1 import command_pb2
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.state import commands
from gantry.state.statemachine import ApplyResult, ItemResult, Outcome

#: S3 DeleteObjects: "The request contains a list of up to 1000 keys"
#: (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html).
MAX_DELETE_KEYS = 1000
#: Objects per PutObjects call.
MAX_PUT_OBJECTS = 5000
#: UTF-8 bytes of all keys of one PutObjects call together (1 MiB): with ids and sizes the log
#: entry stays under ~1.5 MiB and the request under gRPC's 4 MiB.
MAX_PUT_KEY_BYTES = 1 << 20

#: Stable messages (INVALID_ARGUMENT) of the request-level checks; the BadRequest detail names
#: the field and says the limit.
EMPTY_BATCH = "EmptyBatch"
TOO_MANY_OBJECTS = "TooManyObjects"
BATCH_TOO_LARGE = "BatchTooLarge"

#: S3's error code for a key the single-key RPC would refuse with INVALID_ARGUMENT.
S3_INVALID_ARGUMENT = "InvalidArgument"


def request_digest(req: Message) -> bytes:
    """SHA-256 of the request's deterministic encoding: carried in the entry so that the
    request-id fingerprint covers the whole request, the items refused before proposing too
    (a retry must be the same request, not only the same accepted items)."""
    return hashlib.sha256(req.SerializeToString(deterministic=True)).digest()


def _refuse(message: str, field: str, description: str) -> RpcError:
    """``INVALID_ARGUMENT message`` with a BadRequest naming ``field`` and the limit."""
    br = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=field, description=description)])
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message, br)


def _check_bucket(bucket: str) -> None:
    if validation.bucket_name_error(bucket):
        raise _refuse(validation.INVALID_BUCKET_NAME, "bucket", validation.INVALID_BUCKET_NAME)


def _check_count(n: int, limit: int, field: str, method: str) -> None:
    if n == 0:
        raise _refuse(EMPTY_BATCH, field, f"{method} needs 1 to {limit} {field}")
    if n > limit:
        raise _refuse(TOO_MANY_OBJECTS, field,
                      f"at most {limit} {field} per {method} request, got {n}")


# -- DeleteObjects --

@dataclass(frozen=True)
class DeletePlan:
    """A checked DeleteObjectsRequest: every requested key in order, the validation message of
    each refused one by position, and S3's Quiet flag."""

    bucket: str
    keys: tuple[str, ...]
    refused: dict[int, str]
    quiet: bool
    request_sha256: bytes = b""

    def command(self, request_id: str = "") -> command_pb2.Command:
        """The log entry: the bucket and the keys that passed validation, in request order."""
        return commands.delete_objects(
            self.bucket, [k for i, k in enumerate(self.keys) if i not in self.refused], request_id,
            self.request_sha256)

    def response(self, result: ApplyResult) -> svc.DeleteObjectsResponse:
        """The reply for an OK apply result: each accepted key ``deleted`` (S3: a key with no
        object is reported deleted too), each refused key an ``error`` with S3's code
        ``InvalidArgument`` and the single-key RPC's message; in quiet mode errors only."""
        resp = svc.DeleteObjectsResponse()
        for i, key in enumerate(self.keys):
            msg = self.refused.get(i)
            if msg is not None:
                resp.errors.add(key=key, code=S3_INVALID_ARGUMENT, message=msg)
            elif not self.quiet:
                resp.deleted.add(key=key)
        return resp


def plan_delete_objects(req: svc.DeleteObjectsRequest) -> DeletePlan:
    """Check a DeleteObjectsRequest (S3 Multi-Object Delete).

    Order: bucket name (``INVALID_ARGUMENT "InvalidBucketName"``), then 1..1000 keys
    (``"EmptyBatch"`` / ``"TooManyObjects"``; S3 answers MalformedXML for both), then each key
    as ``DeleteObject`` checks it (``"InvalidKeyName"``: a per-key error, not a failed call).
    Raises :class:`~gantry.api.errors.RpcError` for the request-level checks."""
    _check_bucket(req.bucket)
    _check_count(len(req.keys), MAX_DELETE_KEYS, "keys", "DeleteObjects")
    keys = tuple(req.keys)
    refused = {}
    for i, k in enumerate(keys):
        err = validation.key_error(k)
        if err:
            refused[i] = err
    return DeletePlan(req.bucket, keys, refused, req.quiet, request_digest(req))


# -- PutObjects --

@dataclass(frozen=True)
class PutPlan:
    """A checked PutObjectsRequest: ``count`` entries; ``accepted`` the ``(position, key, size
    bytes, last_modified_ms)`` of those that passed validation, in request order; ``refused``
    the validation message of each other position."""

    bucket: str
    count: int
    accepted: tuple[tuple[int, str, int, int], ...]
    refused: dict[int, str]
    request_sha256: bytes = b""

    @property
    def sizes(self) -> list[int]:
        """Sizes (bytes) of the accepted objects, in order: what placement needs."""
        return [a[2] for a in self.accepted]

    def command(self, cradles: Sequence[str], request_id: str = "") -> command_pb2.Command:
        """The log entry: each accepted object with ``cradles[j]`` (a cradle server id, "" for
        none) and a fresh object ULID. Raises ValueError when ``cradles`` does not match."""
        if len(cradles) != len(self.accepted):
            raise ValueError(f"{len(cradles)} placements for {len(self.accepted)} objects")
        return commands.put_objects(
            self.bucket, [(k, s, m, c) for (_, k, s, m), c in zip(self.accepted, cradles, strict=True)],
            request_id, self.request_sha256)

    def response(self, result: ApplyResult) -> svc.PutObjectsResponse:
        """The reply for an OK apply result: one :class:`PutObjectsResult` per request entry, in
        order: a refused entry ``INVALID_ARGUMENT`` with its message; an accepted one its applied
        outcome (OK with object id and cradle address, or e.g. ``FAILED_PRECONDITION "no cradle
        servers available"``). Raises ValueError when the result does not hold one item per
        accepted entry (it answers another request)."""
        if len(result.items) != len(self.accepted):
            raise ValueError(f"{len(result.items)} results for {len(self.accepted)} objects")
        invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
        out = {pos: svc.PutObjectsResult(code=invalid, message=msg)
               for pos, msg in self.refused.items()}
        for (pos, *_), item in zip(self.accepted, result.items, strict=True):
            out[pos] = _put_result(item)
        return svc.PutObjectsResponse(results=[out[i] for i in range(self.count)])


_CALL = Call(Kind.WRITE, "PutObjects")


def _put_result(item: ItemResult) -> svc.PutObjectsResult:
    if item.outcome is Outcome.OK:
        return svc.PutObjectsResult(object_id=item.object_id, cradle_address=item.cradle_address)
    # The status the single RPC would answer for this outcome (STATUSES, e.g. NO_CRADLES).
    err = STATUSES[item.outcome].error(ApplyResult(item.outcome), _CALL)
    return svc.PutObjectsResult(code=err.code.value[0], message=err.message)


def _key_bytes(req: svc.PutObjectsRequest) -> int:
    return sum(len(o.key.encode("utf-8", "surrogatepass")) for o in req.objects)


def plan_put_objects(req: svc.PutObjectsRequest) -> PutPlan:
    """Check a PutObjectsRequest.

    Request-level, in order (``INVALID_ARGUMENT``, nothing proposed): bucket name
    (``"InvalidBucketName"``), 1..5000 objects (``"EmptyBatch"`` / ``"TooManyObjects"``), at most
    1 MiB of keys in UTF-8 (``"BatchTooLarge"``). Per entry, PlanWrite's checks then
    CommitObject's: size (``"InvalidSize"`` ≤ 0, ``"EntityTooLarge"`` > 5 GiB), key
    (``"InvalidKeyName"``), ``last_modified_ms`` (``"InvalidLastModifiedMs"``, Unix ms, 1 ..
    year 9999). Raises :class:`~gantry.api.errors.RpcError` for the request-level checks."""
    _check_bucket(req.bucket)
    _check_count(len(req.objects), MAX_PUT_OBJECTS, "objects", "PutObjects")
    n = _key_bytes(req)
    if n > MAX_PUT_KEY_BYTES:
        raise _refuse(BATCH_TOO_LARGE, "objects",
                      f"at most {MAX_PUT_KEY_BYTES} bytes of keys per PutObjects request, got {n}")
    accepted: list[tuple[int, str, int, int]] = []
    refused: dict[int, str] = {}
    size_error, key_error = validation.size_error, validation.key_error
    lm_error = validation.last_modified_error
    for pos, o in enumerate(req.objects):
        err = size_error(o.size) or key_error(o.key) or lm_error(o.last_modified_ms)
        if err:
            refused[pos] = err
        else:
            accepted.append((pos, o.key, o.size, o.last_modified_ms))
    return PutPlan(req.bucket, len(req.objects), tuple(accepted), refused, request_digest(req))


def place(conn: sqlite3.Connection, placeable_where: str, sizes: Sequence[int],
          choose: Callable[[list[str]], str] = random.choice) -> list[str]:
    """Choose a cradle server for each size (bytes), before proposing, as PlanWrite does: one
    at random among those ``placeable_where`` admits for that size (the SQL condition of
    :func:`gantry.api.service.placeable_where`, whose ``?`` is the size); "" when none.

    One query with the smallest size admits every server any size could use; a server of
    unknown free space (``available_bytes < 0``) is among them only when the condition allows
    it, and then for every size, as it would be per object."""
    if not sizes:
        return []
    servers = conn.execute("SELECT id, available_bytes FROM cradle_servers WHERE "
                           + placeable_where + " ORDER BY id", (min(sizes),)).fetchall()
    by_size: dict[int, list[str]] = {}
    out = []
    for size in sizes:
        ids = by_size.get(size)
        if ids is None:
            ids = by_size[size] = [i for i, avail in servers if avail < 0 or avail >= size]
        out.append(choose(ids) if ids else "")
    return out

"""``gantry.service.v1.GantryService`` handlers: validate, then read locally or propose a Command.

Upstream BlockCloset behaviour is kept: the order of checks, status codes, messages and error
details (``BucketOwnershipConflict``, ``PlanWriteError``) are stable API (see DESIGN.md §1).
Handlers are coroutines on the gRPC event loop (:mod:`gantry.actors.frontdoor`): a write waits
for its proposal and a read for its consistency level as asyncio futures, resolved in batches
from the writer, so a waiting call holds no thread. At most :data:`MAX_IN_FLIGHT_WRITES` writes
wait for their proposal at once (what the 128 handler threads bounded before); more wait for a
slot within their deadline. Point reads run on the loop (microseconds of SQLite); the listings,
whose pages reach thousands of rows, run on the loop's executor.
Writes return after the entry is committed and applied on this node; the log index of the write
travels back in the ``x-gantry-log-index`` trailing metadata. Handlers decide request checks
(validation) themselves; every status for a domain outcome, a consensus error or a deadline comes
from :data:`gantry.api.errors.STATUSES`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import grpc
from google.protobuf.message import Message

from gantry import validation
from gantry.api import batch
from gantry.api.admin import SERVICE_NAME as ADMIN_SERVICE_NAME
from gantry.api.errors import (
    Call,
    Kind,
    RpcError,
    error_status,
    invalid_argument,
    outcome_error,
    outcome_status,
)
from gantry.api.reads import LOG_INDEX_KEY, timeout_of, wait_for_read_async
from gantry.api.rpc import build_handler, request_id
from gantry.consensus.errors import ConsensusError
from gantry.consensus.readindex import LoopReadIndex, ReadIndex
from gantry.db import ReadPool, Watermark
from gantry.ids import rfc3339_us
from gantry.pb.admin.v1 import admin_pb2
from gantry.pb.bucket.v1 import bucket_pb2
from gantry.pb.command.v1 import command_pb2
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.pb.write_plan.v1 import write_plan_pb2
from gantry.state import commands, listing
from gantry.state.statemachine import ApplyResult, Outcome

SERVICE_NAME = "gantry.service.v1.GantryService"
#: ListBuckets page size cap (S3's max-buckets limit); also the default.
MAX_BUCKETS_PAGE = 10_000
#: APP_ENV=development only: upstream's canned-error bucket names for front-end developers.
DEV_BUCKETS = frozenset({"bad", "taken", "forbidden", "no-cradles", "panic"})
#: Longest a write waits for commit + apply when the client set no deadline (seconds).
DEFAULT_WRITE_TIMEOUT_S = 10.0
#: Object ids are 26-character ULIDs; anything far longer cannot exist and is not proposed.
MAX_OBJECT_ID_LEN = 64
#: Writes waiting for their proposal at once; later ones wait for a slot (within their deadline).
MAX_IN_FLIGHT_WRITES = 128

#: The call context of a handler on the event loop.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class Proposer(Protocol):
    """Proposes a Command through Raft and waits (on the event loop) until this node applied it.

    Returns ``(ApplyResult, log index)``. Raises a :class:`~gantry.consensus.errors.ConsensusError`
    when consensus failed and ``TimeoutError`` after ``timeout_s`` seconds.
    """

    async def __call__(self, command: command_pb2.Command,
                       timeout_s: float) -> tuple[ApplyResult, int]:
        ...


def placeable_where(heartbeats: bool) -> str:
    """SQL condition on ``cradle_servers`` for "PlanWrite may place an object of ``?`` bytes
    here": registered, HEALTHY with room for it; with heartbeats off, also a server whose free
    space is not known (never reported)."""
    unknown_ok = "" if heartbeats else "available_bytes < 0 OR "
    return f"unregistered_at IS NULL AND status = 'HEALTHY' AND ({unknown_ok}available_bytes >= ?)"


class GantryService:
    """The upstream RPCs plus Gantry's additions. ``reads`` serves queries after the call's
    consistency level is met (:mod:`gantry.api.reads`); ``propose`` writes through Raft (a
    coroutine: :meth:`gantry.node.Node.propose_aio`). Serve it from one event loop."""

    def __init__(self, reads: ReadPool, propose: Proposer, app_env: str = "production",
                 watermark: Watermark | None = None, read_index: ReadIndex | None = None,
                 heartbeats: bool = False) -> None:
        self._reads = reads
        self._propose = propose
        self._dev = app_env == "development"
        self._watermark = watermark or Watermark()
        self._read_index = None if read_index is None else LoopReadIndex(read_index)
        self._write_slots = asyncio.Semaphore(MAX_IN_FLIGHT_WRITES)
        # With heartbeats on, a server is placeable once one has reported its free space.
        self._needs_report = heartbeats

    # -- wiring --
    def generic_handler(self) -> grpc.GenericRpcHandler:
        """A handler for grpc.Server that logs one line per RPC and never leaks INTERNAL details."""
        methods: dict[str, tuple[Callable[..., Any], type[Message], type[Message]]] = {
            "CreateBucket": (self.create_bucket, svc.CreateBucketRequest, svc.CreateBucketResponse),
            "ListBuckets": (self.list_buckets, svc.ListBucketsRequest, svc.ListBucketsResponse),
            "PlanWrite": (self.plan_write, svc.PlanWriteRequest, svc.PlanWriteResponse),
            "CommitObject": (self.commit_object, svc.CommitObjectRequest,
                             svc.CommitObjectResponse),
            "GetBucket": (self.get_bucket, svc.GetBucketRequest, svc.GetBucketResponse),
            "DeleteBucket": (self.delete_bucket, svc.DeleteBucketRequest,
                             svc.DeleteBucketResponse),
            "HeadObject": (self.head_object, svc.HeadObjectRequest, svc.HeadObjectResponse),
            "ListObjects": (self.list_objects, svc.ListObjectsRequest, svc.ListObjectsResponse),
            "DeleteObject": (self.delete_object, svc.DeleteObjectRequest,
                             svc.DeleteObjectResponse),
            "AbortObject": (self.abort_object, svc.AbortObjectRequest, svc.AbortObjectResponse),
            "RegisterCradleServer": (self.register_cradle_server, svc.RegisterCradleServerRequest,
                                     svc.RegisterCradleServerResponse),
            "ListCradleServers": (self.list_cradle_servers, svc.ListCradleServersRequest,
                                  svc.ListCradleServersResponse),
            "DeleteObjects": (self.delete_objects, svc.DeleteObjectsRequest,
                              svc.DeleteObjectsResponse),
            "PutObjects": (self.put_objects, svc.PutObjectsRequest, svc.PutObjectsResponse),
        }
        return build_handler(SERVICE_NAME, methods)

    def admin_handler(self) -> grpc.GenericRpcHandler:
        """The ``gantry.admin.v1.ClusterService`` methods that are metadata writes: served here,
        beside the other writes (gRPC finds a method handler by handler, so the membership
        methods in :mod:`gantry.api.admin` keep their own)."""
        methods: dict[str, tuple[Callable[..., Any], type[Message], type[Message]]] = {
            "UnregisterCradleServer": (self.unregister_cradle_server,
                                       admin_pb2.UnregisterCradleServerRequest,
                                       admin_pb2.UnregisterCradleServerResponse),
        }
        return build_handler(ADMIN_SERVICE_NAME, methods)

    # -- helpers --
    def _call(self, kind: Kind, method: str = "") -> Call:
        return Call(kind, method, self._leader_grpc_addr)

    async def _write(self, context: Context, cmd: command_pb2.Command,
                     method: str) -> ApplyResult:
        """Propose ``cmd`` and wait until it applied here; report its log index. Returns an OK
        result; raises RpcError (:data:`~gantry.api.errors.STATUSES`) for any other outcome,
        a consensus error or the deadline (also when no write slot freed up in time)."""
        call = self._call(Kind.WRITE, method)
        timeout = timeout_of(context, DEFAULT_WRITE_TIMEOUT_S)
        try:
            if self._write_slots.locked():  # MAX_IN_FLIGHT_WRITES wait already: queue for a slot
                t0 = time.monotonic()
                async with asyncio.timeout(timeout):
                    await self._write_slots.acquire()
                timeout = max(0.0, timeout - (time.monotonic() - t0))
            else:
                await self._write_slots.acquire()  # free: returns at once
            try:
                result, index = await self._propose(cmd, timeout)
            finally:
                self._write_slots.release()
        except (TimeoutError, ConsensusError) as e:
            raise error_status(e, call) from None
        context.set_trailing_metadata(((LOG_INDEX_KEY, str(index)),))
        if not result.ok:
            raise outcome_error(result, call)
        return result

    async def _read(self, context: Context) -> sqlite3.Connection:
        """Wait for the call's consistency level, report the index, return a read connection
        (this thread's: call it on the thread that runs the query)."""
        index = await self._read_wait(context)
        context.set_trailing_metadata(((LOG_INDEX_KEY, str(index)),))
        return self._reads.conn()

    async def _read_only(self, context: Context) -> None:
        """:meth:`_read` without the connection: for a query run on another thread."""
        index = await self._read_wait(context)
        context.set_trailing_metadata(((LOG_INDEX_KEY, str(index)),))

    async def _read_wait(self, context: Context) -> int:
        """The applied index a read may report once its consistency level is met."""
        if self._read_index is None:
            return self._watermark.value
        call = self._call(Kind.READ)
        return await wait_for_read_async(context, self._watermark, self._read_index,
                                         lambda e: error_status(e, call))

    def _leader_grpc_addr(self, raft_addr: str) -> str:
        try:
            row = self._reads.conn().execute(
                "SELECT grpc_addr FROM cluster_nodes WHERE raft_addr = ?", (raft_addr,)).fetchone()
        except Exception:  # best effort: the error is still UNAVAILABLE without it
            return ""
        return str(row[0]) if row else ""

    def _dev_bucket(self, name: str) -> None:
        """Upstream's canned errors for front-end development (APP_ENV=development only)."""
        if not self._dev or name not in DEV_BUCKETS:
            return
        if name == "bad":
            raise invalid_argument(validation.INVALID_BUCKET_NAME, "bucket")
        if name == "taken":  # upstream's fixture says "exists", not "owned by you"
            raise outcome_status(Outcome.BUCKET_EXISTS, bucket=name,
                                 reason=svc.BucketOwnershipConflict.REASON_BUCKET_ALREADY_EXISTS)
        if name == "forbidden":  # no such outcome here: upstream's fixture, verbatim
            raise RpcError(grpc.StatusCode.PERMISSION_DENIED, "access denied",
                           svc.PlanWriteError(reason=svc.PlanWriteError.REASON_BUCKET_ACCESS_DENIED,
                                              bucket=name))
        if name == "no-cradles":
            raise outcome_status(Outcome.NO_CRADLES, bucket=name,
                                 reason=svc.PlanWriteError.REASON_NO_CRADLE_SERVERS)
        raise RuntimeError("intentional test panic (APP_ENV=development bucket 'panic')")

    def _bucket_id(self, conn: sqlite3.Connection, name: str) -> str:
        row = conn.execute("SELECT id FROM buckets WHERE name = ? AND deleted_at IS NULL",
                           (name,)).fetchone()
        if row is None:
            raise outcome_status(Outcome.BUCKET_NOT_FOUND, bucket=name)
        return str(row[0])

    # -- upstream RPCs --
    async def create_bucket(self, req: Any, context: Context) -> svc.CreateBucketResponse:
        err = validation.bucket_name_error(req.name)
        if err:
            raise invalid_argument(err, "name")
        self._dev_bucket(req.name)
        res = await self._write(context, commands.create_bucket(req.name, request_id(context)),
                          "CreateBucket")
        return svc.CreateBucketResponse(
            bucket=bucket_pb2.Bucket(name=res.name, created_at_rfc3339=rfc3339_us(res.created_at_us))
        )

    async def list_buckets(self, req: Any, context: Context) -> svc.ListBucketsResponse:
        if req.max_buckets < 0:
            raise invalid_argument("InvalidMaxBuckets", "max_buckets")
        limit = min(req.max_buckets or MAX_BUCKETS_PAGE, MAX_BUCKETS_PAGE)
        after: tuple[int, str] = (-1, "")
        if req.continuation_token:
            try:
                after = _decode_bucket_token(req.continuation_token)
            except ValueError:
                raise invalid_argument("InvalidContinuationToken", "continuation_token") from None
        await self._read_only(context)

        def page() -> list[Any]:  # up to 10,001 rows: off the loop
            return self._reads.conn().execute(
                "SELECT name, created_at, id FROM buckets WHERE deleted_at IS NULL"
                " AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?",
                (after[0], after[1], limit + 1)).fetchall()

        rows = await asyncio.to_thread(page)
        resp = svc.ListBucketsResponse(
            buckets=[bucket_pb2.Bucket(name=n, created_at_rfc3339=rfc3339_us(c))
                     for n, c, _ in rows[:limit]])
        if len(rows) > limit:
            _, c, i = rows[limit - 1]
            resp.next_continuation_token = _encode_bucket_token(c, i)
        return resp

    async def plan_write(self, req: Any, context: Context) -> svc.PlanWriteResponse:
        err = validation.size_error(req.size)
        if err:
            raise invalid_argument(err, "size")
        if validation.bucket_name_error(req.bucket):
            raise invalid_argument(validation.INVALID_BUCKET_NAME, "bucket")
        if validation.key_error(req.key):
            raise invalid_argument(validation.INVALID_KEY_NAME, "key")
        self._dev_bucket(req.bucket)
        # The storage server is chosen here, before proposing, so apply stays deterministic:
        # a HEALTHY one with room for the object (or whose free space is not known yet).
        ids = [r[0] for r in self._reads.conn().execute(
            "SELECT id FROM cradle_servers WHERE " + placeable_where(self._needs_report),
            (req.size,))]
        cradle = random.choice(ids) if ids else ""
        cmd = commands.plan_write(req.bucket, req.key, req.size, cradle, request_id(context))
        res = await self._write(context, cmd, "PlanWrite")
        return svc.PlanWriteResponse(
            write_plan=write_plan_pb2.WritePlan(object_id=res.object_id,
                                                cradle_address=res.cradle_address)
        )

    async def commit_object(self, req: Any, context: Context) -> svc.CommitObjectResponse:
        # PlanWrite's size rule: ≤ 0 "InvalidSize" (upstream), above S3's 5 GiB single-PUT limit
        # "EntityTooLarge" (no object could have been planned that large; sizes near 2**63
        # overflowed SUM(size) in the live_objects recipes).
        err = validation.size_error(req.size)
        if err:
            raise invalid_argument(err, "size")
        if not req.object_id:
            raise invalid_argument(validation.INVALID_OBJECT_ID, "object_id")
        if validation.last_modified_error(req.last_modified_ms):
            raise invalid_argument(validation.INVALID_LAST_MODIFIED_MS, "last_modified_ms")
        if len(req.object_id) > MAX_OBJECT_ID_LEN:
            raise outcome_status(Outcome.OBJECT_NOT_FOUND)
        cmd = commands.commit_object(req.object_id, req.size, req.last_modified_ms,
                                     request_id(context))
        await self._write(context, cmd, "CommitObject")
        return svc.CommitObjectResponse()

    # -- Gantry additions --
    async def get_bucket(self, req: Any, context: Context) -> svc.GetBucketResponse:
        if validation.bucket_name_error(req.name):
            raise invalid_argument(validation.INVALID_BUCKET_NAME, "name")
        row = (await self._read(context)).execute(
            "SELECT name, created_at FROM buckets WHERE name = ? AND deleted_at IS NULL",
            (req.name,)).fetchone()
        if row is None:
            raise outcome_status(Outcome.BUCKET_NOT_FOUND, bucket=req.name)
        return svc.GetBucketResponse(
            bucket=bucket_pb2.Bucket(name=row[0], created_at_rfc3339=rfc3339_us(row[1])))

    async def delete_bucket(self, req: Any, context: Context) -> svc.DeleteBucketResponse:
        if validation.bucket_name_error(req.name):
            raise invalid_argument(validation.INVALID_BUCKET_NAME, "name")
        await self._write(context, commands.delete_bucket(req.name, request_id(context)), "DeleteBucket")
        return svc.DeleteBucketResponse()

    async def head_object(self, req: Any, context: Context) -> svc.HeadObjectResponse:
        if validation.bucket_name_error(req.bucket):
            raise invalid_argument(validation.INVALID_BUCKET_NAME, "bucket")
        if validation.key_error(req.key):
            raise invalid_argument(validation.INVALID_KEY_NAME, "key")
        conn = await self._read(context)
        bucket_id = self._bucket_id(conn, req.bucket)
        row = conn.execute(
            "SELECT o.object_id, o.size_actual, o.last_modified, c.address FROM objects o"
            " JOIN cradle_servers c ON c.id = o.cradle_server_id"
            " WHERE o.bucket_id = ? AND o.key = ? AND o.state = 'COMMITTED'",
            (bucket_id, req.key)).fetchone()
        if row is None:
            raise outcome_status(Outcome.OBJECT_NOT_FOUND)
        return svc.HeadObjectResponse(object_id=row[0], size=int(row[1] or 0),
                                      last_modified_ms=int(row[2] or 0) // 1000,
                                      cradle_address=row[3])

    async def list_objects(self, req: Any, context: Context) -> svc.ListObjectsResponse:
        if validation.bucket_name_error(req.bucket):
            raise invalid_argument(validation.INVALID_BUCKET_NAME, "bucket")
        if req.max_keys < 0:
            raise invalid_argument("InvalidMaxKeys", "max_keys")
        await self._read_only(context)

        def query() -> listing.Page:  # a page of up to 1000 keys: off the loop
            conn = self._reads.conn()
            bucket_id = self._bucket_id(conn, req.bucket)
            return listing.list_objects(conn, bucket_id, req.prefix, req.delimiter,
                                        req.start_after, req.max_keys, req.continuation_token)

        try:
            page = await asyncio.to_thread(query)
        except listing.InvalidToken:
            raise invalid_argument("InvalidContinuationToken", "continuation_token") from None
        return svc.ListObjectsResponse(
            contents=[svc.ObjectSummary(key=e.key, object_id=e.object_id, size=e.size,
                                        last_modified_ms=e.last_modified_us // 1000)
                      for e in page.contents],
            common_prefixes=page.common_prefixes, is_truncated=page.is_truncated,
            next_continuation_token=page.next_token,
            key_count=len(page.contents) + len(page.common_prefixes))

    async def delete_object(self, req: Any, context: Context) -> svc.DeleteObjectResponse:
        if validation.bucket_name_error(req.bucket):
            raise invalid_argument(validation.INVALID_BUCKET_NAME, "bucket")
        if validation.key_error(req.key):
            raise invalid_argument(validation.INVALID_KEY_NAME, "key")
        await self._write(context, commands.delete_object(req.bucket, req.key, request_id(context)),
                    "DeleteObject")
        return svc.DeleteObjectResponse()

    async def abort_object(self, req: Any, context: Context) -> svc.AbortObjectResponse:
        if not req.object_id:
            raise invalid_argument(validation.INVALID_OBJECT_ID, "object_id")
        if len(req.object_id) > MAX_OBJECT_ID_LEN:
            raise outcome_status(Outcome.OBJECT_NOT_FOUND)
        await self._write(context, commands.abort_object(req.object_id, request_id(context)),
                    "AbortObject")
        return svc.AbortObjectResponse()

    async def delete_objects(self, req: Any, context: Context) -> svc.DeleteObjectsResponse:
        """S3 Multi-Object Delete as one log entry; checks and reply in :mod:`gantry.api.batch`."""
        plan = batch.plan_delete_objects(req)
        self._dev_bucket(req.bucket)
        res = await self._write(context, plan.command(request_id(context)), "DeleteObjects")
        return plan.response(res)

    async def put_objects(self, req: Any, context: Context) -> svc.PutObjectsResponse:
        """Bulk PlanWrite + CommitObject as one log entry; checks, placement (decided here,
        before proposing) and reply in :mod:`gantry.api.batch`."""
        plan = batch.plan_put_objects(req)
        self._dev_bucket(req.bucket)
        cradles = batch.place(self._reads.conn(), placeable_where(self._needs_report), plan.sizes)
        res = await self._write(context, plan.command(cradles, request_id(context)), "PutObjects")
        return plan.response(res)

    async def register_cradle_server(self, req: Any, context: Context
                               ) -> svc.RegisterCradleServerResponse:
        try:
            address = validation.normalize_address(req.address)
        except ValueError:
            raise invalid_argument(validation.INVALID_ADDRESS, "address") from None
        res = await self._write(context, commands.register_cradle_server(address, request_id(context)),
                          "RegisterCradleServer")
        row = self._reads.conn().execute(_CRADLE_SQL + " AND id = ?",
                                         (res.cradle_server_id,)).fetchone()
        return svc.RegisterCradleServerResponse(cradle_server=_cradle(row))

    async def list_cradle_servers(self, req: Any, context: Context
                            ) -> svc.ListCradleServersResponse:
        rows = (await self._read(context)).execute(_CRADLE_SQL + " ORDER BY address").fetchall()
        return svc.ListCradleServersResponse(cradle_servers=[_cradle(r) for r in rows])


    async def unregister_cradle_server(self, req: Any, context: Context
                                 ) -> admin_pb2.UnregisterCradleServerResponse:
        try:
            address = validation.normalize_address(req.address)
        except ValueError:
            raise invalid_argument(validation.INVALID_ADDRESS, "address") from None
        res = await self._write(context, commands.unregister_cradle_server(address, req.force,
                                                                    request_id(context)),
                          "UnregisterCradleServer")
        live = self._reads.conn().execute(
            "SELECT COUNT(*) FROM objects WHERE cradle_server_id = ?"
            " AND state IN ('PENDING', 'COMMITTED')", (res.cradle_server_id,)).fetchone()[0]
        return admin_pb2.UnregisterCradleServerResponse(
            cradle_server_id=res.cradle_server_id, address=address, live_objects=live)


_CRADLE_SQL = ("SELECT id, address, status, available_bytes, last_heartbeat_at FROM cradle_servers"
               " WHERE unregistered_at IS NULL")


def _cradle(row: Any) -> svc.CradleServer:
    return svc.CradleServer(id=row[0], address=row[1], status=row[2], available_bytes=row[3],
                            last_heartbeat_ms=row[4] // 1000)


def _encode_bucket_token(created_at: int, bucket_id: str) -> str:
    raw = json.dumps([created_at, bucket_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_bucket_token(token: str) -> tuple[int, str]:
    """``(created_at µs, bucket id)``; raises ValueError for anything this node did not issue."""
    try:
        d = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, RecursionError) as e:
        raise ValueError(str(e)) from None
    if (not isinstance(d, list) or len(d) != 2 or type(d[0]) is not int
            or not isinstance(d[1], str) or not 0 <= d[0] < 2**63):
        raise ValueError("not a continuation token")
    try:
        d[1].encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not a continuation token") from None
    return d[0], d[1]

"""``gantry.admin.v1.ClusterService/Backup``: a consistent copy of this node's database, streamed.

The copy is taken by :class:`gantry.backup.CopyTaker` (online SQLite backup of one read
transaction, into the data directory) before the first message; the stream is then a
``header`` (size, applied index and term, node), ``data`` chunks in file order and a
``trailer`` carrying the SHA-256 of the whole file. The method is served by its own generic
handler for the ClusterService name (gRPC looks a method up handler by handler), so the unary
admin methods in :mod:`gantry.api.admin` stay as they are.

The handler is an async generator on the gRPC event loop; the copy and every file read run on
the loop's executor (``asyncio.to_thread``), so a backup never stalls the other calls.

Like every Gantry RPC it logs one ``rpc_finished`` line (here once the stream ended, with the
bytes sent) and answers stable statuses: ``RESOURCE_EXHAUSTED`` when a backup is already
running, ``INTERNAL`` with the reason when the copy could not be written (disk full…),
``INVALID_ARGUMENT`` for a bad chunk size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from gantry.api.admin import SERVICE_NAME
from gantry.api.errors import RpcError, invalid_argument
from gantry.api.rpc import call_origin
from gantry.backup import (
    DEFAULT_CHUNK_BYTES,
    MAX_CHUNK_BYTES,
    BackupBusy,
    BackupError,
    CopyTaker,
    NodeCopy,
)
from gantry.pb.admin.v1 import admin_pb2 as pb

log = structlog.get_logger("gantry.rpc")
_METHOD = "Backup"


def _parse(data: bytes) -> pb.BackupRequest | None:
    msg = pb.BackupRequest()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError):
        return None
    return msg


async def _take(copies: CopyTaker) -> NodeCopy:
    """``copies.take()`` on the executor. If the call is cancelled meanwhile, the copy is
    closed once taken (else it would hold the one-backup-at-a-time lock)."""
    task = asyncio.ensure_future(asyncio.to_thread(copies.take))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        def close(t: asyncio.Future[NodeCopy]) -> None:
            if not t.cancelled() and t.exception() is None:
                t.result().close()

        task.add_done_callback(close)
        raise


class BackupService:
    """The Backup handler over one node's database (``copies``) and its identity."""

    def __init__(self, copies: CopyTaker, node_id: str, raft_addr: str) -> None:
        self._copies = copies
        self._node_id = node_id
        self._raft_addr = raft_addr

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            _METHOD: grpc.unary_stream_rpc_method_handler(
                self.backup, request_deserializer=_parse,
                response_serializer=lambda m: m.SerializeToString()),
        })

    async def backup(self, req: pb.BackupRequest | None,
                     context: grpc.aio.ServicerContext[Any, Any]
                     ) -> AsyncIterator[pb.BackupChunk]:
        """The stream: header, data chunks, trailer (see the module docstring). Aborts with
        INVALID_ARGUMENT, RESOURCE_EXHAUSTED (busy) or INTERNAL."""
        t0 = time.perf_counter()
        code, message = grpc.StatusCode.OK, ""
        fields: dict[str, Any] = {}
        copy = None
        # Read before the stream can be cancelled: touching grpcio's aio context after a
        # cancel (in the finally block) crashed the node with SIGSEGV.
        peer, rid, via = call_origin(context)
        try:
            if req is None:
                raise invalid_argument("malformed request", "")
            chunk = req.chunk_bytes or DEFAULT_CHUNK_BYTES
            if not 0 < chunk <= MAX_CHUNK_BYTES:
                raise invalid_argument(f"chunk_bytes must be 1..{MAX_CHUNK_BYTES}", "chunk_bytes")
            try:
                copy = await _take(self._copies)
            except BackupBusy as e:
                raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)) from None
            except BackupError as e:
                log.error("backup_copy_failed", error=str(e))
                raise RpcError(grpc.StatusCode.INTERNAL, str(e)) from None
            fields.update(applied_index=copy.applied_index, size_bytes=copy.size_bytes,
                          copy_ms=copy.copy_ms)
            yield pb.BackupChunk(header=pb.BackupHeader(
                size_bytes=copy.size_bytes, applied_index=copy.applied_index,
                applied_term=copy.applied_term, node_id=self._node_id,
                raft_addr=self._raft_addr))
            chunks = copy.chunks(chunk)
            while (data := await asyncio.to_thread(next, chunks, None)) is not None:
                yield pb.BackupChunk(data=data)
            yield pb.BackupChunk(trailer=pb.BackupTrailer(
                size_bytes=copy.sent_bytes, applied_index=copy.applied_index,
                applied_term=copy.applied_term, sha256=copy.sha256))
        except RpcError as e:
            code, message = e.code, e.message
            await context.abort_with_status(e.to_status())
        except (GeneratorExit, asyncio.CancelledError):  # the client went away (cancelled, or
            code = grpc.StatusCode.CANCELLED  # its deadline passed)
            raise
        except Exception:
            code, message = grpc.StatusCode.INTERNAL, "internal error"
            log.exception("rpc_failed", **{"grpc.service": SERVICE_NAME, "grpc.method": _METHOD})
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            if copy is not None:
                fields["sent_bytes"] = copy.sent_bytes
            if rid:
                fields["request_id"] = rid
            if message:
                fields["message"] = message
            if via:
                fields["via"] = via
            log.info("rpc_finished", **{
                "grpc.service": SERVICE_NAME, "grpc.method": _METHOD, "grpc.code": code.name,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
                "peer": peer}, **fields)
            if copy is not None:  # after the log line: the next backup's line comes after it
                copy.close()  # closes a file and releases a lock: microseconds

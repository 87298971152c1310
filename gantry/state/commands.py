"""The Raft log entry codec: ``gantry.command.v1.Command`` protobuf envelopes.

Invariant: everything non-deterministic (ULIDs, Unix-µs timestamps, the chosen cradle server) is
decided by the builders below on the proposing node, so applying an entry is a pure function of
(database, entry). An entry this build cannot decode, or of a newer envelope version, is a
:class:`CommandDecodeError`: the node must stop rather than skip it.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from gantry.ids import new_ulid, now_us
from gantry.pb.command.v1 import command_pb2 as pb

#: Envelope version written by this build; apply refuses anything newer.
COMMAND_VERSION = 1

Command = pb.Command


class CommandDecodeError(ValueError):
    """An entry's bytes are not a Command this build understands (corrupt or too new)."""


def encode(command: pb.Command) -> bytes:
    """Serialize a Command to its wire bytes (deterministic protobuf encoding)."""
    return command.SerializeToString(deterministic=True)


def decode(data: bytes) -> pb.Command:
    """Parse entry bytes; raises :class:`CommandDecodeError` if they are not a known Command."""
    cmd = pb.Command()
    try:
        cmd.ParseFromString(data)
    except DecodeError as e:
        raise CommandDecodeError(f"undecodable log entry: {e}") from e
    if cmd.version == 0 or cmd.version > COMMAND_VERSION:
        raise CommandDecodeError(f"log entry has unsupported command version {cmd.version}")
    if cmd.WhichOneof("op") is None:
        raise CommandDecodeError("log entry has no operation this build knows")
    return cmd


def _envelope(request_id: str = "") -> pb.Command:
    return pb.Command(
        version=COMMAND_VERSION,
        proposal_id=new_ulid(),
        request_id=request_id,
        timestamp_us=now_us(),
    )


def create_bucket(name: str, request_id: str = "") -> pb.Command:
    """A CreateBucket entry with a fresh bucket ULID and the current time."""
    cmd = _envelope(request_id)
    cmd.create_bucket.bucket_id = new_ulid()
    cmd.create_bucket.name = name
    return cmd


def register_cradle_server(address: str, request_id: str = "") -> pb.Command:
    """A RegisterCradleServer entry (``address`` is ``host:port``); idempotent on apply."""
    cmd = _envelope(request_id)
    cmd.register_cradle_server.cradle_server_id = new_ulid()
    cmd.register_cradle_server.address = address
    return cmd


def plan_write(
    bucket: str, key: str, size: int, cradle_server_id: str, request_id: str = ""
) -> pb.Command:
    """A PlanWrite entry: a new PENDING object (fresh ULID) of ``size`` bytes placed on
    ``cradle_server_id`` (empty when the proposer saw no cradle server)."""
    cmd = _envelope(request_id)
    pw = cmd.plan_write
    pw.object_id = new_ulid()
    pw.bucket = bucket
    pw.key = key
    pw.size = size
    pw.cradle_server_id = cradle_server_id
    return cmd


def commit_object(
    object_id: str, size: int, last_modified_ms: int, request_id: str = ""
) -> pb.Command:
    """A CommitObject entry: PENDING → COMMITTED with ``size`` bytes, ``last_modified_ms`` (Unix ms)."""
    cmd = _envelope(request_id)
    co = cmd.commit_object
    co.object_id = object_id
    co.size = size
    co.last_modified_ms = last_modified_ms
    return cmd


def register_node(raft_addr: str, node_id: str, grpc_addr: str) -> pb.Command:
    """A RegisterNode entry: this member's Raft address, name and client (gRPC) address."""
    cmd = _envelope()
    rn = cmd.register_node
    rn.raft_addr, rn.node_id, rn.grpc_addr = raft_addr, node_id, grpc_addr
    return cmd


def barrier() -> pb.Command:
    """A no-effect entry: waiting for it to apply proves this node has applied the log up to it."""
    cmd = _envelope()
    cmd.barrier.SetInParent()
    return cmd


def delete_bucket(name: str, request_id: str = "") -> pb.Command:
    """A DeleteBucket entry (soft delete; refused while PENDING/COMMITTED objects remain)."""
    cmd = _envelope(request_id)
    cmd.delete_bucket.name = name
    return cmd


def delete_object(bucket: str, key: str, request_id: str = "") -> pb.Command:
    """A DeleteObject entry: the key's COMMITTED object becomes DELETED (missing key: no-op)."""
    cmd = _envelope(request_id)
    cmd.delete_object.bucket = bucket
    cmd.delete_object.key = key
    return cmd


def abort_object(object_id: str, request_id: str = "") -> pb.Command:
    """An AbortObject entry: PENDING → FAILED."""
    cmd = _envelope(request_id)
    cmd.abort_object.object_id = object_id
    return cmd


def update_cradle_status(cradle_server_id: str, status: str, available_bytes: int,
                         consecutive_misses: int, last_heartbeat_us: int) -> pb.Command:
    """The leader's heartbeat observation of one storage server (status HEALTHY / DEGRADED /
    OFFLINE, bytes free or -1, misses in a row, Unix µs of the last success or 0)."""
    cmd = _envelope()
    u = cmd.update_cradle_status
    u.cradle_server_id, u.status, u.available_bytes = cradle_server_id, status, available_bytes
    u.consecutive_misses, u.last_heartbeat_us = consecutive_misses, last_heartbeat_us
    return cmd


def unregister_cradle_server(address: str, force: bool = False,
                             request_id: str = "") -> pb.Command:
    """An UnregisterCradleServer entry (``address`` normalised ``host:port``); refused on apply
    while live objects are placed on the server unless ``force``."""
    cmd = _envelope(request_id)
    cmd.unregister_cradle_server.address = address
    cmd.unregister_cradle_server.force = force
    return cmd


def delete_objects(bucket: str, keys: list[str], request_id: str = "",
                   request_sha256: bytes = b"") -> pb.Command:
    """A DeleteObjects entry (S3 Multi-Object Delete): each key's COMMITTED object becomes
    DELETED, all in one transaction; a missing key is a no-op. ``keys`` already validated;
    ``request_sha256`` the digest of the client's whole request (for the request-id check)."""
    cmd = _envelope(request_id)
    cmd.delete_objects.bucket = bucket
    cmd.delete_objects.keys.extend(keys)
    cmd.delete_objects.request_sha256 = request_sha256
    return cmd


def put_objects(bucket: str, objects: list[tuple[str, int, int, str]],
                request_id: str = "", request_sha256: bytes = b"") -> pb.Command:
    """A PutObjects entry: ``objects`` are ``(key, size bytes, last_modified_ms Unix ms,
    cradle_server_id or "")``, already validated; each gets a fresh object ULID here, so the
    entry carries every id and placement and apply stays deterministic. ``request_sha256``:
    the digest of the client's whole request (for the request-id check)."""
    cmd = _envelope(request_id)
    po = cmd.put_objects
    po.bucket = bucket
    po.request_sha256 = request_sha256
    add = po.objects.add
    for key, size, last_modified_ms, cradle_server_id in objects:
        add(object_id=new_ulid(), key=key, size=size, last_modified_ms=last_modified_ms,
            cradle_server_id=cradle_server_id)
    return cmd

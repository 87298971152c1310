"""The Gantry state machine: turns one committed Raft log entry into SQL on the node's database.

Purpose: every node applies the same entries in the same order and must end with the same rows.
Invariants:
- ``apply`` is deterministic: it reads only the database and the entry (never the clock, never a
  random source). Ids, timestamps and the chosen cradle server were decided before proposing.
- Outcomes that follow from the data (bucket exists, object not PENDING) are :class:`ApplyResult`
  values, identical on every node, never exceptions. Only a non-deterministic failure (I/O error,
  disk full, corrupt file, undecodable entry) raises, and then the node stops instead of skipping.
- The applied log index is written in the same transaction as the entry's effect, and an entry at
  or below it is skipped: pysyncobj replays its journal on every restart, so apply is exactly-once.
- A mutation carrying a client request id applies at most once: a later entry with the same id and
  operation returns the stored outcome (pruned by log index after DEDUPE_WINDOW entries).
Trade-off: several entries share one transaction (one commit for a batch) with a SAVEPOINT per
entry, so one entry's deterministic failure never rolls back its neighbours.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gantry.pb.command.v1 import command_pb2 as pb
from gantry.state import commands


class Code(enum.IntEnum):
    """Result codes; the numbers equal the gRPC status codes of the outcomes that carry them
    (the status itself is :data:`gantry.api.errors.STATUSES`'s). Stored with each remembered
    result (``request_dedupe``)."""

    OK = 0
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    FAILED_PRECONDITION = 9
    INVALID_ARGUMENT = 3


class Outcome(enum.Enum):
    """What applying an entry decided: its domain outcome, identical on every node.

    Value: ``(Code, text)``. The text is stored with a remembered result (``request_dedupe``)
    and is the outcome's stable message on the wire, so neither may ever change; a new outcome
    needs a row in :data:`gantry.api.errors.STATUSES` (``tests/unit/test_errors.py`` checks both
    agree). Only :attr:`CONSTRAINT_VIOLATED` carries a detail (SQLite's message).
    """

    OK = (Code.OK, "")
    BUCKET_EXISTS = (Code.ALREADY_EXISTS, "bucket already exists")
    BUCKET_NOT_FOUND = (Code.NOT_FOUND, "bucket not found")
    NO_CRADLES = (Code.FAILED_PRECONDITION, "no cradle servers available")
    OBJECT_NOT_FOUND = (Code.NOT_FOUND, "object not found")
    OBJECT_NOT_PENDING = (Code.FAILED_PRECONDITION, "object is not pending")
    BUCKET_NOT_EMPTY = (Code.FAILED_PRECONDITION, "BucketNotEmpty")
    CONSTRAINT_VIOLATED = (Code.FAILED_PRECONDITION, "constraint violated")
    VALUE_OUT_OF_RANGE = (Code.INVALID_ARGUMENT, "value out of range")
    REQUEST_ID_REUSED = (Code.INVALID_ARGUMENT, "x-request-id reused for a different request")
    CRADLE_NOT_FOUND = (Code.NOT_FOUND, "cradle server not found")
    CRADLE_HAS_LIVE_OBJECTS = (Code.FAILED_PRECONDITION, "cradle server has live objects")

    @property
    def code(self) -> Code:
        return self.value[0]  # type: ignore[no-any-return]

    @property
    def text(self) -> str:
        return self.value[1]  # type: ignore[no-any-return]


# Upstream detail reasons (gantry.service.v1 BucketOwnershipConflict / PlanWriteError).
REASON_BUCKET_ALREADY_OWNED_BY_YOU = 1
REASON_BUCKET_NOT_FOUND = 1
REASON_NO_CRADLE_SERVERS = 3


@dataclass(frozen=True)
class ItemResult:
    """One object's outcome inside a batch entry (``put_objects``), in the entry's order:
    ``outcome`` (never CONSTRAINT_VIOLATED: a constraint failure rolls back the whole entry),
    and on success the object's ULID and its cradle server's address."""

    outcome: Outcome = Outcome.OK
    object_id: str = ""
    cradle_address: str = ""


@dataclass(frozen=True)
class ApplyResult:
    """What applying one entry produced, returned to the proposer as a value.

    ``outcome`` is the domain outcome (the API maps it to a status, never its text);
    ``detail`` SQLite's message for :attr:`Outcome.CONSTRAINT_VIOLATED`; ``reason``/``bucket``
    fill upstream's error detail; the remaining fields carry success payloads (ids, addresses,
    timestamps in Unix µs). ``code`` and ``message`` are the stored form of the outcome.
    """

    outcome: Outcome = Outcome.OK
    detail: str = ""
    reason: int = 0
    bucket: str = ""
    name: str = ""
    created_at_us: int = 0
    object_id: str = ""
    cradle_address: str = ""
    cradle_server_id: str = ""
    #: Per-object outcomes of a batch entry, in the entry's order (empty for other entries).
    items: tuple[ItemResult, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def code(self) -> Code:
        return self.outcome.code

    @property
    def message(self) -> str:
        """The outcome's text (with SQLite's message after it for a constraint violation)."""
        if self.outcome is Outcome.CONSTRAINT_VIOLATED:
            return f"{self.outcome.text}: {self.detail}"
        return self.outcome.text


OK = ApplyResult()

#: A request id is remembered for this many log indexes after the entry that first carried it;
#: a retry later than that applies as a new request. Pruning is by log index, so every node
#: forgets the same ids at the same entry.
DEDUPE_WINDOW = 200_000
#: Prune the dedupe table every this many log indexes (amortises the DELETE).
DEDUPE_PRUNE_EVERY = 1_000


#: Fields the proposer fills in (fresh ids, the chosen server): not part of "the same request".
_GENERATED = {"create_bucket": ("bucket_id",), "plan_write": ("object_id", "cradle_server_id"),
              "register_cradle_server": ("cradle_server_id",)}


def request_fingerprint(command: pb.Command) -> str:
    """SHA-256 (hex) of the operation's client-supplied arguments: two entries with the same
    request id are the same request only if their fingerprints match."""
    op = command.WhichOneof("op")
    if op is None:
        return ""
    msg = type(getattr(command, op))()
    msg.CopyFrom(getattr(command, op))
    for f in _GENERATED.get(op, ()):
        msg.ClearField(f)
    if op == "put_objects":  # each object's id and placement are the proposer's
        for obj in msg.objects:
            obj.ClearField("object_id")
            obj.ClearField("cradle_server_id")
    return hashlib.sha256(op.encode() + b"\0" + msg.SerializeToString(deterministic=True)).hexdigest()


_BY_TEXT = {o.text: o for o in Outcome}


#: The fields of :class:`ApplyResult` stored after ``code`` and ``message``, in field order.
_STORED_FIELDS = tuple(f.name for f in dataclasses.fields(ApplyResult)
                       if f.name not in ("outcome", "detail", "items"))


def _result_to_json(r: ApplyResult) -> str:
    """The stored form of a result (``request_dedupe.result``): ``code`` and ``message`` first,
    then the other fields; the same JSON every earlier build wrote."""
    d: dict[str, Any] = {"code": int(r.code), "message": r.message}
    d.update((name, getattr(r, name)) for name in _STORED_FIELDS)
    if r.items:  # batch entries only, so every other stored result keeps its old form
        d["items"] = [[i.outcome.text, i.object_id, i.cradle_address] for i in r.items]
    return json.dumps(d, separators=(",", ":"))


def _result_from_json(text: str) -> ApplyResult:
    """Read a stored result back; its outcome comes from the stored ``(code, message)``, whose
    texts never change. Raises ValueError for a result no build of Gantry stored."""
    d = json.loads(text)
    code, message = d.pop("code"), d.pop("message")
    try:
        d["items"] = tuple(ItemResult(_BY_TEXT[t], oid, addr) for t, oid, addr in d.pop("items", ()))
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"stored batch result not understood: {text[:200]!r}") from None
    outcome, detail = _BY_TEXT.get(message), ""
    if outcome is None:
        head, sep, detail = message.partition(": ")
        outcome = _BY_TEXT.get(head) if sep else None
        if outcome is not Outcome.CONSTRAINT_VIOLATED:
            outcome = None
    if outcome is None or outcome.code != code:
        raise ValueError(f"stored result not understood: code {code}, message {message!r}")
    return ApplyResult(outcome, detail, **d)


def applied_index(conn: sqlite3.Connection) -> int:
    """The log index of the last entry applied to this database (0 for a fresh one)."""
    row = conn.execute("SELECT applied_index FROM raft_applied WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def applied_position(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(log index, term)`` of the last entry applied to this database (``(0, 0)`` for a fresh
    one; term 0 for entries applied before terms were recorded). Two databases at the same
    position hold the same state (Raft's Log Matching property, §5.3)."""
    try:
        row = conn.execute(
            "SELECT applied_index, applied_term FROM raft_applied WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # a database or snapshot from before migration 0006
        return applied_index(conn), 0
    return (int(row[0]), int(row[1])) if row else (0, 0)


class DivergenceError(RuntimeError):
    """The database applied a different entry at a log index than the Raft log holds there (same
    index, another term): it is not a prefix of the leader's log. Never skipped: the node stops,
    or restores from the leader's snapshot."""


def _create_bucket(conn: sqlite3.Connection, ts: int, op: pb.CreateBucket) -> ApplyResult:
    if _live_bucket_id(conn, op.name) is not None:
        return ApplyResult(
            Outcome.BUCKET_EXISTS,
            reason=REASON_BUCKET_ALREADY_OWNED_BY_YOU,
            bucket=op.name,
        )
    conn.execute(
        "INSERT INTO buckets (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
        (op.bucket_id, op.name, ts, ts),
    )
    return ApplyResult(name=op.name, created_at_us=ts)


def _register_cradle(conn: sqlite3.Connection, ts: int, op: pb.RegisterCradleServer) -> ApplyResult:
    row = conn.execute(
        "SELECT id, unregistered_at FROM cradle_servers WHERE address = ?", (op.address,)
    ).fetchone()
    if row and row[1] is not None:  # registered again after UnregisterCradleServer: as new
        conn.execute(
            "UPDATE cradle_servers SET unregistered_at = NULL, status = 'HEALTHY',"
            " available_bytes = -1, consecutive_misses = 0, last_heartbeat_at = 0,"
            " updated_at = ? WHERE id = ?", (ts, row[0]))
    if row:
        return ApplyResult(cradle_server_id=row[0], cradle_address=op.address)
    conn.execute(
        "INSERT INTO cradle_servers (id, address, status, available_bytes, consecutive_misses,"
        " last_heartbeat_at, created_at, updated_at) VALUES (?, ?, 'HEALTHY', -1, 0, 0, ?, ?)",
        (op.cradle_server_id, op.address, ts, ts),
    )
    return ApplyResult(cradle_server_id=op.cradle_server_id, cradle_address=op.address)


def _live_bucket_id(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute(
        "SELECT id FROM buckets WHERE name = ? AND deleted_at IS NULL", (name,)).fetchone()
    return None if row is None else str(row[0])


def _bucket_not_found(name: str) -> ApplyResult:
    return ApplyResult(Outcome.BUCKET_NOT_FOUND, reason=REASON_BUCKET_NOT_FOUND, bucket=name)


def _plan_write(conn: sqlite3.Connection, ts: int, op: pb.PlanWrite) -> ApplyResult:
    bucket_id = _live_bucket_id(conn, op.bucket)
    if bucket_id is None:
        return _bucket_not_found(op.bucket)
    cradle = None
    if op.cradle_server_id:
        cradle = conn.execute(
            "SELECT address FROM cradle_servers WHERE id = ? AND unregistered_at IS NULL",
            (op.cradle_server_id,)).fetchone()
    if cradle is None:
        return ApplyResult(
            Outcome.NO_CRADLES,
            reason=REASON_NO_CRADLE_SERVERS,
            bucket=op.bucket,
        )
    conn.execute(
        "INSERT INTO objects (object_id, bucket_id, key, state, size_expected, size_actual,"
        " last_modified, cradle_server_id, created_at, updated_at)"
        " VALUES (?, ?, ?, 'PENDING', ?, NULL, NULL, ?, ?, ?)",
        (op.object_id, bucket_id, op.key, op.size, op.cradle_server_id, ts, ts),
    )
    return ApplyResult(object_id=op.object_id, cradle_address=cradle[0])


def _commit_object(conn: sqlite3.Connection, ts: int, op: pb.CommitObject) -> ApplyResult:
    row = conn.execute(
        "SELECT bucket_id, key, state FROM objects WHERE object_id = ?", (op.object_id,)
    ).fetchone()
    if row is None:
        return ApplyResult(Outcome.OBJECT_NOT_FOUND)
    bucket_id, key, state = row
    if state != "PENDING":
        return ApplyResult(Outcome.OBJECT_NOT_PENDING)
    # S3: the later write wins; under Raft "later" is later in the log, i.e. this entry.
    conn.execute(
        "UPDATE objects SET state = 'REPLACED', updated_at = ?"
        " WHERE bucket_id = ? AND key = ? AND state = 'COMMITTED'",
        (ts, bucket_id, key),
    )
    conn.execute(
        "UPDATE objects SET state = 'COMMITTED', size_actual = ?, last_modified = ?, updated_at = ?"
        " WHERE object_id = ?",
        (op.size, op.last_modified_ms * 1000, ts, op.object_id),
    )
    return ApplyResult(object_id=op.object_id)


def _delete_bucket(conn: sqlite3.Connection, ts: int, op: pb.DeleteBucket) -> ApplyResult:
    bucket_id = _live_bucket_id(conn, op.name)
    if bucket_id is None:
        return _bucket_not_found(op.name)
    busy = conn.execute(
        "SELECT 1 FROM objects WHERE bucket_id = ? AND state IN ('PENDING', 'COMMITTED') LIMIT 1",
        (bucket_id,)).fetchone()
    if busy:
        return ApplyResult(Outcome.BUCKET_NOT_EMPTY, bucket=op.name)
    conn.execute("UPDATE buckets SET deleted_at = ?, updated_at = ? WHERE id = ?",
                 (ts, ts, bucket_id))
    return OK


def _delete_object(conn: sqlite3.Connection, ts: int, op: pb.DeleteObject) -> ApplyResult:
    bucket_id = _live_bucket_id(conn, op.bucket)
    if bucket_id is None:
        return _bucket_not_found(op.bucket)
    # S3: deleting a key that does not exist succeeds.
    conn.execute(
        "UPDATE objects SET state = 'DELETED', updated_at = ?"
        " WHERE bucket_id = ? AND key = ? AND state = 'COMMITTED'", (ts, bucket_id, op.key))
    return OK


def _delete_objects(conn: sqlite3.Connection, ts: int, op: pb.DeleteObjects) -> ApplyResult:
    """S3 DeleteObjects (Multi-Object Delete): every key's COMMITTED object becomes DELETED, in
    this one transaction. A key without one is still "deleted" (S3: "if the object specified in
    the request is not found, Amazon S3 returns the result as deleted",
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html). Unknown bucket:
    BUCKET_NOT_FOUND for the whole entry, nothing changed (S3's NoSuchBucket)."""
    bucket_id = _live_bucket_id(conn, op.bucket)
    if bucket_id is None:
        return _bucket_not_found(op.bucket)
    conn.executemany(
        "UPDATE objects SET state = 'DELETED', updated_at = ?"
        " WHERE bucket_id = ? AND key = ? AND state = 'COMMITTED'",
        ((ts, bucket_id, k) for k in dict.fromkeys(op.keys)))
    return OK


def _put_objects(conn: sqlite3.Connection, ts: int, op: pb.PutObjects) -> ApplyResult:
    """Bulk PlanWrite + CommitObject: each object, in entry order, is recorded COMMITTED and the
    key's previous COMMITTED object becomes REPLACED (S3: the later write wins; within one entry
    the later object wins, the earlier one of a repeated key is recorded REPLACED at once).

    Unknown bucket: BUCKET_NOT_FOUND for the whole entry. An object whose cradle server is empty
    or no longer registered: its item is NO_CRADLES and nothing is written for it. Set-based:
    one lookup per distinct cradle server, one ``executemany`` for the replaced objects and one
    for the inserts, so the cost is O(objects) index operations (a 5000-object entry, the
    API's limit, applied in 0.1–0.3 s on the 2-core test machine under load)."""
    bucket_id = _live_bucket_id(conn, op.bucket)
    if bucket_id is None:
        return _bucket_not_found(op.bucket)
    addresses: dict[str, str | None] = {}
    for cid in dict.fromkeys(o.cradle_server_id for o in op.objects):
        row = conn.execute(
            "SELECT address FROM cradle_servers WHERE id = ? AND unregistered_at IS NULL",
            (cid,)).fetchone() if cid else None
        addresses[cid] = None if row is None else str(row[0])
    items: list[ItemResult] = []
    rows: list[list[Any]] = []
    last_row: dict[str, list[Any]] = {}  # key -> the row of its last placeable object
    for o in op.objects:
        addr = addresses[o.cradle_server_id]
        if addr is None:
            items.append(ItemResult(Outcome.NO_CRADLES))
            continue
        items.append(ItemResult(object_id=o.object_id, cradle_address=addr))
        row = [o.object_id, bucket_id, o.key, "REPLACED", o.size, o.size,
               o.last_modified_ms * 1000, o.cradle_server_id, ts, ts]
        rows.append(row)
        last_row[o.key] = row
    for row in last_row.values():
        row[3] = "COMMITTED"
    conn.executemany(
        "UPDATE objects SET state = 'REPLACED', updated_at = ?"
        " WHERE bucket_id = ? AND key = ? AND state = 'COMMITTED'",
        ((ts, bucket_id, k) for k in last_row))
    conn.executemany(
        "INSERT INTO objects (object_id, bucket_id, key, state, size_expected, size_actual,"
        " last_modified, cradle_server_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return ApplyResult(items=tuple(items))


def _abort_object(conn: sqlite3.Connection, ts: int, op: pb.AbortObject) -> ApplyResult:
    row = conn.execute("SELECT state FROM objects WHERE object_id = ?", (op.object_id,)).fetchone()
    if row is None:
        return ApplyResult(Outcome.OBJECT_NOT_FOUND)
    if row[0] != "PENDING":
        return ApplyResult(Outcome.OBJECT_NOT_PENDING)
    conn.execute("UPDATE objects SET state = 'FAILED', updated_at = ? WHERE object_id = ?",
                 (ts, op.object_id))
    return OK


def _update_cradle_status(conn: sqlite3.Connection, ts: int,
                          op: pb.UpdateCradleStatus) -> ApplyResult:
    conn.execute(
        "UPDATE cradle_servers SET status = ?, available_bytes = ?, consecutive_misses = ?,"
        " last_heartbeat_at = ?, updated_at = ? WHERE id = ? AND unregistered_at IS NULL",
        (op.status, op.available_bytes, op.consecutive_misses, op.last_heartbeat_us, ts,
         op.cradle_server_id))
    return OK


def _unregister_cradle(conn: sqlite3.Connection, ts: int,
                       op: pb.UnregisterCradleServer) -> ApplyResult:
    """PlanWrite and heartbeats stop using the server; its row stays (objects name it), marked
    with the time. Refused while PENDING or COMMITTED objects are placed on it, unless forced:
    those objects are left as they are and keep naming its address. The check scans ``objects``
    when nothing live is on the server (no index on ``cradle_server_id``: ~0.16 s of apply at 1M
    objects, for a rare admin call, where an index would cost every PlanWrite)."""
    row = conn.execute("SELECT id FROM cradle_servers WHERE address = ? AND unregistered_at IS NULL",
                       (op.address,)).fetchone()
    if row is None:
        return ApplyResult(Outcome.CRADLE_NOT_FOUND, cradle_address=op.address)
    if not op.force and conn.execute(
            "SELECT 1 FROM objects WHERE cradle_server_id = ? AND state IN ('PENDING', 'COMMITTED')"
            " LIMIT 1", (row[0],)).fetchone():
        return ApplyResult(Outcome.CRADLE_HAS_LIVE_OBJECTS, cradle_address=op.address,
                           cradle_server_id=row[0])
    conn.execute("UPDATE cradle_servers SET unregistered_at = ?, updated_at = ? WHERE id = ?",
                 (ts, ts, row[0]))
    return ApplyResult(cradle_server_id=row[0], cradle_address=op.address)


def _register_node(conn: sqlite3.Connection, ts: int, op: pb.RegisterNode) -> ApplyResult:
    conn.execute(
        "INSERT INTO cluster_nodes (raft_addr, node_id, grpc_addr, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (raft_addr) DO UPDATE SET"
        " node_id = excluded.node_id, grpc_addr = excluded.grpc_addr, updated_at = excluded.updated_at",
        (op.raft_addr, op.node_id, op.grpc_addr, ts, ts),
    )
    return OK


def _barrier(conn: sqlite3.Connection, ts: int, op: pb.Barrier) -> ApplyResult:
    return OK


#: Command oneof field → its apply function ``(conn, timestamp µs, op message) -> ApplyResult``.
_HANDLERS: dict[str, Callable[[sqlite3.Connection, int, Any], ApplyResult]] = {
    "create_bucket": _create_bucket,
    "register_cradle_server": _register_cradle,
    "plan_write": _plan_write,
    "commit_object": _commit_object,
    "delete_bucket": _delete_bucket,
    "delete_object": _delete_object,
    "delete_objects": _delete_objects,
    "put_objects": _put_objects,
    "abort_object": _abort_object,
    "update_cradle_status": _update_cradle_status,
    "unregister_cradle_server": _unregister_cradle,
    "register_node": _register_node,
    "barrier": _barrier,
}


def apply(conn: sqlite3.Connection, index: int, command: pb.Command, term: int = 0,
          record_position: bool = True) -> ApplyResult:
    """Apply one decoded entry at log ``index`` (Raft ``term``) inside the caller's open
    transaction.

    Runs under its own SAVEPOINT: a deterministic constraint failure rolls back only this entry
    and comes back as a result. Records ``(index, term)`` as the applied position either way
    (unless ``record_position`` is False: :func:`apply_batch` records the batch's last once, in
    the same transaction). Raises ``sqlite3.OperationalError`` / ``DatabaseError`` on I/O or
    corruption (the node must stop).
    """
    ts = command.timestamp_us
    op = command.WhichOneof("op")
    rid = command.request_id
    if index % DEDUPE_PRUNE_EVERY == 0:
        conn.execute("DELETE FROM request_dedupe WHERE log_index <= ?", (index - DEDUPE_WINDOW,))
    fingerprint = ""
    if rid:
        fingerprint = request_fingerprint(command)
        # Keyed by the id alone: the fingerprint covers the operation too, so an id reused for
        # another RPC is refused like one reused with other arguments.
        row = conn.execute(
            "SELECT result, fingerprint FROM request_dedupe WHERE request_id = ?", (rid,)).fetchone()
        if row is not None:  # a retry of an applied request: its original outcome, no effect
            if record_position:
                _record_position(conn, index, term)
            if row[1] != fingerprint:
                return ApplyResult(Outcome.REQUEST_ID_REUSED)
            return _result_from_json(row[0])
    conn.execute("SAVEPOINT entry")
    try:
        handler = _HANDLERS.get(op or "")
        if handler is None:  # decode() already refused unknown ops; keep the invariant loud.
            raise commands.CommandDecodeError(f"unknown operation {op!r}")
        result = handler(conn, ts, getattr(command, op or ""))
    except sqlite3.IntegrityError as e:
        # Same data + same entry → same constraint failure on every node: a result, not a crash.
        conn.execute("ROLLBACK TO entry")
        result = ApplyResult(Outcome.CONSTRAINT_VIOLATED, str(e))
    except OverflowError:
        # A value in the entry does not fit SQLite's 64-bit INTEGER: deterministic, a result.
        conn.execute("ROLLBACK TO entry")
        result = ApplyResult(Outcome.VALUE_OUT_OF_RANGE)
    conn.execute("RELEASE entry")
    if rid and op != "barrier":
        conn.execute(
            "INSERT INTO request_dedupe (request_id, op, log_index, result, fingerprint)"
            " VALUES (?, ?, ?, ?, ?)",
            (rid, op, index, _result_to_json(result), fingerprint),
        )
    if record_position:
        _record_position(conn, index, term)
    return result


def _record_position(conn: sqlite3.Connection, index: int, term: int) -> None:
    conn.execute("UPDATE raft_applied SET applied_index = ?, applied_term = ? WHERE id = 1",
                 (index, term))


@dataclass(frozen=True)
class Applied:
    """One entry's outcome in a batch: its log index, its proposal id, its result (``None`` when
    the entry was at or below the applied index and therefore skipped)."""

    index: int
    proposal_id: str
    result: ApplyResult | None


def apply_batch(conn: sqlite3.Connection,
                entries: Iterable[tuple[int, bytes] | tuple[int, bytes, int]]) -> list[Applied]:
    """Apply ``(log index, entry bytes[, term])`` tuples, in order, in one transaction.

    Entries at or below the stored applied index are skipped (journal replay). Raises
    :class:`~gantry.state.commands.CommandDecodeError` for an undecodable entry, :class:`DivergenceError`
    when the entry at the applied index has another term than the one applied there, and
    ``sqlite3`` errors for I/O failures; in each case the whole transaction is rolled back and
    nothing is recorded.
    """
    out: list[Applied] = []
    moved = False
    conn.execute("BEGIN IMMEDIATE")
    try:
        last, last_term = applied_position(conn)
        for item in entries:
            index, data = item[0], item[1]
            term = item[2] if len(item) > 2 else 0  # type: ignore[misc]
            if index <= last:
                if index == last and term and last_term and term != last_term:
                    raise DivergenceError(
                        f"log index {index} was applied at term {last_term} but the Raft log holds "
                        f"term {term} there")
                out.append(Applied(index, "", None))
                continue
            cmd = commands.decode(data)
            out.append(Applied(index, cmd.proposal_id,
                               apply(conn, index, cmd, term, record_position=False)))
            last, last_term = index, term
            moved = True
        if moved:  # one UPDATE for the batch: the position is only read after COMMIT
            _record_position(conn, last, last_term)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLITE_FULL may have rolled it back already
            conn.execute("ROLLBACK")
        raise
    return out

"""Read consistency: which log index a read must reflect before it runs on a local read-only
connection.

Levels (chosen per call with gRPC metadata, so upstream request messages stay unchanged):

- ``x-gantry-consistency: linearizable`` (the default): a read index (Raft thesis §6.4,
  :mod:`gantry.consensus.readindex`) — the leader's commit index, confirmed by one round of
  append_entries that a majority acknowledged after the read arrived (no log entry is written) —
  then the read waits until this node applied it and runs locally. It never returns state older
  than a write acknowledged before the read began, on any node, even on a deposed leader (no
  leases, no clocks). Concurrent reads share rounds: a read waits for the first round started
  after it arrived. (A barrier entry through the log replaces the round while the leader runs an
  older build.)
- ``x-gantry-min-log-index: N`` (read-your-writes): wait until this node applied log index ``N``
  — the ``x-gantry-log-index`` a write returned — then read locally. No log round trip.
- ``x-gantry-consistency: stale``: read this node's state at once.

The API waits on the gRPC event loop (:func:`wait_for_read_async`): a read index and the applied
index are asyncio waits resolved once per read-index result and once per applied batch, so a waiting
read holds no thread.

Every read reply carries ``x-gantry-log-index``: the applied index the read saw (at least).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeAlias

import grpc

from gantry.api.errors import IndexNotApplied, RpcError, invalid_argument
from gantry.consensus.errors import Stopping
from gantry.consensus.readindex import LoopReadIndex
from gantry.db import Watermark

CONSISTENCY_KEY = "x-gantry-consistency"
MIN_INDEX_KEY = "x-gantry-min-log-index"
#: The largest log index (int64, as SQLite and the Status fields hold it).
MAX_LOG_INDEX = 2**63 - 1
LOG_INDEX_KEY = "x-gantry-log-index"
#: Longest a read waits for its index when the client set no deadline (seconds).
DEFAULT_READ_TIMEOUT_S = 10.0

#: A call's context, sync or grpc.aio (both have the methods read here).
AnyContext: TypeAlias = "grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any]"


class Consistency(enum.Enum):
    LINEARIZABLE = "linearizable"
    STALE = "stale"
    MIN_INDEX = "min-index"


def parse(context: AnyContext) -> tuple[Consistency, int]:
    """``(level, min index)`` from the call's metadata; raises RpcError(INVALID_ARGUMENT)."""
    level, min_index = "", 0
    for k, v in context.invocation_metadata() or ():
        if k == CONSISTENCY_KEY:
            level = str(v).strip().lower()
        elif k == MIN_INDEX_KEY:
            try:
                min_index = int(v)
            except ValueError:
                raise invalid_argument("InvalidMinLogIndex", MIN_INDEX_KEY) from None
            # A log index is ≥ 0 (Raft §5.3; 0 = nothing to wait for) and an int64, as in the
            # x-gantry-log-index trailer and SQLite: a larger one could only wait out the deadline.
            if not 0 <= min_index <= MAX_LOG_INDEX:
                raise invalid_argument("InvalidMinLogIndex", MIN_INDEX_KEY)
    if min_index and level in ("", Consistency.MIN_INDEX.value):
        return Consistency.MIN_INDEX, min_index
    if level in ("", Consistency.LINEARIZABLE.value):
        return Consistency.LINEARIZABLE, min_index
    if level == Consistency.STALE.value:
        return Consistency.STALE, min_index
    raise invalid_argument("InvalidConsistency", CONSISTENCY_KEY)


def timeout_of(context: AnyContext, default_s: float = DEFAULT_READ_TIMEOUT_S) -> float:
    """Seconds this call may still wait: the client's deadline less a margin, at most
    ``default_s`` (no client deadline shows up as None or as an enormous number of seconds).
    The margin (2 % of the time left, between 10 and 100 ms) leaves room for the answer to reach
    the client before its deadline on a busy node, so the client gets the node's own status
    message rather than gRPC's generic "Deadline Exceeded" (5 ms lost that race under load)."""
    r = context.time_remaining()
    if r is None or r > default_s:
        return default_s
    return max(0.0, r - deadline_margin_s(r))


def deadline_margin_s(remaining_s: float) -> float:
    """How long before the client's deadline (seconds) a waiting call gives up and answers:
    2 % of ``remaining_s``, at least 10 ms and at most 100 ms."""
    return min(0.1, max(0.01, 0.02 * remaining_s))


async def wait_for_read_async(context: grpc.aio.ServicerContext[Any, Any], watermark: Watermark,
                              read_index: LoopReadIndex,
                              on_error: Callable[[BaseException], RpcError]) -> int:
    """Wait, on the event loop (no thread waits), until this node may serve the call's read;
    returns the applied index to report. ``read_index``: the loop's side of the node's
    :class:`~gantry.consensus.readindex.ReadIndex`.

    Raises RpcError: INVALID_ARGUMENT for bad metadata; otherwise ``on_error(e)`` — the call's
    status for ``e`` (:data:`~gantry.api.errors.STATUSES`, kind READ) — for the read index's
    failure (a :class:`~gantry.consensus.errors.ConsensusError`: no leader, lost leadership,
    stopping; or ``TimeoutError``), for :class:`~gantry.api.errors.IndexNotApplied` when the
    index is not applied here in time, and for :class:`~gantry.consensus.errors.Stopping` when
    the node closed the watermark."""
    level, min_index = parse(context)
    timeout = timeout_of(context)
    if level is Consistency.LINEARIZABLE:
        try:
            min_index = max(min_index, await read_index.index(timeout))
        except Exception as e:  # consensus failed (no leader, lost leadership, stopping), deadline
            raise on_error(e) from None
    if min_index and not await watermark.wait_async(min_index, timeout):
        if watermark.closed:  # the node is stopping: what its proposals get too
            raise on_error(Stopping())
        raise on_error(IndexNotApplied(min_index))
    return watermark.value

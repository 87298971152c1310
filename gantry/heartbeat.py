"""Storage-server health: while this node leads, it calls every registered cradle server's
``cradle.service.v1.CradleService/Heartbeat`` each interval and records what it saw through the
log, so every node agrees on which servers PlanWrite may choose.

Status rules (decided here, before proposing, so apply stays deterministic): a successful
heartbeat → HEALTHY with the reported ``available_bytes``; each miss in a row → DEGRADED; from
``OFFLINE_AFTER`` misses in a row → OFFLINE, where the count stops (a server that stays
unreachable changes nothing more). An entry is proposed only when something changed, so an
OFFLINE server costs no log entry until it answers again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import grpc
import structlog

from gantry.db import ReadPool
from gantry.ids import now_us
from gantry.pb.cradle.service.v1 import service_pb2 as cradle_pb
from gantry.pb.cradle.service.v1 import service_pb2_grpc as cradle_grpc
from gantry.state import commands

log = structlog.get_logger("gantry.heartbeat")

#: Consecutive missed heartbeats after which a server is OFFLINE (one miss: DEGRADED).
OFFLINE_AFTER = 3
#: How often (seconds) the leader looks for newly registered servers to heartbeat at once.
NEW_SERVER_POLL_S = 0.5


def next_status(ok: bool, misses: int) -> tuple[str, int]:
    """``(status, consecutive misses)`` after one heartbeat that succeeded (``ok``) or not,
    given the misses in a row before it. The count stops at :data:`OFFLINE_AFTER`: counting on
    made every round propose an entry for every OFFLINE server, forever (2,880 a day for one
    dead server at the default 30 s)."""
    if ok:
        return "HEALTHY", 0
    misses = min(misses + 1, OFFLINE_AFTER)
    return ("OFFLINE" if misses >= OFFLINE_AFTER else "DEGRADED"), misses


class CradleMonitor:
    """Background heartbeats. ``is_leader()`` gates the work; ``propose(command, timeout_s)``
    writes the observations. ``interval_s`` ≤ 0 disables the monitor."""

    def __init__(self, reads: ReadPool, is_leader: Callable[[], bool],
                 propose: Callable[[Any, float], Any], interval_s: float) -> None:
        self._reads = reads
        self._is_leader = is_leader
        self._propose = propose
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._channels: dict[str, grpc.Channel] = {}

    def start(self) -> None:
        if self._interval <= 0:
            log.info("heartbeats_disabled")
            return
        self._thread = threading.Thread(target=self._run, name="cradle-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def _run(self) -> None:
        # Full rounds every interval; in between, every NEW_SERVER_POLL_S, servers that were
        # registered but never heartbeated get their first one (PlanWrite places objects only on
        # servers that reported their room, so a new server should not wait a whole interval).
        next_full = 0.0
        while not self._stop.wait(min(self._interval, NEW_SERVER_POLL_S)):
            try:
                if not self._is_leader():
                    self._close_channels(keep=set())  # a follower heartbeats nobody
                    continue
                now = time.monotonic()
                if now >= next_full:
                    next_full = now + self._interval
                    self.round()
                else:
                    self.round(only_new=True)
            except Exception:
                log.exception("heartbeat_round_failed")

    def _close_channels(self, keep: set[str]) -> None:
        """Close the channels to every address not in ``keep`` (unregistered servers, changed
        addresses, all of them once this node no longer leads): one channel, and its sockets
        and threads, would otherwise stay per address ever heartbeated."""
        for address in [a for a in self._channels if a not in keep]:
            self._channels.pop(address).close()

    def _stub(self, address: str) -> cradle_grpc.CradleServiceStub:
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = grpc.insecure_channel(address)
        return cradle_grpc.CradleServiceStub(ch)

    def round(self, only_new: bool = False) -> int:
        """Heartbeat every registered server once (``only_new``: only those never heartbeated);
        returns how many updates were proposed."""
        where = " AND last_heartbeat_at = 0 AND consecutive_misses = 0" if only_new else ""
        rows = self._reads.conn().execute(
            "SELECT id, address, status, available_bytes, consecutive_misses, last_heartbeat_at"
            " FROM cradle_servers WHERE unregistered_at IS NULL" + where).fetchall()
        if not only_new:
            self._close_channels(keep={row[1] for row in rows})
        if not rows:
            return 0
        timeout = max(0.2, min(self._interval * 0.5, 5.0))
        calls: list[tuple[tuple[Any, ...], Future[Any]]] = []
        for row in rows:
            calls.append((row, self._stub(row[1]).Heartbeat.future(cradle_pb.HeartbeatRequest(),
                                                                  timeout=timeout)))
        proposed = 0
        for (cid, address, status, avail, misses, last_hb), fut in calls:
            try:
                resp = fut.result()
                ok, new_avail, new_last = True, int(resp.available_bytes), now_us()
            except grpc.RpcError as e:
                ok, new_avail, new_last = False, avail, last_hb
                log.debug("heartbeat_missed", address=address, code=e.code().name)
            new_status, new_misses = next_status(ok, misses)
            if (new_status, new_avail, new_misses) == (status, avail, misses):
                continue
            try:
                self._propose(commands.update_cradle_status(cid, new_status, new_avail,
                                                            new_misses, new_last), 5.0)
                proposed += 1
            except Exception as e:  # lost leadership etc.: the next round tries again
                log.warning("heartbeat_update_failed", address=address, error=repr(e))
                continue
            if new_status != status:
                log.info("cradle_status_changed", address=address, status=new_status,
                         previous_status=status, available_bytes=new_avail, misses=new_misses)
        return proposed

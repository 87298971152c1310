"""CradleMonitor alone (gantry.heartbeat): the miss count stops at OFFLINE_AFTER, and channels
to servers it no longer heartbeats are closed. The database is a stand-in returning fixed rows;
the heartbeats are real gRPC calls to 127.0.0.1 ports where nothing listens."""

from __future__ import annotations

from typing import Any

from gantry.heartbeat import OFFLINE_AFTER, CradleMonitor, next_status
from tests.support import free_ports


class _Rows:
    """What ``ReadPool.conn().execute(sql).fetchall()`` returns: ``rows``."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def conn(self) -> _Rows:
        return self

    def execute(self, _sql: str) -> _Rows:
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


def test_the_miss_count_stops_at_offline() -> None:
    seen = [next_status(False, m) for m in range(OFFLINE_AFTER + 3)]
    assert seen[-1] == ("OFFLINE", OFFLINE_AFTER) and seen[-2] == ("OFFLINE", OFFLINE_AFTER)
    assert next_status(True, OFFLINE_AFTER) == ("HEALTHY", 0)


def test_channels_to_servers_no_longer_heartbeated_are_closed() -> None:
    a, b = (f"127.0.0.1:{p}" for p in free_ports(2))
    reads = _Rows()
    proposed: list[Any] = []
    monitor = CradleMonitor(reads, lambda: True, lambda cmd, _t: proposed.append(cmd), 0.4)  # type: ignore[arg-type]
    reads.rows = [("c1", a, "HEALTHY", -1, 0, 0), ("c2", b, "HEALTHY", -1, 0, 0)]
    assert monitor.round() == 2 and set(monitor._channels) == {a, b}
    reads.rows = [("c2", b, "DEGRADED", -1, 1, 0)]  # a was unregistered
    monitor.round()
    assert set(monitor._channels) == {b}
    reads.rows = [("c2", b, "OFFLINE", -1, OFFLINE_AFTER, 0)]
    proposed.clear()
    assert monitor.round() == 0 and proposed == []  # still unreachable: nothing changed
    reads.rows = []
    monitor.round()
    assert monitor._channels == {}
    monitor.stop()

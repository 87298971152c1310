"""Pinned pysyncobj behaviour Gantry relies on: inside the replicated method
``raftLastApplied + 1`` is the entry's log index, indexes strictly increase, and a journal
replay on restart hands the same (index, entry) pairs again."""

from __future__ import annotations

import pathlib
import threading

from pysyncobj import SyncObjConf

from gantry.actors.raft import GantrySyncObj
from gantry.consensus.journal import DurableJournal
from tests.support import free_ports, wait_until


def _node(tmp: pathlib.Path, port: int, seen: list[tuple[int, bytes]]) -> GantrySyncObj:
    conf = SyncObjConf(journalFile=str(tmp / "j"), autoTickPeriod=0.005, appendEntriesUseBatch=False,
                       dynamicMembershipChange=True)
    return GantrySyncObj(f"127.0.0.1:{port}", [], conf, lambda i, d, _t: seen.append((i, d)),
                         DurableJournal(str(tmp / "raft.log")))


def test_pysyncobj_version_is_pinned() -> None:
    from pysyncobj.version import VERSION

    assert VERSION == "0.3.17", "Gantry depends on 0.3.17 internals; re-verify before upgrading"


def test_log_index_strictly_increases_and_replays_identically(tmp_path: pathlib.Path) -> None:
    [port] = free_ports(1)
    seen: list[tuple[int, bytes]] = []
    node = _node(tmp_path, port, seen)
    returned: dict[bytes, int] = {}
    done = threading.Event()
    try:
        wait_until(lambda: node._isLeader(), 10, what="leader")
        for i in range(50):
            data = f"entry-{i}".encode()

            def cb(res: object, err: int, data: bytes = data) -> None:
                returned[data] = res  # type: ignore[assignment]
                if len(returned) == 50:
                    done.set()

            node.apply_entry(data, callback=cb)
        assert done.wait(10)
    finally:
        node.destroy_synchronous()
    indexes = [i for i, _ in seen]
    assert indexes == sorted(set(indexes)), "indexes must strictly increase"
    # The index seen inside the method is the one reported to the proposer.
    assert {d: i for i, d in seen} == returned
    first_run = list(seen)

    seen.clear()
    node = _node(tmp_path, port, seen)
    try:
        wait_until(lambda: len(seen) >= len(first_run), 10, what="journal replay")
    finally:
        node.destroy_synchronous()
    assert seen[: len(first_run)] == first_run

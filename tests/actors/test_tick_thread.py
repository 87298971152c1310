"""The Raft tick thread never waits on another actor, and engine state is read only on it
(issue 8 item 2): a snapshot is pinned by the writer through the entry queue while the tick
thread polls; other threads reach the engine through asks the tick thread answers."""

from __future__ import annotations

import pathlib
import threading
from typing import Any

import pytest
from pysyncobj import SERIALIZER_STATE

from gantry.actors.raft import RaftActor, _TickAsks
from gantry.actors.writer import DRAIN, EntryQueue, WriterActor
from gantry.config import Config
from gantry.consensus.errors import Stopping
from gantry.consensus.proposals import Proposals
from gantry.db import Watermark
from gantry.state import migrate, snapshot
from tests.support import wait_until


class _Node:
    def __init__(self, addr: str) -> None:
        self.id = addr


class StalledWriter(WriterActor):
    """A writer whose thread is busy (a long apply batch, a restore) until ``release`` is set."""

    release = threading.Event()

    def on_receive(self, message: Any) -> Any:
        self.release.wait(30)
        return super().on_receive(message)


def test_snapshot_serializer_never_waits_for_the_writer(tmp_path: pathlib.Path) -> None:
    db_path = tmp_path / "gantry.db"
    migrate.upgrade(db_path)
    queue, watermark, proposals = EntryQueue(), Watermark(), Proposals()
    StalledWriter.release.clear()
    writer = StalledWriter.start(db_path, queue, watermark, proposals, lambda _r: None)
    try:
        writer.proxy().applied_index().get(timeout=10)
        writer.tell(DRAIN)  # the writer's thread is now busy until release
        actor = RaftActor(Config(data_dir=tmp_path), queue, writer, proposals, watermark,
                          lambda _s: None)
        actor._dump_path = str(tmp_path / "raft.snapshot")
        meta = ((b"", 7, 1), (b"", 6, 1), {_Node("127.0.0.1:1")})
        serialized = threading.Event()

        def serialize() -> None:  # pysyncobj calls this on the tick thread
            actor._serialize(str(tmp_path / "raft.snapshot.tmp"), meta)
            serialized.set()

        threading.Thread(target=serialize, daemon=True).start()
        # Before the fix the tick thread blocked here on the writer (up to 120 s): heartbeats
        # stopped and followers started elections while a snapshot was being pinned.
        assert serialized.wait(5), "the tick thread waited on the writer"
        for _ in range(3):
            assert actor._serialize_checker() == SERIALIZER_STATE.SERIALIZING
        StalledWriter.release.set()
        state = wait_until(lambda: (st := actor._serialize_checker()) != SERIALIZER_STATE.SERIALIZING
                           and st, 30, 0.01, "snapshot built")
        assert state == SERIALIZER_STATE.SUCCESS
        meta_json, applied = snapshot.read_meta(pathlib.Path(actor._dump_path))
        assert snapshot.decode_meta(meta_json, _Node)[0][1] == 7
        assert actor._serialize_checker() == SERIALIZER_STATE.NOT_SERIALIZING
    finally:
        StalledWriter.release.set()
        writer.stop()


def test_a_cancelled_snapshot_request_releases_its_read_transaction(tmp_path: pathlib.Path) -> None:
    # The node stops after the writer pinned a snapshot but before the tick thread built it: the
    # pinned read transaction must not outlive the Raft actor (it would hold the WAL).
    db_path = tmp_path / "gantry.db"
    migrate.upgrade(db_path)
    queue, watermark, proposals = EntryQueue(), Watermark(), Proposals()
    writer = WriterActor.start(db_path, queue, watermark, proposals, lambda _r: None)
    try:
        actor = RaftActor(Config(data_dir=tmp_path), queue, writer, proposals, watermark,
                          lambda _s: None)
        actor._dump_path = str(tmp_path / "raft.snapshot")
        actor._serialize(str(tmp_path / "raft.snapshot.tmp"),
                         ((b"", 3, 1), (b"", 2, 1), {_Node("127.0.0.1:1")}))
        request = actor._pending_snapshot
        assert request is not None
        assert request.ready.wait(10)
        pending = request.pending
        assert pending is not None and not pending.done.is_set()
        request.cancel()
        assert pending.done.is_set()
        assert request.claim() is None
    finally:
        writer.stop()


def test_asks_run_on_the_tick_thread_and_fail_once_closed() -> None:
    woken: list[int] = []
    asks = _TickAsks(lambda: woken.append(1))
    tick_thread: list[threading.Thread] = []
    stop = threading.Event()

    def tick() -> None:
        tick_thread.append(threading.current_thread())
        while not stop.is_set():
            asks.run("engine")
            stop.wait(0.001)

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    try:
        assert asks.ask(lambda e: (e, threading.current_thread())) == ("engine", t)
        with pytest.raises(ZeroDivisionError):
            asks.ask(lambda _e: 1 // 0)
        assert woken
    finally:
        stop.set()
        t.join()
    asks.close()
    with pytest.raises(Stopping):
        asks.ask(lambda e: e, timeout_s=1)

"""The writer moves the applied index over entries that change nothing in the database (a
leader's no-op, a membership change) in queue order: only once every entry queued before them is
applied. Reads wait on that index; a read index at a no-op waited for the next write."""

from __future__ import annotations

import pathlib

from gantry.actors.writer import DRAIN, EntryQueue, Position, WriterActor
from gantry.consensus.proposals import Proposals
from gantry.db import Watermark
from gantry.state import commands, migrate


def test_queue_hands_a_position_after_the_entries_before_it() -> None:
    q = EntryQueue()
    q.put(1, b"a", 1)
    q.put(2, b"b", 1)
    q.put_position(3)
    q.put(4, b"c", 2)
    assert q.take(64) == [(1, b"a", 1), (2, b"b", 1)]
    assert q.take(64) == Position(3)
    assert q.take(64) == [(4, b"c", 2)]
    assert q.take(64) == []


def test_the_applied_index_moves_to_a_position_once_the_entries_before_it_applied(
        tmp_path: pathlib.Path) -> None:
    db = tmp_path / "gantry.db"
    migrate.upgrade(db)
    queue, watermark = EntryQueue(), Watermark()
    writer = WriterActor.start(db, queue, watermark, Proposals(), lambda reason: None)
    try:
        queue.put(1, commands.create_bucket("b-1", "").SerializeToString(), 1)
        queue.put_position(2)  # e.g. a new leader's no-op after it
        writer.tell(DRAIN)
        assert watermark.wait_for(2, 10), watermark.value
        assert writer.proxy().applied_index().get(timeout=10) == 2
    finally:
        writer.stop()

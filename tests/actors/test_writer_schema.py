"""A snapshot restored from a leader on another build (issue 9: rolling upgrade across a schema
migration): an older schema is upgraded at once, a newer one stops the writer with a clear
reason instead of applying entries to a schema this build does not know."""

from __future__ import annotations

import pathlib
import sqlite3

from gantry.actors.writer import EntryQueue, WriterActor
from gantry.consensus.proposals import Proposals
from gantry.db import Watermark
from gantry.state import migrate


def _at(db: pathlib.Path, index: int, term: int) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT OR REPLACE INTO raft_applied (id, applied_index, applied_term) "
                     "VALUES (1, ?, ?)", (index, term))
    conn.close()


def _restore(tmp: pathlib.Path, snap: pathlib.Path) -> tuple[int, list[str]]:
    live = tmp / "gantry.db"
    migrate.upgrade(live)
    fatal: list[str] = []
    writer = WriterActor.start(live, EntryQueue(), Watermark(), Proposals(), fatal.append)
    try:
        restored: int = writer.proxy().restore_if_needed(snap, True).get(timeout=30)
    except Exception as e:  # the newer-schema case raises through the proxy
        fatal.append(repr(e))
        restored = -1
    finally:
        writer.stop()
    return restored, fatal


def test_a_snapshot_with_an_older_schema_is_upgraded_on_restore(tmp_path: pathlib.Path) -> None:
    snap = tmp_path / "old.db"
    migrate.upgrade(snap)
    migrate.downgrade(snap, steps=2)  # a leader two migrations behind this build
    _at(snap, 40, 3)
    assert len(migrate.status(snap).pending) == 2
    restored, fatal = _restore(tmp_path, snap)
    assert (restored, fatal) == (40, [])
    assert migrate.status(tmp_path / "gantry.db").pending == []  # ready for this build's apply


def test_a_snapshot_with_a_newer_schema_is_refused(tmp_path: pathlib.Path) -> None:
    snap = tmp_path / "new.db"
    migrate.upgrade(snap)
    _at(snap, 40, 3)
    conn = sqlite3.connect(snap)
    with conn:  # a migration this build does not know (written by a newer gantry)
        conn.execute("INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) "
                     "VALUES ('f' || hex(randomblob(31)), '9999_from_the_future', "
                     "datetime('now'))")
    conn.close()
    _restored, fatal = _restore(tmp_path, snap)
    assert fatal and "newer version" in fatal[0]

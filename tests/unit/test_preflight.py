"""gantry.preflight on SQLite files: a main file shorter than its header says is truncated only
when no WAL is there to recover from (a kill -9 during a checkpoint leaves exactly that shape,
and SQLite recovers it on open) — found by the fault campaign: a node refused to start for good
after kill -9."""

from __future__ import annotations

import pathlib
import sqlite3

from gantry.preflight import sqlite_problem


def _crash_image(tmp: pathlib.Path, keep_wal: bool) -> pathlib.Path:
    """A crash during a checkpoint: the main file already carries the new page count in its
    header but not all pages; the WAL still holds every frame."""
    live = tmp / "live"
    live.mkdir()
    conn = sqlite3.connect(live / "gantry.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 200,) for _ in range(2000)])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # main file written; the WAL keeps its frames
    image = tmp / "image"
    image.mkdir()
    data = (live / "gantry.db").read_bytes()
    (image / "gantry.db").write_bytes(data[: len(data) // 2])  # the crash: half the pages
    if keep_wal:
        (image / "gantry.db-wal").write_bytes((live / "gantry.db-wal").read_bytes())
    conn.close()
    return image / "gantry.db"


def test_short_file_without_a_wal_is_truncated(tmp_path: pathlib.Path) -> None:
    problem = sqlite_problem(_crash_image(tmp_path, keep_wal=False))
    assert problem is not None and problem.startswith("truncated")


def test_short_file_with_a_wal_to_recover_from_is_not_refused(tmp_path: pathlib.Path) -> None:
    db = _crash_image(tmp_path, keep_wal=True)
    assert sqlite_problem(db) is None
    conn = sqlite3.connect(db)  # and SQLite does recover it
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    conn.close()

"""`gantry migrate down`: refuses under a migration this build does not know, and asks before
rolling back several steps (``--yes`` skips the question; without a terminal it is required)."""

from __future__ import annotations

import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest

from gantry.state import migrate
from tests.support import REPO, free_ports


def _db(tmp_path: pathlib.Path) -> pathlib.Path:
    db = tmp_path / "gantry.db"
    migrate.upgrade(db)
    return db


def _gantry(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gantry.cli", "migrate", *args], cwd=str(REPO),
                          stdin=stdin, capture_output=True, text=True, timeout=60)


def _add_unknown(db: pathlib.Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc)"
                 " VALUES ('ffff', '9999_from_the_future', '2030-01-01 00:00:00')")
    conn.commit()
    conn.close()


def test_down_refuses_when_a_newer_unknown_migration_is_applied(tmp_path: pathlib.Path) -> None:
    db = _db(tmp_path)
    _add_unknown(db)
    before = migrate.status(db).applied
    r = _gantry("down", "--db", str(db))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "9999_from_the_future" in r.stderr and "does not know" in r.stderr
    assert migrate.status(db).applied == before  # nothing rolled back
    with pytest.raises(migrate.SchemaError, match="9999_from_the_future"):
        migrate.downgrade(db, 1)
    assert migrate.status(db).applied == before


def test_down_one_step_needs_no_confirmation(tmp_path: pathlib.Path) -> None:
    db = _db(tmp_path)
    newest = migrate.status(db).applied[-1]
    r = _gantry("down", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert f"rolled back: {newest}" in r.stdout
    assert newest in migrate.status(db).pending


def test_down_several_steps_without_a_terminal_needs_yes(tmp_path: pathlib.Path) -> None:
    db = _db(tmp_path)
    before = migrate.status(db).applied
    r = _gantry("down", "--steps", "2", "--db", str(db))
    assert r.returncode == 2
    assert "--yes" in r.stderr and before[-1] in r.stderr and before[-2] in r.stderr
    assert migrate.status(db).applied == before
    r = _gantry("down", "--steps", "2", "--yes", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert migrate.status(db).applied == before[:-2]


@pytest.mark.parametrize(("answer", "rolled_back"), [("n\n", False), ("\n", False), ("y\n", True)])
def test_down_several_steps_asks_on_a_terminal(tmp_path: pathlib.Path, answer: str,
                                               rolled_back: bool) -> None:
    db = _db(tmp_path)
    before = migrate.status(db).applied
    primary, secondary = os.openpty()
    try:
        os.write(primary, answer.encode())
        r = _gantry("down", "--steps", "3", "--db", str(db), stdin=secondary)
    finally:
        os.close(primary)
        os.close(secondary)
    assert "[y/N]" in r.stderr and before[-3] in r.stderr
    if rolled_back:
        assert r.returncode == 0, r.stderr
        assert migrate.status(db).applied == before[:-3]
    else:
        assert r.returncode == 2
        assert migrate.status(db).applied == before


def test_down_refuses_a_non_positive_step_count(tmp_path: pathlib.Path) -> None:
    db = _db(tmp_path)
    r = _gantry("down", "--steps", "0", "--db", str(db))
    assert r.returncode == 2 and "at least 1" in r.stderr


def test_status_changes_nothing_and_bad_files_are_one_line(tmp_path: pathlib.Path) -> None:
    # Operator trial: `migrate status` on an empty file wrote yoyo's tables into it; on a file
    # that is not SQLite, or a directory, it printed a traceback.
    empty = tmp_path / "empty.db"
    empty.touch()
    r = _gantry("status", "--db", str(empty))
    assert r.returncode == 0 and r.stdout.startswith("applied: -\npending: 0001"), r
    assert empty.stat().st_size == 0
    db = _db(tmp_path)
    r = _gantry("status", "--db", str(db))
    assert r.returncode == 0 and "pending: -" in r.stdout, r
    text = tmp_path / "notes.log"
    text.write_text("not a database\n" * 100)
    r = _gantry("status", "--db", str(text))
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"gantry: {text} is not a usable SQLite database (file is not a database)"], r.stderr
    truncated = tmp_path / "trunc.db"  # SQLite's header, then nothing: "malformed"
    truncated.write_bytes(db.read_bytes()[:100])
    r = _gantry("status", "--db", str(truncated))
    assert r.returncode == 2 and "not a usable SQLite database" in r.stderr, r.stderr
    assert not (tmp_path / "trunc.db-wal").exists() and not (tmp_path / "trunc.db-shm").exists()
    sub = tmp_path / "sub"
    sub.mkdir()
    r = _gantry("status", "--db", str(sub))
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"gantry: {sub} is not a database file (give --db the node's gantry.db)"], r.stderr


def _foreign(tmp_path: pathlib.Path) -> pathlib.Path:
    db = tmp_path / "notes.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    return db


def _tables(db: pathlib.Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        conn.close()


def test_someone_elses_database_is_refused_and_left_as_it_was(tmp_path: pathlib.Path) -> None:
    """`--db-path` at another program's SQLite file: Gantry's schema was added to it (and a
    snapshot install or restore would later replace the file whole, its own tables with it)."""
    db = _foreign(tmp_path)
    for action in ("status", "up"):
        r = _gantry(action, "--db", str(db))
        assert r.returncode == 2, r.stdout + r.stderr
        assert "not a Gantry database" in r.stderr and "notes" in r.stderr
        assert not (tmp_path / "LOCK").exists()  # nothing made beside the refused file
    with pytest.raises(migrate.SchemaError, match="not a Gantry database"):
        migrate.upgrade(db)
    assert _tables(db) == ["notes"]


@pytest.mark.parametrize("action", [["down"], ["down", "--steps", "2", "--yes"], ["break-lock"]])
def test_every_migrate_command_refuses_someone_elses_database(
        tmp_path: pathlib.Path, action: list[str]) -> None:
    """`migrate down` and `break-lock` wrote yoyo's lock table into another program's file:
    only `status` and `up` asked whether it was Gantry's."""
    db = _foreign(tmp_path)
    r = _gantry(*action, "--db", str(db))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "not a Gantry database" in r.stderr
    assert _tables(db) == ["notes"]
    assert not (tmp_path / "LOCK").exists()  # then `backup` took the directory for a data dir


def test_a_yoyo_managed_database_of_another_program_is_refused(tmp_path: pathlib.Path) -> None:
    """Holding a table named `_yoyo_migration` is not enough: its history must be Gantry's."""
    db = _foreign(tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE _yoyo_migration (migration_hash TEXT, migration_id TEXT,"
                 " applied_at_utc TEXT)")
    conn.execute("INSERT INTO _yoyo_migration VALUES ('h', '0001_notes', 'x')")
    conn.commit()
    conn.close()
    bare = tmp_path / "bare.db"
    conn = sqlite3.connect(bare)
    conn.execute("CREATE TABLE _yoyo_migration (x)")  # yoyo's name without its columns
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    for path in (db, bare):
        for fn in (migrate.upgrade, migrate.status, migrate.rollback_plan, migrate.break_lock):
            with pytest.raises(migrate.SchemaError, match="not a Gantry database.*notes"):
                fn(path)
    assert _tables(db) == ["notes", "_yoyo_migration"]
    assert _tables(bare) == ["_yoyo_migration", "notes"]


def test_a_database_rolled_all_the_way_back_upgrades_again(tmp_path: pathlib.Path) -> None:
    """Only yoyo's own tables left (`migrate down` past the first migration): still Gantry's."""
    db = tmp_path / "gantry.db"
    applied = migrate.upgrade(db)
    assert migrate.downgrade(db, len(applied)) == applied[::-1]
    assert migrate.status(db).applied == []
    assert migrate.upgrade(db) == applied


def test_a_new_or_empty_file_still_gets_the_schema(tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    assert migrate.upgrade(empty) == migrate.status(empty).applied
    assert migrate.upgrade(tmp_path / "new.db")
    assert not migrate.status(tmp_path / "new.db").pending


def test_serve_refuses_someone_elses_database(tmp_path: pathlib.Path) -> None:
    db = _foreign(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "gantry.cli", "serve", "--db-path", str(db), "--data-dir",
         str(tmp_path / "data"), "--port", "0", "--raft-addr", f"127.0.0.1:{free_ports(1)[0]}",
         "--metrics-addr", "off"],
        cwd=str(REPO), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env={**os.environ, "LOG_FORMAT": "json"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "not a Gantry database" in r.stderr
    assert _tables(db) == ["notes"]
    assert not (tmp_path / "LOCK").exists()  # then `backup` took the directory for a data dir


def _yoyo_app(tmp_path: pathlib.Path, migration_id: str, keep_table: bool) -> pathlib.Path:
    """Another application's database managed by yoyo: its own migration ``migration_id``
    (creating ``users``) applied, and rolled back unless ``keep_table``."""
    from yoyo import get_backend, read_migrations

    mdir = tmp_path / "app-migrations"
    mdir.mkdir()
    (mdir / f"{migration_id}.sql").write_text("CREATE TABLE users (name TEXT);\n")
    (mdir / f"{migration_id}.rollback.sql").write_text("DROP TABLE users;\n")
    (mdir / "0002_more.sql").write_text("CREATE TABLE more (x);\n")
    (mdir / "0002_more.rollback.sql").write_text("DROP TABLE more;\n")
    db = tmp_path / "app.db"
    backend = get_backend(f"sqlite:///{db}")
    migrations = read_migrations(str(mdir))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(migrations))
        if not keep_table:
            backend.rollback_migrations(backend.to_rollback(migrations))
    backend.connection.close()
    return db


@pytest.mark.parametrize(("migration_id", "keep_table"),
                         [("0001_users", False), ("0001_initial", True),
                          ("0001_initial", False)])
def test_another_yoyo_applications_history_is_not_gantrys(
        tmp_path: pathlib.Path, migration_id: str, keep_table: bool) -> None:
    """Only yoyo's tables left by another app's rolled-back migration got Gantry's schema; an
    app's own `0001_initial` was taken for Gantry's and called "a newer version"."""
    db = _yoyo_app(tmp_path, migration_id, keep_table)
    before = sorted(_tables(db))
    for action in ("status", "up", "down", "break-lock"):
        r = _gantry(action, "--db", str(db))
        assert r.returncode == 2 and "not a Gantry database" in r.stderr, (action, r.stderr)
    assert sorted(_tables(db)) == before
    assert not (tmp_path / "LOCK").exists()


def test_an_empty_file_has_nothing_to_roll_back_and_status_leaves_nothing(
        tmp_path: pathlib.Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    r = _gantry("status", "--db", str(db))  # reads only: no LOCK, no -wal/-shm left
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    r = _gantry("down", "--db", str(db))  # was "not a usable SQLite database (no such table)"
    assert r.returncode == 0 and "rolled back: nothing" in r.stdout, r.stdout + r.stderr


def test_break_lock_says_whether_there_was_a_lock(tmp_path: pathlib.Path) -> None:
    # It said "lock removed" of an empty file and of a database that held no lock.
    empty = tmp_path / "empty.db"
    empty.touch()
    r = _gantry("break-lock", "--db", str(empty))
    assert (r.returncode, r.stdout.strip()) == (0, "no lock to remove"), r.stderr
    db = tmp_path / "gantry.db"
    migrate.upgrade(db)
    r = _gantry("break-lock", "--db", str(db))
    assert (r.returncode, r.stdout.strip()) == (0, "no lock to remove"), r.stderr
    with sqlite3.connect(db) as conn:  # what a migration killed mid-way leaves behind
        conn.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, '2026-12-04', 1)")
    r = _gantry("break-lock", "--db", str(db))
    assert (r.returncode, r.stdout.strip()) == (0, "lock removed"), r.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM yoyo_lock").fetchone() == (0,)

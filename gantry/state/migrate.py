"""Schema migrations: versioned SQL files (``gantry/state/migrations/NNNN_name.sql`` up,
``NNNN_name.rollback.sql`` down), applied with the yoyo-migrations library at start-up.

Invariant: a node only opens a database whose applied migrations are all known to this build and
that no crashed migration left locked. Anything else is refused with a :class:`SchemaError` whose
message names the command that fixes it.
"""

from __future__ import annotations

import pathlib
import sqlite3
from dataclasses import dataclass

import structlog
from yoyo import get_backend, read_migrations
from yoyo.exceptions import LockTimeout

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent / "migrations"
#: The table yoyo-migrations records applied migrations in (``get_backend``'s default
#: ``migration_table``).
YOYO_TABLE = "_yoyo_migration"

log = structlog.get_logger("gantry.migrate")


class SchemaError(RuntimeError):
    """The database's schema version is unknown to this build, or a migration left it dirty."""


@dataclass(frozen=True)
class SchemaStatus:
    """Migration ids known to this build, applied to the file, and pending (not yet applied)."""

    known: list[str]
    applied: list[str]
    pending: list[str]
    unknown_applied: int


#: Every table yoyo-migrations keeps beside a schema it manages (``DatabaseBackend``'s
#: ``lock_table``, ``log_table``, ``version_table`` and our ``migration_table``).
YOYO_TABLES = frozenset({YOYO_TABLE, "_yoyo_log", "_yoyo_version", "yoyo_lock"})
#: Gantry's first migration: every Gantry database that holds any of Gantry's tables has it
#: applied (a newer build's migrations come after it, ``migrate down`` removes it last).
FIRST_MIGRATION = "0001_initial"


def _backend(db_path: pathlib.Path):  # type: ignore[no-untyped-def]
    """yoyo's backend for ``db_path`` — which writes (its lock table) as it opens, so every
    migrate command comes through here and :func:`refuse_foreign` runs first."""
    refuse_foreign(db_path)
    return get_backend(f"sqlite:///{db_path}")


def _has_yoyo_tables(db_path: pathlib.Path) -> bool:
    """Whether ``db_path`` holds yoyo's bookkeeping (opened read-only: nothing is written).
    Raises ``sqlite3.DatabaseError`` when the file is not a SQLite database."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                           " AND name = ?", (YOYO_TABLE,)).fetchone()
        return bool(row[0])
    finally:
        conn.close()


def _applied_anything(db_path: pathlib.Path) -> bool:
    """Whether ``db_path`` holds yoyo's bookkeeping (so something was applied to it once);
    refuses a foreign file first (:func:`refuse_foreign`)."""
    refuse_foreign(db_path)
    return db_path.exists() and _has_yoyo_tables(db_path)


def _foreign_tables(db_path: pathlib.Path) -> list[str]:
    """The tables and views of ``db_path`` that say it is not a Gantry database: empty for a
    new or empty file, for a file holding only yoyo's bookkeeping of Gantry's migrations (every
    one rolled back), and for a file whose history holds Gantry's :data:`FIRST_MIGRATION` and
    which holds :data:`GANTRY_TABLE` (the id alone could be another application's).
    Opened read-only. Raises ``sqlite3.DatabaseError`` when the file is not SQLite."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    names: list[str] = []
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            " AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        first = _first_hash()
        if YOYO_TABLE in names and GANTRY_TABLE in names:
            row = conn.execute(f"SELECT count(*) FROM {YOYO_TABLE} WHERE migration_id = ?"
                               " AND migration_hash = ?", (FIRST_MIGRATION, first)).fetchone()
            if row[0]:
                return []
        foreign = [n for n in names if n not in YOYO_TABLES]
        if not foreign and "_yoyo_log" in names:
            # Only yoyo's bookkeeping left: Gantry's if its log is empty or names only
            # migrations this build knows, its first among them (every one rolled back);
            # another application's history otherwise.
            ids = {r[0] for r in conn.execute("SELECT DISTINCT migration_id FROM _yoyo_log")}
            if ids and (FIRST_MIGRATION not in ids or not ids <= _known_ids()):
                return ["_yoyo_log (another application's migration history)"]
        return foreign
    except sqlite3.OperationalError:
        # A table named like yoyo's without its columns: not yoyo's, so not Gantry's.
        return [n for n in names if n not in YOYO_TABLES] or sorted(names)
    finally:
        conn.close()


_FIRST_HASH: list[str] = []
#: The table Gantry's first migration creates and only rolling it back drops: with the first
#: migration's id (which another application could use too) it marks a Gantry database.
GANTRY_TABLE = "raft_applied"


def _known_ids() -> set[str]:
    """The ids of the migrations this build knows."""
    return {m.id for m in read_migrations(str(MIGRATIONS_DIR))}


def _first_hash() -> str:
    """yoyo's hash of Gantry's :data:`FIRST_MIGRATION` (yoyo hashes the id)."""
    if not _FIRST_HASH:
        _FIRST_HASH.extend(m.hash for m in read_migrations(str(MIGRATIONS_DIR))
                           if m.id == FIRST_MIGRATION)
    return _FIRST_HASH[0]


def refuse_foreign(db_path: pathlib.Path) -> None:
    """Raise :class:`SchemaError` when ``db_path`` exists and holds tables that are neither
    yoyo's nor under Gantry's migration history (whose first entry is :data:`FIRST_MIGRATION`):
    someone else's SQLite file (``--db-path`` pointed at the wrong file), even one managed by
    yoyo too. Gantry adds its schema only to a new or empty file — and a node's database is
    replaced whole by a snapshot install or a restore, which would lose that file's own tables.
    Opened read-only. Raises ``sqlite3.DatabaseError`` when the file is not a SQLite database."""
    if not db_path.exists():
        return
    names = _foreign_tables(db_path)
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise SchemaError(
            f"{db_path} is not a Gantry database: it holds {shown} and no Gantry migration "
            "history, and Gantry only adds its schema to a new or empty file (its database is "
            "replaced whole by snapshot installs and restores). Point --db-path / "
            "GANTRY_DB_PATH at the node's gantry.db, or at a path that does not exist yet."
        )


def status(db_path: pathlib.Path) -> SchemaStatus:
    """Report the schema state of ``db_path`` without changing it: a file without yoyo's
    bookkeeping (new or empty) has nothing applied and is not opened for writing. Raises
    :class:`SchemaError` for a file that holds other tables and no migration history (not a
    Gantry database), ``sqlite3.DatabaseError`` when the file is not a SQLite database."""
    refuse_foreign(db_path)
    if not _has_yoyo_tables(db_path):
        known = [m.id for m in read_migrations(str(MIGRATIONS_DIR))]
        return SchemaStatus(known, [], known, 0)
    backend = _backend(db_path)
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        applied_hashes = set(backend.get_applied_migration_hashes())
        known = [m.id for m in migrations]
        known_hashes = {m.hash for m in migrations}
        applied = [m.id for m in migrations if m.hash in applied_hashes]
        pending = [m.id for m in migrations if m.hash not in applied_hashes]
        return SchemaStatus(known, applied, pending, len(applied_hashes - known_hashes))
    finally:
        backend.connection.close()


def upgrade(db_path: pathlib.Path, lock_timeout_s: float = 2.0) -> list[str]:
    """Apply every pending migration to ``db_path`` in order; returns the ids applied.

    Raises :class:`SchemaError`, changing nothing, when the file is not a Gantry database
    (tables and no migration history), carries a migration this build does not know (a newer
    build wrote it) or when a crashed migration left the yoyo lock behind.
    """
    backend = _backend(db_path)
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        known_hashes = {m.hash for m in migrations}
        unknown = set(backend.get_applied_migration_hashes()) - known_hashes
        if unknown:
            raise SchemaError(
                f"database {db_path} has {len(unknown)} migration(s) this build of gantry does not "
                "know (written by a newer version). Run the newer gantry, or roll the schema back "
                "with that version's `gantry migrate down`."
            )
        try:
            with backend.lock(timeout=lock_timeout_s):
                pending = backend.to_apply(migrations)
                for m in pending:
                    log.info("migration_applying", migration=m.id)
                backend.apply_migrations(pending)
                ids = [m.id for m in pending]
        except LockTimeout as e:
            raise _dirty(db_path, e, "start again") from e
        for mid in ids:
            log.info("migration_applied", migration=mid)
        return ids
    finally:
        backend.connection.close()


def _unknown_applied(backend, migrations) -> list[str]:  # type: ignore[no-untyped-def]
    """Ids (or hashes, when yoyo kept no id) of applied migrations this build does not know."""
    known_hashes = {m.hash for m in migrations}
    rows = backend.execute(backend.format_sql(
        "SELECT {quoted.migration_hash}, {quoted.migration_id} FROM {0.migration_table_quoted}"
        " ORDER BY {quoted.applied_at_utc}")).fetchall()
    return [str(mid or h) for h, mid in rows if h not in known_hashes]


def rollback_plan(db_path: pathlib.Path, steps: int = 1) -> list[str]:
    """The ids :func:`downgrade` would roll back for ``steps``, newest first, without changing
    anything. Raises :class:`SchemaError` when the file carries a migration this build does not
    know (rolling back under it would undo the wrong one), is not a Gantry database, or
    ``steps`` is not positive."""
    if steps < 1:
        raise SchemaError(f"--steps must be at least 1 (got {steps})")
    if not _applied_anything(db_path):
        return []
    backend = _backend(db_path)
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        return _plan(backend, migrations, db_path, steps)
    finally:
        backend.connection.close()


def _plan(backend, migrations, db_path: pathlib.Path, steps: int) -> list[str]:  # type: ignore[no-untyped-def]
    unknown = _unknown_applied(backend, migrations)
    if unknown:
        raise SchemaError(
            f"database {db_path} has migration(s) this build of gantry does not know: "
            f"{', '.join(unknown)} (written by a newer version). Refusing to roll back: this "
            "build would undo its own newest migration underneath them. Run `gantry migrate "
            "down` with the newer gantry that applied them first."
        )
    return [m.id for m in list(backend.to_rollback(migrations))[:steps]]


def downgrade(db_path: pathlib.Path, steps: int = 1, lock_timeout_s: float = 2.0) -> list[str]:
    """Roll back the last ``steps`` applied migrations; returns the ids rolled back.

    Refuses (:class:`SchemaError`, nothing changed) when the file carries a migration this build
    does not know, is not a Gantry database, when ``steps`` is not positive, or when the yoyo
    lock is held."""
    if steps < 1:
        raise SchemaError(f"--steps must be at least 1 (got {steps})")
    if not _applied_anything(db_path):
        return []
    backend = _backend(db_path)
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        try:
            with backend.lock(timeout=lock_timeout_s):
                ids = _plan(backend, migrations, db_path, steps)
                to_rollback = [m for m in backend.to_rollback(migrations) if m.id in ids]
                for m in to_rollback:
                    log.info("migration_rolling_back", migration=m.id)
                backend.rollback_migrations(migrations.__class__(to_rollback))
        except LockTimeout as e:
            raise _dirty(db_path, e, "try again") from e
        for mid in ids:
            log.info("migration_rolled_back", migration=mid)
        return ids
    finally:
        backend.connection.close()


def _dirty(db_path: pathlib.Path, e: LockTimeout, then: str) -> SchemaError:
    """The error for a migration lock held by another (or a crashed) process."""
    return SchemaError(
        f"database {db_path} is dirty: a migration was interrupted or is running ({e}). "
        f"If no other gantry process uses it, run `gantry migrate break-lock --db {db_path}` "
        f"and {then}.")


def break_lock(db_path: pathlib.Path) -> bool:
    """Remove a stale migration lock left by a crashed process: True when there was one, False
    when there was none (nothing is written then; nor in a file without yoyo's tables). Raises
    :class:`SchemaError`, writing nothing, when the file is not a Gantry database."""
    if not _applied_anything(db_path):
        return False
    backend = _backend(db_path)
    try:
        held = backend.execute(f"SELECT COUNT(*) FROM {backend.lock_table_quoted}").fetchone()[0]
        if held:
            backend.break_lock()
        return bool(held)
    finally:
        backend.connection.close()

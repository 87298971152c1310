"""Start-up checks of a node's files, run before anything opens them for writing.

Why: a damaged file used to surface late and badly — a corrupt record in the middle of
``raft.log`` was cut away on disk, a garbage ``raft.log.meta`` silently reset the term and vote (a
node could vote twice in one term), a truncated ``gantry.db`` gave a 20-line traceback, and a
truncated ``raft.snapshot`` beside a compacted log left a zombie (leader, NOT_SERVING forever,
only pysyncobj's "failed to load full dump" in the log). :func:`check` reads the files (never
writes them) and raises :class:`PreflightError` with one line: which file, what is wrong, what to
do. What it checks:

1. ``raft.log`` (:func:`gantry.consensus.journal.scan_log`): damage before the end is refused with the byte
   offset and the last good log index. A torn tail (a crash mid-append) passes: the journal cuts
   it on open and keeps a copy of the dropped bytes.
2. ``raft.log.meta`` (:func:`gantry.consensus.journal.read_meta`): missing is a fresh node, but
   only if nothing else on the node shows a term (a log entry of term ≥ 1, or ``raft.snapshot``):
   a node takes a term, durably, before it holds an entry of it, so a missing file beside them
   was deleted and the node would forget its vote (Raft §5.2, Figure 2); a current term below
   the last log entry's term (the file went back) is refused for the same reason; unreadable,
   not JSON or not term/vote-shaped is refused.
3. The database (``gantry.db``): missing or empty is fresh; otherwise it must be a SQLite file
   no shorter than its header says, whose schema and applied index can be read.
4. The Raft log against its snapshot: when the log was compacted (its first entry is above index
   2; index 1 is pysyncobj's no-op, so a log from 2 still replays whole) the entries before it
   exist only in ``raft.snapshot``, and pysyncobj cannot apply anything without loading it. A
   missing, unreadable, truncated or inconsistent snapshot (its database older than the Gantry
   entries its own Raft metadata ends with) then means the node can never catch up: refused,
   naming what is damaged and the database's applied index. When the database would be restored
   from the snapshot (it is behind it, missing or damaged), SQLite's ``quick_check`` reads the
   whole snapshot first (:func:`gantry.state.snapshot.damage`).
5. No ``RESTORING`` marker: ``gantry restore`` keeps one in the directory while it writes the
   files (:mod:`gantry.backup`); one left behind means the restore was interrupted.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import struct

from gantry.backup import RESTORING_MARKER
from gantry.config import Config
from gantry.consensus import journal
from gantry.consensus.pysyncobj_compat import BEFORE_INSTALL_SUFFIX, check_snapshot_position
from gantry.db import fsync_dir
from gantry.state import snapshot, statemachine

SQLITE_MAGIC = b"SQLite format 3\x00"
_RESTORE = ("restore the node from a peer (stop it, `gantry remove-node` it, wipe its data "
            "directory, start it empty and `gantry add-node` it: README, Damaged files), or "
            "restore the data directory from a backup; keep a copy of the directory first")


class PreflightError(RuntimeError):
    """A file in the data directory is damaged; the one-line message says which, what is wrong
    and what to do. The node must not start (the CLI exits 2)."""


def sqlite_problem(path: pathlib.Path) -> str | None:
    """What is wrong with the SQLite file at ``path``, or None when it looks usable (also when it
    is missing or empty: SQLite creates a fresh database there). Reads only: the header (page
    size and, when valid, the page count, against the file size), the schema, and the
    ``raft_applied`` row."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None
        with open(path, "rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if len(head) < 100:
        return f"only {size} bytes: shorter than a SQLite header"
    if not head.startswith(SQLITE_MAGIC):
        return "not a SQLite database (no SQLite header)"
    (page_size,) = struct.unpack_from(">H", head, 16)
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"not a SQLite database (page size {page_size} in its header)"
    change, pages, valid_for = (struct.unpack_from(">I", head, o)[0] for o in (24, 28, 92))
    wal = path.with_name(path.name + "-wal")
    # With a non-empty WAL beside it the main file may legitimately be shorter than its header
    # says: a crash during a checkpoint leaves pages only in the WAL, and SQLite recovers them on
    # open. Only a database without a WAL to recover from is truncated.
    hot_wal = wal.exists() and wal.stat().st_size > 0
    if pages and change == valid_for and size < pages * page_size and not hot_wal:
        return (f"truncated: its header says {pages} pages of {page_size} bytes "
                f"({pages * page_size} bytes), the file has {size}")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "raft_applied" in tables:
                statemachine.applied_index(conn)
        finally:
            conn.close()
    except sqlite3.Error as e:
        return f"unreadable: {e}"
    return None


def applied_index(path: pathlib.Path) -> int:
    """The database's applied log index; 0 when it is missing, empty, fresh or unreadable."""
    if sqlite_problem(path) is not None or not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        return snapshot.applied_position(path)[0]  # the same read-only query snapshots use
    except snapshot.SnapshotError:
        return 0


def snapshot_problem(path: pathlib.Path) -> str | None:
    """What keeps the snapshot at ``path`` from loading (``"missing"``, ``"empty"``, truncated,
    unreadable, no or bad Raft metadata), or None when it would load."""
    if not path.exists():
        return "missing"
    if path.stat().st_size == 0:
        return "empty"
    problem = sqlite_problem(path)
    if problem:
        return problem
    try:
        meta_json, applied = snapshot.read_meta(path)
        meta = snapshot.decode_meta(meta_json, str)
    except snapshot.SnapshotError as e:
        return f"unreadable: {e.__cause__}" if e.__cause__ else "missing its Raft metadata"
    except (ValueError, KeyError, TypeError, IndexError) as e:
        return f"carrying unreadable Raft metadata ({e!r})"
    try:
        check_snapshot_position(meta, applied)
    except snapshot.SnapshotError as e:
        return f"inconsistent ({e})"
    return None


#: The dump as it was before a leader's snapshot was renamed over it (pysyncobj_compat
#: override 17), while that snapshot is being checked and loaded.
BEFORE_INSTALL = "raft.snapshot" + BEFORE_INSTALL_SUFFIX


def settle_interrupted_install(data_dir: pathlib.Path) -> str | None:
    """Finish what a crash interrupted while a leader's snapshot was being checked (override
    17): when ``raft.snapshot.before-install`` is there, the received file went over the dump
    and the node stopped before it loaded or refused it. A received file that would not load
    (see :func:`snapshot_problem`) is replaced by the kept dump, as the running node would have
    done; one that would load is kept (installing it at start-up is what the node was doing),
    and the link goes. Returns "restored" / "kept" / None (nothing to settle). Run before
    :func:`check`, holding the data directory's lock; the only start-up step that writes."""
    keep = data_dir / BEFORE_INSTALL
    if not keep.exists():
        return None
    dump = data_dir / "raft.snapshot"
    if dump.exists() and snapshot_problem(dump) is None:
        keep.unlink()
        return "kept"
    os.replace(keep, dump)
    fsync_dir(dump)
    return "restored"


def _last_members(data_dir: pathlib.Path, scan: journal.LogScan) -> set[str] | None:
    """The members of the last configuration this data directory holds: the snapshot's, then
    the membership entries of its Raft log, in log order. None without a readable snapshot."""
    from gantry.consensus.pysyncobj_compat import membership_change

    snap = data_dir / "raft.snapshot"
    if snapshot_problem(snap) is not None:
        return None
    try:
        members = set(snapshot.decode_meta(snapshot.read_meta(snap)[0], str)[2])
    except (snapshot.SnapshotError, OSError, ValueError, KeyError, TypeError):
        return None
    for command, _index, _term in scan.entries:
        try:
            kind, addr = membership_change(command)
        except ValueError:
            continue
        (members.add if kind == "add" else members.discard)(addr)
    return members


def _restore_advice(config: Config, scan: journal.LogScan, db_intact: bool) -> str:
    """How to get the node back when its own files cannot be used: from a peer, or — on a
    one-member cluster, where no peer holds the data — from its own database when
    ``db_intact`` and it holds something (``gantry restore`` reads a stopped node's
    ``gantry.db`` as it reads a backup), else from a backup."""
    members = _last_members(pathlib.Path(config.data_dir), scan)
    alone = not config.peers and (members is None or members <= {config.raft_addr})
    if not alone:
        return _RESTORE
    db = pathlib.Path(config.database)
    if db_intact and db.is_file() and db.stat().st_size > 0:
        return ("this node is its cluster's only member, so no peer holds its data, but its "
                f"database is intact: seed a new data directory from it (`gantry restore "
                f"{config.database} --data-dir NEW_DIR --raft-addr {config.raft_addr}`) and "
                "start the node on NEW_DIR; keep a copy of this directory first")
    return ("this node is its cluster's only member, so no peer holds its data: restore a new "
            "data directory from a backup (`gantry restore BACKUP.db --data-dir NEW_DIR "
            f"--raft-addr {config.raft_addr}`); keep a copy of this directory first")


def check(config: Config) -> list[str] | None:
    """Refuse to start on damaged files: raises :class:`PreflightError` (see the module
    docstring for what is checked). Reads only; call it holding the data directory's lock,
    before migrations, the writer or Raft open anything.

    Returns the members of the last configuration the data directory holds (its snapshot's,
    then its log's membership entries) when ``config.raft_addr`` is not one of them, else None
    (also for a directory without a snapshot): a node started on it is counted out of its own
    cluster and waits for a leader for ever (a single node restarted with another
    ``--raft-addr``: NOT_SERVING, nothing logged)."""
    data_dir = pathlib.Path(config.data_dir)
    if (data_dir / RESTORING_MARKER).exists():
        raise PreflightError(
            f"data directory {data_dir} holds an unfinished `gantry restore` (its "
            f"{RESTORING_MARKER} file is there: the restore was interrupted): empty the directory "
            "and run the restore again")
    db_given = pathlib.Path(config.database)
    if db_given.is_dir():
        raise PreflightError(f"database path {db_given} is a directory: give --db-path "
                             "(GANTRY_DB_PATH) the database's file name, e.g. DATA_DIR/gantry.db")
    own = {(data_dir / n).resolve() for n in ("raft.log", "raft.log.meta", "raft.snapshot", "LOCK",
                                             BEFORE_INSTALL, RESTORING_MARKER)}
    if db_given.resolve() in own:
        raise PreflightError(f"database path {db_given} is one of the node's Raft files, not its "
                             "database: give --db-path (GANTRY_DB_PATH) another file name, e.g. "
                             "DATA_DIR/gantry.db")
    log_path = str(data_dir / "raft.log")
    try:
        scan = journal.scan_log(log_path)
    except OSError as e:
        raise PreflightError(f"cannot read Raft log {log_path} ({e.strerror})") from None
    db = pathlib.Path(config.database)
    db_problem = sqlite_problem(db)
    if scan.damage == "corrupt":
        advice = _restore_advice(config, scan, db_problem is None)
        raise PreflightError(scan.describe("" if advice == _RESTORE else advice))
    try:
        meta = journal.read_meta(log_path + ".meta")
    except journal.MetaCorrupt as e:
        advice = _restore_advice(config, scan, db_problem is None)
        raise PreflightError(str(e) if advice == _RESTORE else f"{e.problem}. "
                             f"{advice[0].upper()}{advice[1:]}") from None

    snap = data_dir / "raft.snapshot"
    log_term = max((e[2] for e in scan.entries), default=0)
    if meta and int(meta.get("currentTerm", 0)) < log_term:
        raise PreflightError(
            f"Raft metadata {log_path}.meta says term {meta.get('currentTerm')}, but {log_path} "
            f"holds entries of term {log_term}: a node takes a term, durably, before it holds an "
            "entry of it, so the file went back (edited, or restored from an older copy) and "
            f"this node could vote twice in one term. Put the right file back; else "
            f"{_restore_advice(config, scan, db_problem is None)}")
    if not meta:
        termed = [e for e in scan.entries if e[2] > 0]
        if termed or snap.exists():
            held = (f"{log_path} holds entries up to log index {termed[-1][1]} of term "
                    f"{termed[-1][2]}" if termed else f"{snap} exists")
            raise PreflightError(
                f"Raft metadata {log_path}.meta is missing, but {held}: it held this node's "
                "Raft term and vote, and starting without them could let it vote twice in one "
                "term. Put the file back if you have it; else "
                f"{_restore_advice(config, scan, db_problem is None)}")
    needs_snapshot = scan.first_index > 2
    snap_problem = snapshot_problem(snap) if needs_snapshot or db_problem else None
    if snap_problem is None and snap.exists() and (db_problem or (
            needs_snapshot and applied_index(db) < snapshot.read_meta(snap)[1])):
        # The database will be (or would have to be) restored from the snapshot: all of it
        # must read back, not only its header and metadata.
        damage = snapshot.damage(snap)
        if damage:
            snap_problem = f"damaged (SQLite's quick_check: {damage})"
    if db_problem:
        if scan.entries and not needs_snapshot:
            source = "raft.log (it holds the whole history)"
        elif snap_problem is None:
            source = "raft.snapshot and raft.log"
        else:
            source = ""
        if source:
            raise PreflightError(
                f"database {db} is damaged ({db_problem}). This node can rebuild it from its "
                f"{source}: with the node stopped, move {db.name} (and any {db.name}-wal and "
                f"{db.name}-shm) out of the way and start it again; or "
                f"{_restore_advice(config, scan, False)}")
        raise PreflightError(
            f"database {db} is damaged ({db_problem}), and snapshot {snap} is {snap_problem}; "
            f"the Raft log does not start at the beginning (first index {scan.first_index}), so "
            "no intact copy of the earlier entries is left on this node: "
            f"{_restore_advice(config, scan, False)}")
    if snap_problem:
        applied = applied_index(db)
        lost = (f"the database {db} has applied only up to index {applied}, so entries "
                f"{applied + 1}..{scan.first_index - 1} exist nowhere on this node"
                if applied < scan.first_index - 1 else
                f"the database {db} is at index {applied}, but Raft cannot start from a compacted "
                "log without its snapshot")
        raise PreflightError(
            f"snapshot {snap} is {snap_problem}, and the Raft log {log_path} starts at index "
            f"{scan.first_index} (earlier entries were compacted into the snapshot); {lost}. "
            f"The node would never catch up: {_restore_advice(config, scan, True)}")
    members = _last_members(data_dir, scan)
    if not members or config.raft_addr in members:
        return None
    return sorted(members)

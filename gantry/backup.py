"""Backup and restore: an online, consistent copy of one node's database, and a new data
directory seeded from it.

Purpose: ``gantry backup --addr HOST:PORT FILE`` asks any node (a follower too) for its database
through ``gantry.admin.v1.ClusterService/Backup``; ``gantry restore FILE --data-dir DIR`` turns
the file into the data directory of a new single-node cluster, which then grows with
``gantry add-node``.

Invariants:

- **One applied index.** The node copies its database with SQLite's online backup API from a
  read-only connection inside one read transaction (:func:`gantry.state.snapshot.write`, the
  same copy a Raft snapshot makes), so the file holds every row as of exactly one applied log
  index, the one its ``raft_applied`` row names. Writes go on meanwhile (WAL); the transaction is
  held only for the local copy, not while the copy streams.
- **No partial FILE.** The client writes ``FILE.tmp`` beside FILE and renames it over FILE only
  after the size and SHA-256 match the node's trailer, ``PRAGMA integrity_check`` says ``ok``,
  the applied position inside the file is the one the node announced, and the file is fsync'd.
- **A restored directory is a node that compacted its log at the backup's index**: ``gantry.db``
  (the backup), ``raft.snapshot`` (the same database plus Raft metadata whose configuration is the
  new node alone), ``raft.log`` holding the snapshot's two entries (no-ops at index-1 and index,
  in the backup's applied term) and ``raft.log.meta`` with that term as the current term. So the
  node starts from the snapshot (its database is at exactly the snapshot's position: kept, not
  copied again), its first election is in a later term than any entry in the file, and its log
  continues at index+1: log indexes never go backwards, request ids stay deduplicated, and a node
  added later receives the snapshot and the entries after it. A ``RESTORING`` marker lives in the
  directory while files are written; a node refuses to start beside it
  (:mod:`gantry.preflight`).

Trade-off: the node writes the copy into its data directory before streaming it (it needs as
much free space as the database; in return the read transaction, which holds the WAL back,
lasts only as long as a local copy). One backup runs at a time per node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from gantry.db import fsync_dir, fsync_file, open_ro
from gantry.state import snapshot, statemachine

if TYPE_CHECKING:
    from gantry.tlsconfig import ClientConfig

DEFAULT_CHUNK_BYTES = 1 << 20
MAX_CHUNK_BYTES = 2 << 20
#: How long (seconds) the client waits for the next message before it gives up on the node.
DEFAULT_IDLE_TIMEOUT_S = 60.0
#: The marker ``gantry restore`` keeps in a data directory while it writes it.
RESTORING_MARKER = "RESTORING"
_COPY_PREFIX = "backup-"


class BackupError(RuntimeError):
    """Backup or restore failed; the message is one line for an operator (what, why, what to do)."""


class BackupBusy(BackupError):
    """Another backup is running on this node."""


# -- files --

def _ro_uri(path: pathlib.Path) -> str:
    return f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"


def check_database(path: pathlib.Path) -> tuple[int, int]:
    """``(applied index, applied term)`` of the Gantry database at ``path`` after ``PRAGMA
    integrity_check`` said ``ok``; raises :class:`BackupError` saying what is wrong otherwise."""
    from gantry import preflight

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BackupError(f"no file at {path}") from None
    except OSError as e:
        raise BackupError(f"cannot read {path} ({e.strerror})") from None
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    if size == 0:
        raise BackupError(f"{path} is empty, not a backup")
    problem = preflight.sqlite_problem(path)
    if problem:
        raise BackupError(f"{path} is not a usable backup: {problem}")
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(100)")]
            if rows != ["ok"]:
                # One row may hold many problems, a line each ("*** in database main ***\n
                # On tree page 353 cell 29: ..."): the message stays one line.
                problems = [ln.strip() for r in rows for ln in str(r).splitlines()
                            if ln.strip() and not ln.startswith("***")]
                more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
                raise BackupError(f"{path} failed SQLite's integrity check: "
                                  f"{'; '.join(problems[:3])}{more}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "raft_applied" not in tables:
                raise BackupError(f"{path} is a SQLite file but not a Gantry database "
                                  "(no raft_applied table)")
            return statemachine.applied_position(conn)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise BackupError(f"{path} is not a usable backup: {e}") from None


# -- the node's side --

@dataclasses.dataclass
class NodeCopy:
    """A finished copy of the node's database, open for streaming (its name is already
    unlinked: nothing is left behind if the process dies). Iterate :meth:`chunks`, then read
    :attr:`sha256`; :meth:`close` ends it (and lets the next backup start)."""

    file: IO[bytes]
    size_bytes: int
    applied_index: int
    applied_term: int
    copy_ms: int
    _release: Callable[[], None]
    sha256: bytes = b""
    sent_bytes: int = 0

    def chunks(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
        """The file in order, ``chunk_bytes`` at a time; sets :attr:`sha256` at the end."""
        h = hashlib.sha256()
        self.file.seek(0)
        while True:
            data = self.file.read(chunk_bytes)
            if not data:
                break
            h.update(data)
            self.sent_bytes += len(data)
            yield data
        self.sha256 = h.digest()

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            release, self._release = self._release, lambda: None
            release()


class CopyTaker:
    """Takes :class:`NodeCopy` copies of ``db_path`` into ``work_dir`` (the data directory),
    one at a time (a second :meth:`take` while one is open raises :class:`BackupBusy`)."""

    def __init__(self, db_path: pathlib.Path, work_dir: pathlib.Path) -> None:
        self._db_path = db_path
        self._work_dir = work_dir
        self._busy = threading.Lock()

    def take(self) -> NodeCopy:
        """Copy the database as one read transaction sees it. Raises :class:`BackupBusy`, or
        :class:`BackupError` when the copy cannot be written (e.g. the disk is full)."""
        if not self._busy.acquire(blocking=False):
            raise BackupBusy("a backup is already running on this node; retry when it finished")
        try:
            return self._take()
        except BaseException:
            self._busy.release()
            raise

    def _take(self) -> NodeCopy:
        # Under the lock no other copy exists: anything named like one is left over from a
        # process that died mid-copy.
        for stale in self._work_dir.glob(f"{_COPY_PREFIX}*.db*"):
            stale.unlink(missing_ok=True)
        dest = self._work_dir / f"{_COPY_PREFIX}{uuid.uuid4().hex}.db"
        t0 = time.monotonic()
        try:
            conn = open_ro(self._db_path)
            try:
                conn.execute("BEGIN")
                index, term = statemachine.applied_position(conn)  # the first read pins it
                snapshot.write(conn, dest, None)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                conn.close()
            f = open(dest, "rb")  # noqa: SIM115 - owned by the NodeCopy
        except (OSError, sqlite3.Error) as e:
            dest.unlink(missing_ok=True)
            dest.with_name(dest.name + ".building").unlink(missing_ok=True)
            raise BackupError(f"the node could not copy its database: {e}") from e
        dest.unlink()
        return NodeCopy(f, os.fstat(f.fileno()).st_size, index, term,
                        int((time.monotonic() - t0) * 1000), self._busy.release)


# -- the client's side --

@dataclasses.dataclass(frozen=True)
class BackupResult:
    """What ``gantry backup`` wrote: where, how big, at which applied position, from which node,
    and how long it took (seconds, the whole call)."""

    path: pathlib.Path
    size_bytes: int
    applied_index: int
    applied_term: int
    node_id: str
    seconds: float


class _Watchdog:
    """Cancels ``call`` when :meth:`touch` was not called for ``idle_s`` seconds."""

    def __init__(self, call: Any, idle_s: float) -> None:
        self._call = call
        self._idle_s = idle_s
        self._last = time.monotonic()
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="backup-watchdog", daemon=True)
        self._thread.start()

    def touch(self) -> None:
        self._last = time.monotonic()

    def _run(self) -> None:
        while not self._done.wait(min(1.0, self._idle_s / 4)):
            if time.monotonic() - self._last > self._idle_s:
                self.fired = True
                self._call.cancel()
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)


def refuse_node_files(dest: pathlib.Path) -> None:
    """Raise :class:`BackupError` when writing the backup to ``dest`` could replace a node's own
    files: ``dest`` is in a Gantry data directory (it holds the ``LOCK`` file that
    :class:`gantry.datadir.DataDirLock` takes; a live node's pid is named), or ``dest`` is a
    SQLite database with a ``-wal``, ``-shm`` or ``-journal`` file beside it (a database that is, or was,
    open: a node's ``--db-path`` kept outside its data directory). A backup renamed over a
    node's ``gantry.db`` or ``raft.log`` lost every write after the backup's index and the Raft
    log with them (a new-user trial, 2026-12-03)."""
    from gantry.datadir import DataDirLock

    lock = DataDirLock(dest.parent)
    if lock.path.is_file():
        holder = lock.holder()
        raise BackupError(
            f"{dest.parent} is a Gantry data directory"
            + (f", in use by {holder}" if holder else "")
            + ": a backup never goes into one, where it could replace the node's own files; "
            "write it to another directory")
    if dest.exists() and any(dest.with_name(dest.name + sfx).exists()
                             for sfx in ("-wal", "-shm", "-journal")):
        raise BackupError(
            f"{dest} looks like a database in use ({dest.name}-wal, -shm or -journal is beside "
            "it): "
            "refusing to replace it; write the backup to a new file name")


def download(addr: str, dest: pathlib.Path, *, client: ClientConfig | None = None,
             quiet: bool = False, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
             chunk_bytes: int = 0, progress: IO[str] | None = None) -> BackupResult:
    """Stream a backup from the node at ``addr`` into ``dest`` (see the module docstring for the
    checks), through ``client``'s TLS settings and admin token (default: plaintext, no token).
    A progress bar goes to ``progress`` (default stderr) when it is a terminal and not
    ``quiet``. Raises :class:`BackupError`; ``dest`` is then untouched and no ``.tmp`` is left."""
    import sys

    import grpc
    from tqdm import tqdm

    from gantry.pb.admin.v1 import admin_pb2 as pb
    from gantry.pb.admin.v1 import admin_pb2_grpc
    from gantry.tlsconfig import PLAINTEXT

    client = client or PLAINTEXT
    out = progress if progress is not None else sys.stderr
    t0 = time.monotonic()
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory; give the backup's file name")
    if not dest.parent.is_dir():
        raise BackupError(f"directory {dest.parent} does not exist")
    refuse_node_files(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    options = [("grpc.max_receive_message_length", MAX_CHUNK_BYTES + (1 << 20))]
    header: Any = None
    trailer: Any = None
    h = hashlib.sha256()
    received = 0
    # On a terminal: what the node is doing before the first byte (copying), then bytes, then
    # the local checks; cleared at the end (the result is the final line on stdout).
    bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, file=out,
               desc=f"{dest.name} (node copying)", leave=False,
               disable=quiet or not out.isatty())
    try:
        with client.channel(addr, options) as ch, open(tmp, "wb") as f:
            call = admin_pb2_grpc.ClusterServiceStub(ch).Backup(
                pb.BackupRequest(chunk_bytes=chunk_bytes), metadata=client.metadata())
            dog = _Watchdog(call, idle_timeout_s)
            try:
                for msg in call:
                    dog.touch()
                    kind = msg.WhichOneof("kind")
                    if kind == "header" and header is None:
                        header = msg.header
                        bar.set_description(dest.name, refresh=False)
                        bar.reset(total=header.size_bytes)
                    elif kind == "data" and header is not None and trailer is None:
                        f.write(msg.data)
                        h.update(msg.data)
                        received += len(msg.data)
                        bar.update(len(msg.data))
                    elif kind == "trailer" and header is not None and trailer is None:
                        trailer = msg.trailer
                    else:
                        raise BackupError(f"the node at {addr} sent an out-of-order backup "
                                          f"stream ({kind!r} message)")
            except grpc.RpcError as e:
                if dog.fired:
                    raise BackupError(f"no data from the node at {addr} for {idle_timeout_s:g} s; "
                                      "gave up (is it stopped or overloaded?)") from None
                code = e.code()
                if code == grpc.StatusCode.UNAVAILABLE and header is None:
                    hint = ("" if client.tls else " (a node serving TLS needs --tls-ca; one with "
                            "--tls-client-ca also --tls-cert and --tls-key)")
                    raise BackupError(f"cannot reach a node at {addr}: {e.details()}{hint}"
                                      ) from None
                raise BackupError(f"backup from {addr} failed: {code.name}: {e.details()}"
                                  ) from None
            finally:
                dog.stop()
            if header is None or trailer is None:
                raise BackupError(f"the backup stream from {addr} ended early "
                                  f"({received} bytes received)")
            if received != trailer.size_bytes or received != header.size_bytes:
                raise BackupError(f"the backup stream from {addr} is damaged: received {received} "
                                  f"bytes, the node sent {trailer.size_bytes}")
            if h.digest() != trailer.sha256:
                raise BackupError(f"the backup stream from {addr} is damaged: SHA-256 mismatch")
            f.flush()
            os.fsync(f.fileno())
        bar.set_description(f"{dest.name} (integrity check)")
        position = check_database(tmp)
        if position != (trailer.applied_index, trailer.applied_term):
            raise BackupError(f"the received file is at applied index {position[0]} (term "
                              f"{position[1]}), the node announced {trailer.applied_index} "
                              f"(term {trailer.applied_term})")
        os.replace(tmp, dest)
        fsync_dir(dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"cannot write {tmp}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return BackupResult(dest, received, trailer.applied_index, trailer.applied_term,
                        header.node_id, time.monotonic() - t0)


# -- restore --

@dataclasses.dataclass(frozen=True)
class RestoreResult:
    """What ``gantry restore`` laid out."""

    data_dir: pathlib.Path
    size_bytes: int
    applied_index: int
    applied_term: int
    raft_addr: str
    seconds: float


def _check_empty(data_dir: pathlib.Path) -> None:
    """Refuse a data directory that is not new or empty (a stale ``LOCK`` alone is empty)."""
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} exists and is not a directory")
    try:
        names = sorted(os.listdir(data_dir)) if data_dir.exists() else []
    except OSError as e:
        raise BackupError(f"cannot read {data_dir} ({e.strerror})") from None
    others = [n for n in names if n != "LOCK"]
    if RESTORING_MARKER in others:
        raise BackupError(f"{data_dir} holds an interrupted restore ({RESTORING_MARKER} is "
                          "there): empty the directory and run the restore again")
    if others:
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise BackupError(f"data directory {data_dir} is not empty ({shown}); restore only "
                          "into a new or empty directory (a node's data there would be lost)")


def restore(src: pathlib.Path, data_dir: pathlib.Path, raft_addr: str) -> RestoreResult:
    """Seed the empty ``data_dir`` from the backup ``src`` for a new single-node cluster whose
    only member is ``raft_addr`` (see the module docstring). Refuses a non-empty directory, one
    a live node holds, and a file that is not an intact Gantry database of a schema this build
    knows; on failure the directory is left as it was."""
    from pysyncobj.node import TCPNode

    from gantry.consensus.journal import DurableJournal
    from gantry.consensus.pysyncobj_compat import no_op_entry
    from gantry.datadir import DataDirInUse, DataDirLock
    from gantry.state import migrate

    t0 = time.monotonic()
    check_database(src)
    existed = data_dir.exists()
    lock = DataDirLock(data_dir)
    lock_existed = lock.path.exists()
    holder = lock.holder()
    if holder:  # a live node holds it: say so rather than "not empty"
        raise BackupError(str(lock.in_use_error(holder)))
    _check_empty(data_dir)
    try:
        lock.acquire()  # creates the directory; a node started meanwhile is refused
    except DataDirInUse as e:
        raise BackupError(str(e)) from None
    except OSError as e:
        raise BackupError(f"cannot create {data_dir} ({e.strerror})") from None
    marker = data_dir / RESTORING_MARKER
    db = data_dir / "gantry.db"
    snap = data_dir / "raft.snapshot"
    done = False
    try:
        _check_empty(data_dir)  # nothing appeared between the check and the lock
        marker.write_text(f"gantry restore from {src} in progress (pid {os.getpid()})\n")
        fsync_file(marker)
        conn = sqlite3.connect(_ro_uri(src), uri=True, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT 1 FROM raft_applied").fetchall()
            snapshot.write(conn, db, None)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            conn.close()
        rw = sqlite3.connect(str(db), isolation_level=None)
        try:  # a Raft snapshot given as the backup carries its old cluster's metadata
            rw.execute(f"DROP TABLE IF EXISTS {snapshot.META_TABLE}")
        finally:
            rw.close()
        # This build's schema in both files: a node that joins later installs the snapshot as
        # it is (a node migrates only its own database, at start-up).
        try:
            migrate.upgrade(db)
        except migrate.SchemaError as e:
            raise BackupError(f"cannot restore {src}: {e}") from None
        fsync_file(db)
        # The position of the copy itself (a live node's gantry.db given as FILE moves on).
        conn = sqlite3.connect(_ro_uri(db), uri=True)
        try:
            index, term = statemachine.applied_position(conn)
        finally:
            conn.close()
        if index > 0:
            # Raft metadata: the backup's position as the snapshot's last entry, the new node as
            # the whole configuration (see the module docstring).
            last, prev = no_op_entry(index, term), no_op_entry(index - 1, term)
            meta = snapshot.encode_meta((last, prev, {TCPNode(raft_addr)}))
            conn = open_ro(db)
            try:
                conn.execute("BEGIN")
                statemachine.applied_index(conn)
                snapshot.write(conn, snap, meta)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                conn.close()
            journal = DurableJournal(str(data_dir / "raft.log"))
            try:
                journal.add(*prev)
                journal.add(*last)
                journal.setCurrentTerm(term, None)
                journal.setRaftCommitIndex(index)
            finally:
                journal.close()
            fsync_file(data_dir / "raft.log")
        marker.unlink()
        fsync_dir(marker)
        done = True
    except sqlite3.Error as e:
        raise BackupError(f"cannot restore {src} into {data_dir}: {e}") from None
    except OSError as e:
        raise BackupError(f"cannot restore {src} into {data_dir}: {e.strerror or e}") from None
    finally:
        if not done:
            _undo(data_dir, existed, lock_existed)
        lock.release()
    return RestoreResult(data_dir, db.stat().st_size, index, term, raft_addr,
                         time.monotonic() - t0)


def _undo(data_dir: pathlib.Path, existed: bool, lock_existed: bool) -> None:
    """A failed restore: remove what it wrote (the directory was empty before it)."""
    for p in data_dir.iterdir():
        if p.name == "LOCK" and lock_existed:
            continue
        with contextlib.suppress(OSError):
            p.unlink()
    if not existed:
        with contextlib.suppress(OSError):
            data_dir.rmdir()


# -- the command line (``gantry backup``, ``gantry restore``; registered by gantry.cli) --

def add_subcommands(sub: Any) -> None:
    """Add ``backup`` and ``restore`` to the ``gantry`` argument parser's subparsers."""
    from gantry import config, tlsconfig

    b = sub.add_parser(
        "backup", help="stream a consistent copy of a node's database into FILE",
        description="Ask a node (any member, a follower too) for an online, consistent copy of "
                    "its SQLite database at one applied log index and write it to FILE "
                    "(through FILE.tmp: FILE is replaced only by a complete, checked copy).")
    b.add_argument("file", metavar="FILE", help="where to write the backup")
    b.add_argument("--addr", default=config.env("GANTRY_ADDR") or config.DEFAULT_ADDR,
                   type=config.node_addr_arg,
                   help=f"gRPC address of any node (env GANTRY_ADDR; default {config.DEFAULT_ADDR})")
    b.add_argument("--timeout", type=config.seconds_arg, default=DEFAULT_IDLE_TIMEOUT_S,
                   help="give up after this many seconds without data from the node "
                        f"(default {DEFAULT_IDLE_TIMEOUT_S:g})")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    tlsconfig.add_client_arguments(b, admin_token=True)  # Backup is a closed admin method
    b.set_defaults(func=_backup_command)
    r = sub.add_parser(
        "restore", help="seed a new data directory from a backup (a new single-node cluster)",
        description="Lay out an empty data directory DIR from the backup FILE so that `gantry "
                    "serve --data-dir DIR --raft-addr RAFT_ADDR` starts a single-node cluster "
                    "holding the backup's data; grow it with `gantry add-node`. Refuses a "
                    "non-empty directory, one a running node holds, and a damaged file.")
    r.add_argument("file", metavar="FILE", help="a file written by `gantry backup`")
    r.add_argument("--data-dir", required=True, help="the new node's data directory (new or empty)")
    r.add_argument("--raft-addr", default=config.env("GANTRY_RAFT_ADDR") or config.Config.raft_addr,
                   help="the Raft address the new node will serve with: the cluster's only "
                        f"member (env GANTRY_RAFT_ADDR; default {config.Config.raft_addr})")
    r.set_defaults(func=_restore_command)


def _quiet_logs() -> None:
    from gantry import logs

    logs.configure("gantry", os.environ.get("LOG_FORMAT", "").lower(), "error")


def _backup_command(ns: Any) -> int:
    import sys

    from gantry import tlsconfig

    _quiet_logs()
    dest = pathlib.Path(ns.file)
    try:
        client = tlsconfig.client_from_args(ns)
    except ValueError as e:
        print(f"gantry: {e}", file=sys.stderr)
        return 2
    try:
        r = download(ns.addr, dest, client=client, quiet=ns.quiet, idle_timeout_s=ns.timeout)
    except BackupError as e:
        print(f"gantry: backup failed: {e}; {dest} not written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gantry: backup interrupted; {dest} not written", file=sys.stderr)
        return 130
    print(f"wrote {r.path}: {r.size_bytes} bytes at applied index {r.applied_index} "
          f"(term {r.applied_term}) from {r.node_id or ns.addr} in {r.seconds:.2f} s")
    return 0


def _restore_command(ns: Any) -> int:
    import sys

    from gantry.config import ConfigError, check_addr

    _quiet_logs()
    try:
        check_addr(ns.raft_addr, "--raft-addr")
    except ConfigError as e:
        print(f"gantry: {e}", file=sys.stderr)
        return 2
    data_dir = pathlib.Path(ns.data_dir)
    try:
        r = restore(pathlib.Path(ns.file), data_dir, ns.raft_addr)
    except BackupError as e:
        print(f"gantry: restore refused: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gantry: restore interrupted; empty {data_dir} before trying again",
              file=sys.stderr)
        return 130
    print(f"restored {ns.file} into {r.data_dir}: {r.size_bytes} bytes at applied index "
          f"{r.applied_index} (term {r.applied_term}) in {r.seconds:.2f} s; start it with "
          f"`gantry serve --data-dir {r.data_dir} --raft-addr {r.raft_addr}` (a single-node "
          "cluster), then grow it with `gantry add-node`")
    return 0

"""A durable Raft log for pysyncobj: an append-only file with checksummed records that is
fsync'd before this node acknowledges anything in it.

Why: pysyncobj's own FileJournal is an mmap that is never fsync'd (upstream issue #84) and whose
compaction rewrites the file in place (a crash mid-rewrite loses entries). Raft (§5.3, Figure 2)
requires a node to persist entries before answering AppendEntries and term/vote before answering
RequestVote; a leader's own entries count toward the commit majority, so they too must be durable
before commit.

How it plugs in (the smallest hook pysyncobj 0.3.17 offers): :class:`DurableJournal` implements
pysyncobj's ``Journal`` interface; :func:`gantry.consensus.pysyncobj_compat.installed` makes it
the journal pysyncobj's constructor creates (``SyncObj.__init__``), and
:class:`~gantry.consensus.pysyncobj_compat.DurableTransport` (pysyncobj's ``transportClass``
parameter) holds ``next_node_idx`` acknowledgements back until its ``flush_acks`` has fsync'd the
journal; the Raft actor's tick callback runs that flush and syncs the leader's own appends once
per tick (group commit: one fsync covers every entry appended or received since the last one).
Both hooks reach into pysyncobj's internals and so live in the compatibility module.

File format: ``GANTRYLOG1\\n`` then records ``<u32 length><u64 index><u64 term><command><u32
crc32>``. Damage found on open (:func:`scan_log`) is one of two kinds:

- a **torn tail** (a crash mid-append): the bad record is the last thing in the file (incomplete,
  or complete with a bad checksum) or only zeros follow it. Nothing in it was acknowledged (nothing
  is acknowledged before its fsync), so it is cut off — after a copy of the dropped bytes is kept
  beside the log as ``raft.log.torn-<unix time>``;
- **corruption**: valid-looking records follow the bad one, or other bytes do. The file is never
  rewritten by a start: :class:`LogCorrupt` says where, and :func:`repair_log` (``gantry
  repair-log``) is the explicit, copy-keeping way to cut it.

``raft.log.meta`` (JSON: currentTerm, votedForNodeId, raftCommitIndex) must parse and have that
shape (:func:`read_meta`); a node that forgot its vote could vote twice in one term, so a damaged
file raises :class:`MetaCorrupt` instead of being ignored.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import structlog
from pysyncobj.journal import Journal

from gantry import metrics
from gantry.consensus.pysyncobj_compat import is_membership_entry
from gantry.db import fsync_dir, fsync_file
from gantry.diskspace import DATABASE_PART, DiskFull, DiskSpace, is_space_error

log = structlog.get_logger("gantry.journal")

MAGIC = b"GANTRYLOG1\n"
_HEAD = struct.Struct("<IQQ")  # length of (index, term, command), index, term
_CRC = struct.Struct("<I")
#: Where a record may start when re-synchronising after damage: a non-zero length, then index and
#: term whose high 32 bits are zero (true of any log this side of 4 billion entries or terms).
_RECORD_START = re.compile(rb"(?=(?!\x00{4})[\s\S]{8}\x00{4}[\s\S]{4}\x00{4})")
_META_KEYS = {"currentTerm", "votedForNodeId", "raftCommitIndex"}


class JournalError(RuntimeError):
    """The Raft log or its metadata file is damaged; the message names the file, what is wrong
    and what to do. Raised before anything was written to either file."""


class LogCorrupt(JournalError):
    """``raft.log`` is damaged before its end (see :func:`scan_log`); ``scan`` has the details."""

    def __init__(self, scan: LogScan) -> None:
        super().__init__(scan.describe())
        self.scan = scan


class MetaCorrupt(JournalError):
    """``raft.log.meta`` exists but cannot be read, is not JSON, or is not term/vote-shaped.
    ``problem``: what is wrong, one sentence without the advice that follows it."""

    def __init__(self, problem: str, advice: str) -> None:
        super().__init__(f"{problem}. {advice}")
        self.problem = problem


@dataclass
class LogScan:
    """What :func:`scan_log` found in a Raft log file (read-only; offsets are bytes).

    ``entries``/``offsets``: the good records up to the first bad byte, ``good_end`` (== ``size``
    when the file is intact). ``damage``: ``""`` intact, ``"torn"`` (a crash mid-append: safe to
    cut) or ``"corrupt"`` (damage before the end: never cut implicitly). ``reason`` says what is
    wrong at ``good_end``; ``later`` lists ``(offset, log index, term)`` of the valid-looking
    records found after it.
    """

    path: str
    size: int
    entries: list[tuple[bytes, int, int]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    good_end: int = 0
    damage: str = ""
    reason: str = ""
    later: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def first_index(self) -> int:
        """Log index of the first good record (0 when there is none)."""
        return self.entries[0][1] if self.entries else 0

    @property
    def last_index(self) -> int:
        """Log index of the last good record (0 when there is none)."""
        return self.entries[-1][1] if self.entries else 0

    def describe(self, restore: str = "") -> str:
        """One line for an operator: which file, where, what is wrong, what to do (``restore``:
        how to get the node back instead of "from a peer", e.g. on a one-member cluster)."""
        if not self.damage:
            return f"{self.path}: intact ({len(self.entries)} records, last log index " \
                   f"{self.last_index})"
        last = (f"the last good record before it is log index {self.last_index}"
                if self.entries else "no good record precedes it")
        follow = ""
        if self.later:
            first, last_later = self.later[0][1], self.later[-1][1]
            span = f"{first}" if first == last_later else f"{first}..{last_later}"
            follow = (f"; {len(self.later)} valid-looking record(s) follow it (log index "
                      f"{span})")
        data_dir = os.path.dirname(os.path.abspath(self.path))
        return (f"Raft log {self.path} is damaged at byte {self.good_end} of {self.size} "
                f"({self.reason}); {last}{follow}. A start never rewrites a damaged log. "
                + (restore[0].upper() + restore[1:] if restore else
                   "Restore this node from a peer (stop it, `gantry remove-node` it, wipe its "
                   "data directory, start it empty and `gantry add-node` it: README, Damaged "
                   "files)")
                + ", or cut the log "
                f"at that byte with `gantry repair-log --data-dir {data_dir}` (keeps a copy of "
                "the whole log first; what follows the damage is lost on this node)")


def _record_at(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """``(end offset, length, index, term)`` of a well-formed record at ``pos``, else None."""
    if pos + _HEAD.size > len(data):
        return None
    length, idx, term = _HEAD.unpack_from(data, pos)
    end = pos + 4 + length + _CRC.size
    if length < 16 or end > len(data):
        return None
    (crc,) = _CRC.unpack_from(data, pos + 4 + length)
    if zlib.crc32(data[pos + 4 : pos + 4 + length]) != crc:
        return None
    return end, length, idx, term


def _later_records(data: bytes, start: int) -> list[tuple[int, int, int]]:
    """``(offset, index, term)`` of well-formed records after ``start``: re-synchronise on the
    first one found byte by byte, then follow lengths (re-synchronising again after damage)."""
    found: list[tuple[int, int, int]] = []
    pos = start
    while pos < len(data):
        rec = _record_at(data, pos)
        if rec is not None:
            found.append((pos, rec[2], rec[3]))
            pos = rec[0]
            continue
        for m in _RECORD_START.finditer(data, pos + 1):
            if _record_at(data, m.start()) is not None:
                pos = m.start()
                break
        else:
            break
    return found


def scan_log(path: str) -> LogScan:
    """Read the Raft log at ``path`` without changing it and classify any damage (see
    :class:`LogScan`). A missing or empty file scans as intact and empty. Raises ``OSError``
    only when the file exists but cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return LogScan(path, 0)
    scan = LogScan(path, len(data))
    if not data:
        return scan
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):  # a crash while the file was being created
            scan.damage, scan.reason = "torn", "incomplete file header"
        else:
            scan.damage, scan.reason = "corrupt", "it does not start with the Gantry Raft log header"
            scan.later = _later_records(data, 0)
        return scan
    pos = len(MAGIC)
    while pos < len(data):
        rec = _record_at(data, pos)
        if rec is None:
            break
        end, length, idx, term = rec
        scan.entries.append((bytes(data[pos + 20 : pos + 4 + length]), idx, term))
        scan.offsets.append(pos)
        pos = end
    scan.good_end = pos
    if pos == len(data):
        return scan
    # Where the bad record ends, as far as its header can be believed.
    extent = pos + _HEAD.size
    if len(data) - pos < _HEAD.size:
        scan.reason = f"incomplete record header ({len(data) - pos} bytes)"
    else:
        length, idx, _term = _HEAD.unpack_from(data, pos)
        if length < 16:
            scan.reason = f"invalid record length {length}"
        elif pos + 4 + length + _CRC.size > len(data):
            extent = len(data)
            scan.reason = (f"record of log index {idx} declares {length + 8} bytes, "
                           f"{len(data) - pos} remain")
        else:
            extent = pos + 4 + length + _CRC.size
            scan.reason = f"checksum mismatch in the record of log index {idx}"
    scan.later = _later_records(data, pos + 1)
    if scan.later or data[extent:].strip(b"\x00"):
        scan.damage = "corrupt"
    else:
        scan.damage = "torn"
        if not data[pos:].strip(b"\x00"):
            scan.reason = f"{len(data) - pos} zero bytes"
    return scan


def _unique(base: str) -> str:
    path, n = base, 0
    while os.path.exists(path):
        n += 1
        path = f"{base}.{n}"
    return path


def _write_durably(path: str, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path)


@dataclass(frozen=True)
class Repair:
    """What :func:`repair_log` did: ``backup`` is the copy of the whole original log ("" when the
    log was intact and nothing was changed); ``dropped_bytes`` were cut at ``scan.good_end``,
    including ``len(scan.later)`` valid-looking records."""

    scan: LogScan
    backup: str
    dropped_bytes: int


def repair_log(path: str) -> Repair:
    """Cut a damaged Raft log at its first bad record, after copying the whole file to
    ``<path>.corrupt-<unix time>`` (fsync'd). An intact log is left alone. The caller must hold
    the data directory's lock (no node may run on it). Raises ``OSError`` on I/O failure."""
    scan = scan_log(path)
    if not scan.damage:
        return Repair(scan, "", 0)
    backup = _unique(f"{path}.corrupt-{int(time.time())}")
    shutil.copyfile(path, backup)
    fsync_file(backup)
    keep = scan.good_end if scan.good_end >= len(MAGIC) else 0
    with open(path, "r+b") as f:
        f.truncate(keep)
        if keep == 0:
            f.write(MAGIC)
        f.flush()
        os.fsync(f.fileno())
    _lower_commit_hint(path + ".meta", scan.last_index if keep else 0)
    return Repair(scan, backup, scan.size - keep)


def _record(command: bytes, idx: int, term: int) -> bytes:
    """One log record: ``<u32 length><u64 index><u64 term><command><u32 crc32>``."""
    body = _HEAD.pack(16 + len(command), idx, term)[4:] + command
    return struct.pack("<I", len(body)) + body + _CRC.pack(zlib.crc32(body))


#: Bytes a full journal must be able to reserve past its end before it takes appends again.
SPACE_PROBE_BYTES = 256 * 1024
#: Least time (seconds) between two probes of a full journal.
SPACE_PROBE_EVERY_S = 0.5


def write_log(path: str, entries: list[tuple[bytes, int, int]]) -> None:
    """Replace the Raft log at ``path`` with exactly ``entries`` (command, log index, term):
    written beside it, fsync'd, renamed over it, directory fsync'd, so a crash leaves the old log
    or the new one, never a mix. Only with the data directory's lock held and no journal open on
    it (``--force-new-cluster``). Raises ``OSError``."""
    tmp = path + ".rewrite"
    with open(tmp, "wb") as f:
        f.write(MAGIC + b"".join(_record(*e) for e in entries))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path)


def store_meta(meta_path: str, meta: dict[str, Any]) -> None:
    """Write ``raft.log.meta`` atomically (temporary file, fsync, rename, directory fsync).

    On a full disk (the temporary file does not fit) the existing file is overwritten in place
    instead — it is a few dozen bytes inside a block it already holds, so this needs no new
    space — and fsync'd: a term and vote must be durable before any message shows them, and a
    node that cannot record them could not take part in an election at all. (An in-place write
    torn by a power cut is refused at the next start by :func:`read_meta`.) Raises ``OSError``
    when neither works."""
    tmp = meta_path + ".tmp"
    data = json.dumps(meta).encode("utf-8")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, meta_path)
        fsync_dir(meta_path)
    except OSError as e:
        if not is_space_error(e) or not os.path.exists(meta_path):
            raise
        try:
            os.unlink(tmp)
        except OSError:
            pass
        fd = os.open(meta_path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)


def _lower_commit_hint(meta_path: str, last_index: int) -> None:
    """After a cut the persisted commit index (a hint pysyncobj recomputes) must not point past
    the log's new end, or the next start "clamps" it with a warning about lost entries. Term
    and vote are kept as they are. A missing or unreadable meta file is left alone."""
    try:
        meta = read_meta(meta_path)
    except MetaCorrupt:
        return
    if int(meta.get("raftCommitIndex", 0)) <= last_index:
        return
    meta["raftCommitIndex"] = last_index
    store_meta(meta_path, meta)


def read_meta(path: str) -> dict[str, Any]:
    """The term/vote/commit-index JSON at ``path`` (``{}`` when the file does not exist: a fresh
    node). Raises :class:`MetaCorrupt` when it exists but is unreadable, not JSON, or not an
    object of ``currentTerm`` (int ≥ 0), ``votedForNodeId`` (string or null) and
    ``raftCommitIndex`` (int ≥ 0)."""
    advice = ("It holds this node's Raft term and vote: starting without them could let it vote "
              "twice in one term. Do not delete or edit it; restore this node from a peer (stop "
              "it, `gantry remove-node` it, wipe its data directory, start it empty and "
              "`gantry add-node` it: README, Damaged files)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise MetaCorrupt(f"cannot read Raft metadata {path} ({e.strerror})", advice) from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        what = "is empty" if not raw.strip() else f"is not valid JSON ({e})"
        raise MetaCorrupt(f"Raft metadata {path} {what}", advice) from None
    problem = ""
    if not isinstance(meta, dict):
        problem = f"holds a JSON {type(meta).__name__}, not an object"
    else:
        unknown = sorted(set(meta) - _META_KEYS)
        for key in ("currentTerm", "raftCommitIndex"):
            v = meta.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                problem = f"has {key} = {v!r}, not a non-negative integer"
        v = meta.get("votedForNodeId")
        if v is not None and not isinstance(v, str):
            problem = f"has votedForNodeId = {v!r}, not a node address or null"
        if unknown:
            problem = f"has unknown keys {unknown}"
    if problem:
        raise MetaCorrupt(f"Raft metadata {path} {problem}", advice)
    return meta


class DurableJournal(Journal):  # type: ignore[misc]
    """pysyncobj ``Journal`` on an fsync'd append-only file. Entries are ``(command bytes,
    log index, term)``. Not thread-safe beyond pysyncobj's own use (one tick thread) plus
    :meth:`sync`, which may run on any thread."""

    def __init__(self, path: str, fsync: bool = True, disk: DiskSpace | None = None) -> None:
        self._path = path
        #: Where "out of space" is reported (see :mod:`gantry.diskspace`).
        self._disk = disk
        #: True from an append that did not fit until :meth:`probe_space` finds room again (not
        #: at the next small append that happens to fit: the alarm would flap).
        self.full = False
        self._next_probe = 0.0
        #: Set when an fsync or a term/vote write failed: nothing this node holds may be
        #: acknowledged any more (the transport sends nothing); the node must stop.
        self.failed: OSError | None = None
        #: Position of the first entry appended since :meth:`begin_batch` (None: none yet).
        self._batch_from: int | None = None
        #: Where the bytes of a torn tail cut at this open were kept (None: nothing was cut).
        self.torn_copy: str | None = None
        #: False only to measure what durability costs (``--no-raft-fsync``); never in production.
        self._fsync = fsync
        self._meta_path = path + ".meta"
        self._entries: list[tuple[bytes, int, int]] = []
        self._offsets: list[int] = []  # file offset of each entry's record
        self._lock = threading.Lock()
        self._dirty = False
        self._unsynced = 0  # entries appended since the last sync (for metrics)
        # Raft §5.3 truncates a follower's log only where an entry *conflicts* (same index,
        # different term). pysyncobj 0.3.17 truncates after prevLogIdx whenever later entries
        # exist and re-adds the batch, even when they match — which would shrink a durable log
        # below what this node already acknowledged. So deleteEntriesFrom only marks a position;
        # the adds that follow are compared with what is there, and the file is truncated at the
        # first real conflict. Matching entries stay (and are not rewritten).
        self._pending_from: int | None = None
        #: Command bytes of membership entries such a kept tail held: pysyncobj rolled their
        #: cluster changes back in memory before the batch, and its engine applies them again
        #: (pysyncobj_compat override 20) after taking them with :meth:`take_kept_membership`.
        self._kept_membership: list[bytes] = []
        self.fsyncs = 0  # counter, for benchmarks and tests
        self.conflicts = 0  # real Raft log conflicts truncated (counter)
        self._open_log()
        self._meta = self._load_meta()
        self._meta_dirty = False

    # -- file handling --
    def _open_log(self) -> None:
        # Read-only first: a damaged log raises before anything is written to it.
        scan = scan_log(self._path)
        if scan.damage == "corrupt":
            raise LogCorrupt(scan)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        if scan.damage == "torn":  # a crash mid-append: never acknowledged; keep a copy, drop it
            with open(self._path, "rb") as f:
                f.seek(scan.good_end)
                dropped = f.read()
            copy = _unique(f"{self._path}.torn-{int(time.time())}")
            _write_durably(copy, dropped)
            self.torn_copy = copy
            log.warning("raft_log_torn_tail_dropped", path=self._path, offset=scan.good_end,
                        bytes=len(dropped), reason=scan.reason, last_index=scan.last_index,
                        copy=copy)
        if scan.good_end < len(MAGIC):  # new, empty, or torn while being created
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, MAGIC, 0)
            os.fsync(self._fd)
            fsync_dir(self._path)
            self._end = len(MAGIC)
            return
        self._entries, self._offsets = scan.entries, scan.offsets
        self._end = scan.good_end
        if scan.damage:
            os.ftruncate(self._fd, self._end)
            os.fsync(self._fd)

    def _load_meta(self) -> dict[str, Any]:
        return read_meta(self._meta_path)

    def _store_meta(self) -> None:
        store_meta(self._meta_path, self._meta)
        self._meta_dirty = False

    # -- durability --
    def sync(self) -> bool:
        """fsync whatever was appended or truncated since the last sync; True if it did.

        A failed fsync is never retried (after one, Linux may report later ones clean although
        the data never reached the disk): the journal is marked :attr:`failed`, every later sync
        raises the same error, and nothing appended since the last good sync is ever
        acknowledged."""
        with self._lock:
            if self.failed is not None:
                raise self.failed
            self._settle_locked()
            if not self._dirty:
                return False
            entries, self._unsynced = self._unsynced, 0
            if not self._fsync:
                self._dirty = False
                return False
            t0 = time.perf_counter()
            try:
                os.fdatasync(self._fd)
            except OSError as e:
                self.failed = e
                log.critical("raft_log_fsync_failed", path=self._path, error=repr(e))
                raise
            metrics.RAFT_FSYNC_DURATION.observe(time.perf_counter() - t0)
            metrics.RAFT_FSYNC_ENTRIES.observe(entries)
            self._dirty = False
            self.fsyncs += 1
            return True

    # -- out of space (gantry.diskspace) --
    def _out_of_space(self, e: OSError, part: str | None = "raft-log") -> None:
        if not self.full:
            log.warning("raft_log_append_refused", path=self._path, error=e.strerror,
                        last_index=self._entries[-1][1] if self._entries else 0)
        self.full = True
        self._next_probe = time.monotonic() + SPACE_PROBE_EVERY_S
        if self._disk is not None and part is not None:
            self._disk.report_full(part, f"{self._path}: {e.strerror}")

    def _database_full(self) -> bool:
        """Whether the writer holds a batch the database had no room for
        (:class:`~gantry.diskspace.DiskSpace` part ``"database"``). No append fits meanwhile:
        a follower that kept appending and acknowledging held every committed entry in memory
        twice (the writer's queue and this journal) for as long as the database was full; now
        it acknowledges nothing and the others carry on, as when the log itself is full."""
        disk = self._disk  # ``full`` first: no lock on every append while nothing is full
        return disk is not None and disk.full and DATABASE_PART in disk.where()

    def _space_back(self) -> None:
        self.full = False
        log.info("raft_log_appends_resumed", path=self._path)
        if self._disk is not None:
            self._disk.report_ok("raft-log")

    def probe_space(self) -> bool:
        """While :attr:`full`: whether SPACE_PROBE_BYTES fit past the end of the log now (the
        blocks are reserved, then released), at most every SPACE_PROBE_EVERY_S (False in
        between). Clears :attr:`full` when they do. True when the journal is not full."""
        if not self.full:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + SPACE_PROBE_EVERY_S
        if self._database_full():
            return False
        with self._lock:
            try:
                try:
                    os.posix_fallocate(self._fd, self._end, SPACE_PROBE_BYTES)
                except OSError as e:
                    if is_space_error(e):
                        raise
                    # No fallocate here (EOPNOTSUPP, EINVAL): write zeros instead.
                    os.pwrite(self._fd, bytes(SPACE_PROBE_BYTES), self._end)
            except OSError as e:
                if not is_space_error(e):
                    log.warning("raft_log_space_probe_failed", error=repr(e))
                return False
            finally:
                os.ftruncate(self._fd, self._end)
        self._space_back()
        return True

    def begin_batch(self) -> None:
        """A follower is about to append a batch of the leader's entries: remember where the new
        appends start, so that :meth:`rollback_batch` can take them all back."""
        self._batch_from = None

    def rollback_batch(self) -> int:
        """Drop every entry appended since :meth:`begin_batch` (an append of the batch did not
        fit: pysyncobj acknowledges nothing and applies none of its membership changes, so the
        log must not keep part of it). Returns how many were dropped."""
        with self._lock:
            pos, self._batch_from = self._batch_from, None
            if pos is None or pos >= len(self._entries):
                return 0
            n = len(self._entries) - pos
            self._truncate_locked(pos)
            return n

    # -- lazy truncation (see __init__) --
    def _truncate_locked(self, pos: int) -> None:
        if pos >= len(self._entries):
            return
        self._end = self._offsets[pos]
        del self._entries[pos:]
        del self._offsets[pos:]
        os.ftruncate(self._fd, self._end)
        self._dirty = True

    def _settle_locked(self) -> None:
        """End a pending truncation: the entries past the re-added ones match the leader as far
        as anyone knows, so they stay. pysyncobj has rolled back the cluster changes of the
        membership entries among them in memory; they are kept for :meth:`take_kept_membership`
        so that the engine applies them again (this once truncated them instead: a follower
        held less than it had acknowledged until the leader sent them again)."""
        pos = self._pending_from
        if pos is None:
            return
        self._pending_from = None
        self._kept_membership.extend(e[0] for e in self._entries[pos:] if is_membership_entry(e[0]))

    def take_kept_membership(self) -> list[bytes]:
        """The membership entries (command bytes, in log order) the last settled truncations
        kept past a batch, once: the engine re-applies their cluster changes."""
        with self._lock:
            self._settle_locked()
            kept, self._kept_membership = self._kept_membership, []
        return kept

    # -- pysyncobj Journal interface --
    def add(self, command: bytes, idx: int, term: int) -> None:
        """Append an entry. Raises :class:`~gantry.diskspace.DiskFull` when it does not fit:
        whatever part of its record reached the file is cut off again first."""
        rec = _record(command, idx, term)
        if self._database_full():
            e = OSError(errno.ENOSPC, "no space for the database: its writer holds committed "
                                      "entries")
            self._out_of_space(e, part=None)
            raise DiskFull(e, command)
        with self._lock:
            pos = self._pending_from
            if pos is not None:
                if pos < len(self._entries):
                    if self._entries[pos] == (command, idx, term):
                        self._pending_from = pos + 1  # already here, identical: keep it
                        return
                    self.conflicts += 1
                    log.warning("raft_log_conflict_truncated", index=self._entries[pos][1],
                                term=self._entries[pos][2], leader_term=term)
                    self._truncate_locked(pos)  # a real conflict: Raft truncates from here
                self._pending_from = None
            try:
                done = 0
                while done < len(rec):  # a short write (the disk filled up mid-record) goes on
                    done += os.pwrite(self._fd, rec[done:], self._end + done)
            except OSError as e:
                if not is_space_error(e):
                    raise
                os.ftruncate(self._fd, self._end)  # no partial record stays behind
                self._out_of_space(e)
                raise DiskFull(e, command) from e
            if self._batch_from is None:
                self._batch_from = len(self._entries)
            self._offsets.append(self._end)
            self._end += len(rec)
            self._entries.append((command, idx, term))
            self._dirty = True
            self._unsynced += 1

    def clear(self) -> None:
        with self._lock:
            self._pending_from = None
            self._entries.clear()
            self._offsets.clear()
            self._end = len(MAGIC)
            os.ftruncate(self._fd, self._end)
            self._dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802 - pysyncobj's name
        """pysyncobj asks to drop entries at list positions ≥ ``entryFrom`` before appending a
        batch from the leader; the drop happens lazily, only where that batch conflicts."""
        with self._lock:
            self._settle_locked()
            if entryFrom < len(self._entries):
                self._pending_from = entryFrom

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802 - pysyncobj's name
        """Drop entries at list positions < ``entryTo`` (log compaction after a snapshot):
        the kept entries go to a new file that atomically replaces the old one."""
        with self._lock:
            self._settle_locked()
            if entryTo >= len(self._entries):
                # Compaction past the last entry would leave an empty log, which pysyncobj cannot
                # run on (its log always starts with the snapshot's entry); keep it as it is.
                log.error("raft_log_compaction_refused", entries=len(self._entries),
                          compact_to_position=entryTo)
                return
            keep = self._entries[entryTo:]
            tmp = self._path + ".compact"
            offsets, pos, chunks = [], len(MAGIC), [MAGIC]
            for command, idx, term in keep:
                rec = _record(command, idx, term)
                offsets.append(pos)
                pos += len(rec)
                chunks.append(rec)
            data = b"".join(chunks)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                done = 0
                while done < len(data):
                    done += os.write(fd, data[done:])
                os.fsync(fd)
            except OSError as e:
                # The log stays as it is (longer than needed: the next compaction retries);
                # pysyncobj reads the journal's own entries, so nothing else has to change.
                os.close(fd)
                os.unlink(tmp)
                log.warning("raft_log_compaction_failed", path=self._path, error=repr(e))
                return
            os.replace(tmp, self._path)
            fsync_dir(self._path)
            os.close(self._fd)
            self._fd = fd
            self._entries = list(keep)
            self._offsets = offsets
            self._end = pos
            self._dirty = False

    def __getitem__(self, item: Any) -> Any:
        if self._pending_from is not None:
            with self._lock:
                self._settle_locked()
        return self._entries[item]

    def __len__(self) -> int:
        if self._pending_from is not None:
            with self._lock:
                self._settle_locked()
        return len(self._entries)

    def close(self) -> None:
        """Sync the log and the metadata file and close the log (pysyncobj's ``_destroy``)."""
        self._destroy()

    def _destroy(self) -> None:  # pysyncobj's Journal interface
        try:
            self.sync()
            if self._meta_dirty:
                self._store_meta()
        except OSError as e:
            if self.failed is None and not is_space_error(e):
                raise
            log.warning("raft_log_close_incomplete", path=self._path, error=repr(e))
        finally:
            os.close(self._fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802, N803
        # The commit index is a hint (Raft recomputes it); persisted once a second, and only
        # when it moved: pysyncobj sets it on every append_entries a follower receives,
        # heartbeats included, and an idle node must not rewrite and fsync its metadata file
        # (and directory) every second for an unchanged value.
        if self._meta.get("raftCommitIndex") == raftCommitIndex:
            return
        self._meta["raftCommitIndex"] = raftCommitIndex
        self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return int(self._meta.get("raftCommitIndex", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802, N803
        # Raft Figure 2: currentTerm and votedFor are durable before any message shows them.
        # pysyncobj has already taken them in memory: if they cannot be stored, this node must
        # never speak again (the transport goes silent on ``failed``) and stop.
        self._meta["currentTerm"] = term
        self._meta["votedForNodeId"] = votedForNodeId
        try:
            self._store_meta()
        except OSError as e:
            self.failed = e
            log.critical("raft_term_not_stored", path=self._meta_path, term=term, error=repr(e))
            raise

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta.get("currentTerm", 0))

    def getVotedForNodeId(self) -> Any:  # noqa: N802
        return self._meta.get("votedForNodeId")

    def onOneSecondTimer(self) -> None:  # noqa: N802
        if self._meta_dirty:
            try:
                self._store_meta()
            except OSError as e:  # only the commit index hint was due: try again next second
                log.warning("raft_meta_store_failed", path=self._meta_path, error=repr(e))

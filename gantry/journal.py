"""A durable Raft log for pysyncobj: an append-only file with checksummed records that is
fsync'd before this node acknowledges anything in it.

Why: pysyncobj's own FileJournal is an mmap that is never fsync'd (upstream issue #84) and whose
compaction rewrites the file in place (a crash mid-rewrite loses entries). Raft (§5.3, Figure 2)
requires a node to persist entries before answering AppendEntries and term/vote before answering
RequestVote; a leader's own entries count toward the commit majority, so they too must be durable
before commit.

How it plugs in (the smallest hook pysyncobj 0.3.17 offers): :class:`DurableJournal` implements
pysyncobj's ``Journal`` interface and :func:`installed` swaps it in for ``createJournal`` while
``SyncObj.__init__`` runs; :class:`DurableTransport` (pysyncobj's supported ``transportClass``
parameter) holds ``next_node_idx`` acknowledgements back until :meth:`DurableTransport.flush_acks`
has fsync'd the journal; the Raft actor's tick callback runs that flush and syncs the leader's
own appends once per tick (group commit: one fsync covers every entry appended or received since
the last one).

File format: ``GANTRYLOG1\\n`` then records ``<u32 length><u64 index><u64 term><command><u32
crc32>``. A torn or corrupt tail (crash mid-append) is truncated on open; nothing before it was
acknowledged because nothing is acknowledged before its fsync.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import pysyncobj.syncobj as _syncobj_module
import structlog
from pysyncobj import FAIL_REASON
from pysyncobj.journal import Journal
from pysyncobj.transport import TCPTransport

from gantry.store import fsync_dir

log = structlog.get_logger("gantry.journal")

MAGIC = b"GANTRYLOG1\n"
_MEMBERSHIP = b"\x02"  # pysyncobj's _COMMAND_TYPE.MEMBERSHIP prefix byte
_HEAD = struct.Struct("<IQQ")  # length of (index, term, command), index, term
_CRC = struct.Struct("<I")


def transport_for(journal: DurableJournal) -> type[DurableTransport]:
    """A :class:`DurableTransport` subclass bound to ``journal`` (pysyncobj instantiates the
    transport class itself)."""
    return type("BoundDurableTransport", (DurableTransport,), {"journal": journal})


class DurableJournal(Journal):  # type: ignore[misc]
    """pysyncobj ``Journal`` on an fsync'd append-only file. Entries are ``(command bytes,
    log index, term)``. Not thread-safe beyond pysyncobj's own use (one tick thread) plus
    :meth:`sync`, which may run on any thread."""

    def __init__(self, path: str, fsync: bool = True) -> None:
        self._path = path
        #: False only to measure what durability costs (``--no-raft-fsync``); never in production.
        self._fsync = fsync
        self._meta_path = path + ".meta"
        self._entries: list[tuple[bytes, int, int]] = []
        self._offsets: list[int] = []  # file offset of each entry's record
        self._lock = threading.Lock()
        self._dirty = False
        # Raft §5.3 truncates a follower's log only where an entry *conflicts* (same index,
        # different term). pysyncobj 0.3.17 truncates after prevLogIdx whenever later entries
        # exist and re-adds the batch, even when they match — which would shrink a durable log
        # below what this node already acknowledged. So deleteEntriesFrom only marks a position;
        # the adds that follow are compared with what is there, and the file is truncated at the
        # first real conflict. Matching entries stay (and are not rewritten).
        self._pending_from: int | None = None
        self.fsyncs = 0  # counter, for benchmarks and tests
        self.conflicts = 0  # real Raft log conflicts truncated (counter)
        self._open_log()
        self._meta = self._load_meta()
        self._meta_dirty = False

    # -- file handling --
    def _open_log(self) -> None:
        exists = os.path.exists(self._path)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        if not exists or os.fstat(self._fd).st_size == 0:
            os.write(self._fd, MAGIC)
            os.fsync(self._fd)
            fsync_dir(self._path)
            self._end = len(MAGIC)
            return
        with open(self._path, "rb") as f:
            data = f.read()
        if not data.startswith(MAGIC):
            raise RuntimeError(f"{self._path} is not a Gantry Raft log")
        pos = len(MAGIC)
        while pos + _HEAD.size <= len(data):
            length, idx, term = _HEAD.unpack_from(data, pos)
            end = pos + 4 + length + _CRC.size
            if length < 16 or end > len(data):
                break
            body = data[pos + 4 : pos + 4 + length]
            (crc,) = _CRC.unpack_from(data, pos + 4 + length)
            if zlib.crc32(body) != crc:
                break
            self._entries.append((bytes(body[16:]), idx, term))
            self._offsets.append(pos)
            pos = end
        self._end = pos
        if pos != len(data):  # torn tail from a crash mid-append: never acknowledged, drop it
            os.ftruncate(self._fd, pos)
            os.fsync(self._fd)

    def _load_meta(self) -> dict[str, Any]:
        try:
            with open(self._meta_path, encoding="utf-8") as f:
                meta: dict[str, Any] = json.load(f)
                return meta
        except (OSError, ValueError):
            return {}

    def _store_meta(self) -> None:
        tmp = self._meta_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self._meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._meta_path)
        fsync_dir(self._meta_path)
        self._meta_dirty = False

    # -- durability --
    def sync(self) -> bool:
        """fsync whatever was appended or truncated since the last sync; True if it did."""
        with self._lock:
            self._settle_locked()
            if not self._dirty:
                return False
            self._dirty = False
            if not self._fsync:
                return False
            os.fdatasync(self._fd)
            self.fsyncs += 1
            return True

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
        as anyone knows, so they stay — unless one is a membership change, which pysyncobj has
        already rolled back in memory; then truncate as it expects, to stay consistent."""
        pos = self._pending_from
        if pos is None:
            return
        self._pending_from = None
        if any(e[0][:1] == _MEMBERSHIP for e in self._entries[pos:]):
            self._truncate_locked(pos)

    # -- pysyncobj Journal interface --
    def add(self, command: bytes, idx: int, term: int) -> None:
        body = _HEAD.pack(16 + len(command), idx, term)[4:] + command
        rec = struct.pack("<I", len(body)) + body + _CRC.pack(zlib.crc32(body))
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
            os.pwrite(self._fd, rec, self._end)
            self._offsets.append(self._end)
            self._end += len(rec)
            self._entries.append((command, idx, term))
            self._dirty = True

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
            keep = self._entries[entryTo:]
            tmp = self._path + ".compact"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            offsets, pos, chunks = [], len(MAGIC), [MAGIC]
            for command, idx, term in keep:
                body = _HEAD.pack(16 + len(command), idx, term)[4:] + command
                rec = struct.pack("<I", len(body)) + body + _CRC.pack(zlib.crc32(body))
                offsets.append(pos)
                pos += len(rec)
                chunks.append(rec)
            os.write(fd, b"".join(chunks))
            os.fsync(fd)
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

    def _destroy(self) -> None:
        self.sync()
        if self._meta_dirty:
            self._store_meta()
        os.close(self._fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802, N803
        # The commit index is a hint (Raft recomputes it); persisted once a second.
        self._meta["raftCommitIndex"] = raftCommitIndex
        self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return int(self._meta.get("raftCommitIndex", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802, N803
        # Raft Figure 2: currentTerm and votedFor are durable before any message shows them.
        self._meta["currentTerm"] = term
        self._meta["votedForNodeId"] = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta.get("currentTerm", 0))

    def getVotedForNodeId(self) -> Any:  # noqa: N802
        return self._meta.get("votedForNodeId")

    def onOneSecondTimer(self) -> None:  # noqa: N802
        if self._meta_dirty:
            self._store_meta()


_install_lock = threading.Lock()


@contextlib.contextmanager
def installed(journal: DurableJournal) -> Iterator[None]:
    """Make pysyncobj's ``createJournal`` return ``journal`` while the block runs (wrap only
    ``SyncObj.__init__``, which calls it exactly once)."""
    with _install_lock:
        original = _syncobj_module.createJournal
        _syncobj_module.createJournal = lambda _path=None: journal
        try:
            yield
        finally:
            _syncobj_module.createJournal = original


class DurableTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport, except that an append acknowledgement (``next_node_idx``)
    leaves only after the journal is fsync'd: a follower never acknowledges an entry it could
    lose."""

    journal: DurableJournal | None = None
    #: Set while a stopping node hands leadership over: it neither campaigns (outgoing
    #: ``request_vote`` dropped) nor accepts commands forwarded by followers (answered
    #: NOT_LEADER), so a caught-up follower can take over and stay leader.
    draining = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_acks: list[tuple[Any, Any]] = []

    def send(self, node: Any, message: Any) -> bool:
        if isinstance(message, dict):
            kind = message.get("type")
            if kind == "next_node_idx" and self.journal is not None:
                # Group commit on followers: acknowledgements wait for the end of this tick,
                # when one fsync covers every append that arrived in the same poll.
                self._pending_acks.append((node, message))
                return True
            if kind == "request_vote" and self.draining:
                return True
        return bool(super().send(node, message))

    def flush_acks(self) -> None:
        """fsync the journal, then send the acknowledgements held back since the last flush.
        Called once per tick (from the Raft tick thread, which also calls ``send``)."""
        if not self._pending_acks:
            return
        if self.journal is not None:
            self.journal.sync()
        acks, self._pending_acks = self._pending_acks, []
        for node, message in acks:
            super().send(node, message)

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802 - pysyncobj's
        if self.draining and isinstance(message, dict) and message.get("type") == "apply_command":
            if "request_id" in message:
                super().send(node, {"type": "apply_command_response",
                                    "request_id": message["request_id"],
                                    "error": FAIL_REASON.NOT_LEADER})
            return
        super()._onMessageReceived(node, message)

"""Disk full (gantry/diskspace.py) without a full disk: ENOSPC injected into the Raft log's
writes, SQLITE_FULL into the writer's apply. The journal leaves no partial record and raises
DiskFull, probes for room before taking appends again, takes back a follower's half-appended
batch, never retries a failed fsync; the meta file is written in place when a new file does not
fit; the writer keeps the batch it had no room for and applies it, in order, once it fits."""

from __future__ import annotations

import errno
import os
import pathlib
import sqlite3
from typing import Any

import pytest

from gantry import diskspace
from gantry.actors.writer import DRAIN, EntryQueue, WriterActor
from gantry.consensus.journal import DurableJournal, read_meta, scan_log, store_meta
from gantry.consensus.proposals import Proposals
from gantry.consensus.pysyncobj_compat import transport_for
from gantry.db import Watermark
from gantry.diskspace import DiskFull, DiskSpace, is_space_error
from gantry.state import commands, migrate, statemachine
from tests.support import wait_until

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_space_errors_are_recognised() -> None:
    assert is_space_error(OSError(errno.ENOSPC, "x"))
    assert is_space_error(OSError(errno.EDQUOT, "x"))
    assert is_space_error(sqlite3.OperationalError("database or disk is full"))
    try:
        try:
            raise OSError(errno.ENOSPC, "inner")
        except OSError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        assert is_space_error(e)
    assert not is_space_error(OSError(errno.EIO, "x"))
    assert not is_space_error(sqlite3.OperationalError("database is locked"))
    assert not is_space_error(None)


def test_alarm_is_raised_per_part_and_cleared_when_all_have_room() -> None:
    disk = DiskSpace()
    disk.report_full("raft-log", "ENOSPC")
    disk.report_full("database", "SQLITE_FULL")
    disk.report_ok("raft-log")
    assert disk.full and set(disk.where()) == {"database"}
    disk.report_ok("database")
    assert not disk.full


class _Disk:
    """Makes the journal's file behave as on a full disk: ``room`` more bytes fit, then pwrite
    writes what fits and raises ENOSPC (as Linux does); fallocate fails while ``room`` is 0."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, j: DurableJournal) -> None:
        self.fd = j._fd
        self.room: int | None = None
        real_pwrite, real_fallocate = os.pwrite, os.posix_fallocate

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            if fd != self.fd or self.room is None:
                return real_pwrite(fd, data, offset)
            if self.room == 0:
                raise ENOSPC
            n = real_pwrite(fd, data[:self.room], offset)
            self.room -= n
            return n

        def fallocate(fd: int, offset: int, length: int) -> None:
            if fd == self.fd and self.room is not None and self.room < length:
                raise ENOSPC
            real_fallocate(fd, offset, length)

        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "posix_fallocate", fallocate)


def _journal(tmp: pathlib.Path, disk: DiskSpace | None = None) -> DurableJournal:
    j = DurableJournal(str(tmp / "raft.log"), disk=disk)
    for i in range(1, 4):
        j.add(f"e{i}".encode(), i, 1)
    j.sync()
    return j


def test_an_append_that_does_not_fit_leaves_nothing_and_raises(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alarm = DiskSpace()
    j = _journal(tmp_path, alarm)
    size = os.path.getsize(j._path)
    fake = _Disk(monkeypatch, j)
    fake.room = 10  # part of the record fits: a short write, then ENOSPC
    with pytest.raises(DiskFull) as exc:
        j.add(b"x" * 100, 4, 1)
    assert exc.value.command == b"x" * 100 and exc.value.errno == errno.ENOSPC
    assert os.path.getsize(j._path) == size and len(j) == 3
    assert j.full and alarm.full
    # Room for a small record is not room: the alarm stays until a probe reserves enough.
    fake.room = 64
    j._next_probe = 0.0
    assert not j.probe_space() and j.full
    fake.room = None
    assert not j.probe_space()  # rate-limited
    j._next_probe = 0.0
    assert j.probe_space() and not j.full and not alarm.full
    assert os.path.getsize(j._path) == size  # the probe's blocks were released
    j.add(b"x" * 100, 4, 1)
    j.close()
    assert [e[1] for e in scan_log(j._path).entries] == [1, 2, 3, 4]
    assert scan_log(j._path).damage == ""


def test_no_append_fits_while_the_writer_holds_a_batch(tmp_path: pathlib.Path) -> None:
    # Helper audit: with the database's file system full and the Raft log's not (--db-path on
    # another disk), a follower kept appending and acknowledging while its writer held a batch:
    # every committed entry waited in memory twice (queue and journal), without bound.
    alarm = DiskSpace()
    j = _journal(tmp_path, alarm)
    size = os.path.getsize(j._path)
    alarm.report_full("database", "gantry.db: database or disk is full")
    with pytest.raises(DiskFull) as exc:
        j.add(b"four", 4, 1)
    assert exc.value.command == b"four" and is_space_error(exc.value)
    assert j.full and os.path.getsize(j._path) == size and len(j) == 3
    j._next_probe = 0.0
    assert not j.probe_space() and j.full  # the log's room is not the database's
    alarm.report_ok("database")
    j._next_probe = 0.0
    assert j.probe_space() and not j.full
    assert alarm.where() == {}  # the journal raised no part of its own
    j.add(b"four", 4, 1)
    j.close()
    assert [e[1] for e in scan_log(j._path).entries] == [1, 2, 3, 4]


def test_a_half_appended_batch_is_taken_back(tmp_path: pathlib.Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    j = _journal(tmp_path)
    fake = _Disk(monkeypatch, j)
    j.begin_batch()
    j.add(b"four", 4, 2)
    fake.room = 0
    with pytest.raises(DiskFull):
        j.add(b"five", 5, 2)
    assert j.rollback_batch() == 1
    assert [e[1] for e in j[:]] == [1, 2, 3]
    fake.room = None
    j.close()
    assert [e[1] for e in scan_log(j._path).entries] == [1, 2, 3]


def test_a_failed_fsync_is_never_retried_and_silences_the_transport(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = _journal(tmp_path)
    j.add(b"four", 4, 1)
    real = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError):
        j.sync()
    monkeypatch.setattr(os, "fdatasync", real)
    with pytest.raises(OSError):  # a second fsync might "succeed" without the data: never
        j.sync()
    assert j.failed is not None
    transport_cls = transport_for(j)
    transport = transport_cls.__new__(transport_cls)  # send() only needs the journal
    assert transport.send(object(), {"type": "next_node_idx"}) is False
    j.close()  # still closes the file


def test_meta_is_written_in_place_when_a_new_file_does_not_fit(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = str(tmp_path / "raft.log.meta")
    store_meta(meta, {"currentTerm": 1, "votedForNodeId": None, "raftCommitIndex": 3})
    real = os.replace

    def no_room(src: str, dst: str) -> None:
        if str(dst).endswith(".meta"):
            raise ENOSPC
        real(src, dst)

    monkeypatch.setattr(os, "replace", no_room)
    store_meta(meta, {"currentTerm": 2, "votedForNodeId": "127.0.0.1:7001",
                      "raftCommitIndex": 9})
    assert read_meta(meta) == {"currentTerm": 2, "votedForNodeId": "127.0.0.1:7001",
                               "raftCommitIndex": 9}
    assert not os.path.exists(meta + ".tmp")


def test_a_compaction_that_does_not_fit_keeps_the_log(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = _journal(tmp_path)
    real = os.write

    def no_room(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".compact"):
            raise ENOSPC
        return real(fd, data)

    monkeypatch.setattr(os, "write", no_room)
    j.deleteEntriesTo(1)
    assert [e[1] for e in j[:]] == [1, 2, 3]
    assert not os.path.exists(j._path + ".compact")
    monkeypatch.setattr(os, "write", real)
    j.add(b"four", 4, 1)
    j.close()
    assert [e[1] for e in scan_log(j._path).entries] == [1, 2, 3, 4]


def test_writer_retries_the_batch_it_had_no_room_for(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = tmp_path / "gantry.db"
    migrate.upgrade(db_path)
    queue, watermark, proposals, alarm = EntryQueue(), Watermark(), Proposals(), DiskSpace()
    fatal: list[str] = []
    room = {"ok": False}
    attempts = [0]
    real = statemachine.apply_batch

    def apply_batch(conn: sqlite3.Connection, batch: Any) -> Any:
        attempts[0] += 1
        if not room["ok"]:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")  # SQLite rolled the transaction back itself
            raise sqlite3.OperationalError("database or disk is full")
        return real(conn, batch)

    monkeypatch.setattr(statemachine, "apply_batch", apply_batch)
    writer = WriterActor.start(db_path, queue, watermark, proposals, fatal.append, alarm)
    try:
        cmds = [commands.create_bucket(f"b{i}") for i in range(5)]
        futures = [proposals.register(c.proposal_id) for c in cmds]
        for i, c in enumerate(cmds[:3], start=1):
            queue.put(i, commands.encode(c), 1)
        writer.tell(DRAIN)
        wait_until(lambda: alarm.full, 10, what="the disk-full alarm")
        for i, c in enumerate(cmds[3:], start=4):  # more arrive behind the held batch
            queue.put(i, commands.encode(c), 1)
        writer.tell(DRAIN)
        writer.proxy().applied_index().get(timeout=10)  # queued behind DRAIN: it was handled
        tried = attempts[0]
        wait_until(lambda: attempts[0] > tried, 10, what="another attempt on the full disk")
        assert watermark.value == 0 and not any(f.done() for f in futures) and not fatal
        room["ok"] = True
        wait_until(lambda: watermark.value == 5, 10, what="the held batch applied")
        assert not alarm.full and not fatal
        assert [f.result(1)[1] for f in futures] == [1, 2, 3, 4, 5]
    finally:
        writer.stop()
    conn = sqlite3.connect(db_path)
    assert [r[0] for r in conn.execute("SELECT name FROM buckets ORDER BY name")] == [
        f"b{i}" for i in range(5)]
    conn.close()


def test_disk_full_refusal_is_a_stable_status() -> None:
    from gantry.api.errors import Call, Kind, error_status
    from gantry.consensus.errors import FAIL_DISK_FULL, NoSpace, NotCommitted, failure

    err = error_status(NoSpace("127.0.0.1:7001"), Call(Kind.WRITE))
    assert err.message == diskspace.MESSAGE == "disk full: writes refused until space is freed"
    assert err.code.name == "RESOURCE_EXHAUSTED"
    assert err.details[0].reason == "DISK_FULL"  # type: ignore[attr-defined]
    refused = failure(FAIL_DISK_FULL)  # what a full leader answers a follower's command with
    assert isinstance(refused, NoSpace) and isinstance(refused, NotCommitted)
    # A read whose read index a full node could not get: retry elsewhere.
    read = error_status(NoSpace(), Call(Kind.READ))
    assert read.code.name == "UNAVAILABLE" and read.details[0].reason == "DISK_FULL"  # type: ignore[attr-defined]

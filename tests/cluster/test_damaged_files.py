"""Damaged files in a node's data directory (issue 7, items 4–6), on real node processes.

A start on a damaged file exits 2 with one ``gantry:`` line on stderr (which file, what is wrong,
what to do) and leaves the file byte-for-byte as it was: a corrupt record in the middle of
``raft.log``, a garbage ``raft.log.meta``, a damaged ``gantry.db``, an empty database beside a
truncated ``raft.snapshot`` and a compacted log (which used to leave a NOT_SERVING zombie). A torn
log tail is cut with a copy kept; ``gantry repair-log`` cuts a damaged log explicitly.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gantry.consensus.journal import scan_log
from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import (
    REPO,
    NodeProcess,
    call_with_retry,
    damage_table,
    free_ports,
    wait_until,
)

BUCKETS = 130
SNAPSHOT_EVERY = ["--snapshot-entries", "50"]
ENV = {**os.environ, "LOG_FORMAT": "json", "GANTRY_HEARTBEAT_INTERVAL": "0"}
#: Bound on one refused start (the node exits within a couple of seconds once it refuses).
START_TIMEOUT_S = 45


#: The Raft port the base node ran on: the membership in its snapshot names it, so every node
#: started on a copy of its data directory listens there too.
_RAFT_PORT: list[int] = []


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A stopped single node's data directory: 130 buckets, log compacted into raft.snapshot."""
    _RAFT_PORT[:] = free_ports(1)
    nd = _node(tmp_path_factory.mktemp("base") / "node")
    try:
        nd.start().wait_serving()
        for i in range(BUCKETS):
            call_with_retry(nd.stub().CreateBucket, svc.CreateBucketRequest(name=f"b-{i:03d}"))
    finally:
        assert nd.stop() == 0
    assert scan_log(str(nd.data_dir / "raft.log")).first_index > 2  # compacted
    return nd.data_dir


@pytest.fixture
def data_dir(base: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    d = tmp_path / "node"
    shutil.copytree(base, d)
    yield d


def _node(data_dir: pathlib.Path) -> NodeProcess:
    (port,) = free_ports(1)
    return NodeProcess(data_dir, port, _RAFT_PORT[0], [], SNAPSHOT_EVERY, node_id="solo")


def _refused(data_dir: pathlib.Path) -> str:
    """Start a node on ``data_dir`` and wait (bounded) for it to exit; assert exit code 2 and
    exactly one line on stderr, starting ``gantry:``; return that line."""
    r = subprocess.run(_node(data_dir).args(), cwd=str(REPO), env=ENV, capture_output=True,
                       timeout=START_TIMEOUT_S)
    lines = r.stderr.decode(errors="replace").splitlines()
    assert r.returncode == 2, (r.returncode, lines[-5:], r.stdout.decode()[-2000:])
    assert len(lines) == 1 and lines[0].startswith("gantry: "), lines
    return lines[0]


def _serves_all_buckets(data_dir: pathlib.Path, expected: int = BUCKETS) -> None:
    nd = _node(data_dir)
    try:
        nd.start().wait_serving(60)
        names = [b.name for b in call_with_retry(nd.stub().ListBuckets,
                                                 svc.ListBucketsRequest()).buckets]
        assert names == [f"b-{i:03d}" for i in range(expected)]
    finally:
        assert nd.stop() == 0


def _flip_byte_in_record(log: pathlib.Path, position: int) -> tuple[int, int]:
    """Damage the record at list ``position`` of ``log``; returns (its offset, index before)."""
    scan = scan_log(str(log))
    off = scan.offsets[position]
    data = bytearray(log.read_bytes())
    data[off + 24] ^= 0xFF  # inside the command bytes: the checksum no longer matches
    log.write_bytes(bytes(data))
    return off, scan.entries[position - 1][1]


def test_corrupt_record_in_the_middle_of_the_log_is_refused_and_left_alone(
        data_dir: pathlib.Path) -> None:
    log = data_dir / "raft.log"
    off, last_good = _flip_byte_in_record(log, len(scan_log(str(log)).entries) // 2)
    before = log.read_bytes()
    line = _refused(data_dir)
    assert f"{log} is damaged at byte {off} " in line
    assert f"last good record before it is log index {last_good};" in line
    assert f"gantry repair-log --data-dir {data_dir}" in line
    # A one-member cluster: no peer to restore from (the advice said "remove-node" it), but its
    # database is intact, and following the advice keeps every acknowledged write.
    assert "remove-node" not in line and "only member" in line
    restore = f"gantry restore {data_dir / 'gantry.db'} --data-dir NEW_DIR --raft-addr "
    assert restore in line
    assert log.read_bytes() == before
    assert not list(data_dir.glob("raft.log.*-*"))  # no copy: nothing was cut
    new = data_dir.parent / "new"
    r = subprocess.run([sys.executable, "-m", "gantry.cli", "restore", str(data_dir / "gantry.db"),
                        "--data-dir", str(new), "--raft-addr", f"127.0.0.1:{_RAFT_PORT[0]}"],
                       cwd=str(REPO), env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    _serves_all_buckets(new)


def test_repair_log_keeps_a_copy_cuts_the_log_and_the_node_recovers(
        data_dir: pathlib.Path) -> None:
    log = data_dir / "raft.log"
    repair = [sys.executable, "-m", "gantry.cli", "repair-log", "--data-dir", str(data_dir)]
    last_bucket_entry = scan_log(str(log)).last_index  # a live start appends other entries
    live = _node(data_dir)
    try:  # refused while a node runs on the directory
        live.start().wait_serving()
        before = log.read_bytes()
        r = subprocess.run(repair, cwd=str(REPO), env=ENV, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2 and "in use" in r.stderr, r
        # Untouched by the refused repair (the live node itself may append meanwhile).
        assert log.read_bytes()[:len(before)] == before
        assert not list(data_dir.glob("raft.log.corrupt-*"))
    finally:
        assert live.stop() == 0
    off, last_good = _flip_byte_in_record(log, len(scan_log(str(log)).entries) // 2)
    damaged = log.read_bytes()
    r = subprocess.run(repair, cwd=str(REPO), env=ENV, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    backups = list(data_dir.glob("raft.log.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged
    assert log.read_bytes() == damaged[:off]
    assert f"corrupt at byte {off} of {len(damaged)}" in r.stdout
    assert f"dropped {len(damaged) - off} bytes" in r.stdout and "valid-looking" in r.stdout
    assert f"the log now ends at log index {last_good} " in r.stdout
    # The database applied past the cut: the node refuses it, and the note says what to do.
    assert "note:" in r.stdout and "Move gantry.db" in r.stdout
    assert "Raft log ends at" in _refused(data_dir)
    for f in data_dir.glob("gantry.db*"):
        f.rename(f.with_name("moved-" + f.name))
    # Rebuilt from raft.snapshot and the cut log: every bucket up to the cut is back (the entries
    # after the snapshot are one CreateBucket each), the ones after it are gone from this node.
    _serves_all_buckets(data_dir, BUCKETS - (last_bucket_entry - last_good))
    # The repair lowered the persisted commit hint too: no "entries lost" clamp warning.
    node_log = (data_dir.parent / "solo.log").read_text()
    assert "exceeds journal end" not in node_log


@pytest.mark.parametrize("content", [b"\x00\x17\xfe garbage", b'{"currentTerm": "7"}'],
                         ids=["garbage", "wrong-shape"])
def test_damaged_raft_meta_is_refused(data_dir: pathlib.Path, content: bytes) -> None:
    meta = data_dir / "raft.log.meta"
    meta.write_bytes(content)
    line = _refused(data_dir)
    assert f"Raft metadata {meta} " in line
    assert "only member" in line and "gantry restore" in line and "remove-node" not in line
    assert meta.read_bytes() == content


def test_missing_raft_meta_beside_a_log_is_refused(data_dir: pathlib.Path) -> None:
    # Operator trial: with raft.log.meta deleted the node started at term 1 with no vote (a
    # fresh node's state) although its log held entries: it could vote twice in one term.
    (data_dir / "raft.log.meta").unlink()
    line = _refused(data_dir)
    assert f"Raft metadata {data_dir / 'raft.log.meta'} is missing" in line
    assert "vote twice in one term" in line and "gantry restore" in line
    assert not (data_dir / "raft.log.meta").exists()


def test_raft_meta_gone_back_below_the_logs_term_is_refused(data_dir: pathlib.Path) -> None:
    # New-user trial: a hand-edited meta with term 0 beside a log of term-1 entries was taken.
    meta = data_dir / "raft.log.meta"
    meta.write_text('{"currentTerm": 0, "votedForNodeId": null, "raftCommitIndex": 99}')
    line = _refused(data_dir)
    assert f"Raft metadata {meta} says term 0, but" in line and "vote twice in one term" in line
    assert json.loads(meta.read_text())["currentTerm"] == 0


def test_torn_log_tail_is_cut_with_a_copy_kept(data_dir: pathlib.Path) -> None:
    log = data_dir / "raft.log"
    scan = scan_log(str(log))
    last = log.read_bytes()[scan.offsets[-1]:]
    torn = last[: len(last) // 2]  # a crash halfway through appending one more record
    with open(log, "ab") as f:
        f.write(torn)
    _serves_all_buckets(data_dir)
    copies = list(data_dir.glob("raft.log.torn-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == torn


def test_empty_database_and_truncated_snapshot_are_refused_not_a_zombie(
        data_dir: pathlib.Path) -> None:
    db, snap = data_dir / "gantry.db", data_dir / "raft.snapshot"
    for f in data_dir.glob("gantry.db*"):
        f.unlink()
    db.write_bytes(b"")
    snap.write_bytes(snap.read_bytes()[: snap.stat().st_size // 2])
    before = snap.read_bytes()
    first = scan_log(str(data_dir / "raft.log")).first_index
    line = _refused(data_dir)
    assert f"snapshot {snap} is truncated" in line
    assert f"starts at index {first}" in line and "applied only up to index 0" in line
    assert "only member" in line and "from a backup" in line and "remove-node" not in line
    assert snap.read_bytes() == before and db.read_bytes() == b""


def test_a_damaged_snapshot_the_database_would_be_restored_from_is_refused(
        data_dir: pathlib.Path) -> None:
    """Bit rot inside raft.snapshot (its header and metadata intact): with gantry.db moved
    aside, the node restored the damaged file, served INTERNAL on reads and took writes."""
    snap = data_dir / "raft.snapshot"
    damage_table(snap)
    for f in data_dir.glob("gantry.db*"):
        f.rename(f.with_name("moved-" + f.name))
    before = snap.read_bytes()
    line = _refused(data_dir)
    assert f"snapshot {snap} is damaged (SQLite's quick_check: " in line, line
    assert snap.read_bytes() == before and not (data_dir / "gantry.db").exists()
    # The database put back (it is ahead of the snapshot): the snapshot is not needed, it starts.
    for f in data_dir.glob("moved-*"):
        f.rename(f.with_name(f.name.removeprefix("moved-")))
    _serves_all_buckets(data_dir)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_database_is_one_line_and_the_advice_works(
        data_dir: pathlib.Path, damage: str) -> None:
    db = data_dir / "gantry.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    before = db.read_bytes()
    line = _refused(data_dir)
    assert line.startswith(f"gantry: database {db} is damaged (")
    assert "move gantry.db" in line
    assert db.read_bytes() == before
    # The advice: move it out of the way; the node rebuilds it from raft.snapshot and raft.log.
    for f in data_dir.glob("gantry.db*"):
        f.rename(f.with_name("moved-" + f.name))
    _serves_all_buckets(data_dir)


def test_torn_tail_holding_applied_entries_says_what_happened(data_dir: pathlib.Path) -> None:
    """The last record torn although the database applied it (the disk lost fsync'd data): the
    cut keeps a copy and the start is refused with what happened and what to do — not "a
    database and a Raft log of different histories" (found by an operator trial)."""
    import sqlite3

    log = data_dir / "raft.log"
    scan = scan_log(str(log))
    conn = sqlite3.connect(f"file:{data_dir / 'gantry.db'}?mode=ro", uri=True)
    applied = conn.execute("SELECT applied_index FROM raft_applied").fetchone()[0]
    conn.close()
    assert applied == scan.last_index  # precondition: the last entry was applied
    with open(log, "r+b") as f:
        f.truncate(log.stat().st_size - 7)
    line = _refused(data_dir)
    assert "torn tail cut from raft.log" in line
    assert f"up to log index {applied}" in line and f"now ends at {applied - 1}" in line
    assert "only member" in line and "move gantry.db" not in line
    assert len(list(data_dir.glob("raft.log.torn-*"))) == 1
    # The advice ("restore from a backup, or move gantry.db aside and lose the writes" before)
    # followed as given: a new directory from the node's own database keeps every bucket.
    restore = line.split("`")[1]
    assert restore.startswith(f"gantry restore {data_dir / 'gantry.db'} --data-dir NEW_DIR"), line
    new_dir = data_dir.parent / "new"
    argv = [sys.executable, "-m", "gantry.cli", *restore.replace("NEW_DIR", str(new_dir))
            .split()[1:]]
    r = subprocess.run(argv, cwd=str(REPO), env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    _serves_all_buckets(new_dir)


def test_another_raft_addr_on_a_data_directory_is_logged(data_dir: pathlib.Path) -> None:
    """A single node restarted with another --raft-addr waited for a leader for ever with
    nothing in its log saying why (a new-user trial)."""
    (port, raft) = free_ports(2)
    nd = NodeProcess(data_dir, port, raft, [], SNAPSHOT_EVERY, node_id="moved")
    try:
        nd.start()
        event = wait_until(lambda: next((e for e in nd.log_events()
                                         if e.get("event") == "raft_address_not_a_member"), None),
                           30, 0.05, "raft_address_not_a_member")
        assert event["members"] == [f"127.0.0.1:{_RAFT_PORT[0]}"]
        assert event["raft_addr"] == f"127.0.0.1:{raft}"
    finally:
        nd.stop()
    nd = _node(data_dir)  # its own address: no warning
    try:
        nd.start().wait_serving(60)
        assert not any(e.get("event") == "raft_address_not_a_member" for e in nd.log_events())
    finally:
        assert nd.stop() == 0

"""A full disk on real processes (issue 9, part 6): a node on a small tmpfs the test mounts is
filled up with a filler file; writes then fail with ``RESOURCE_EXHAUSTED "disk full: writes
refused until space is freed"`` while reads keep serving; once the filler is deleted, writes work
again with no restart; the database passes ``PRAGMA integrity_check`` and holds every
acknowledged write. Needs root (``mount -t tmpfs``): skipped otherwise."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import sqlite3
import subprocess
import time
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gantry.diskspace import MESSAGE
from gantry.pb.service.v1 import service_pb2 as svc
from tests.cluster.helpers import leader_of, status
from tests.support import NodeProcess, free_ports, wait_until, write_any

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to mount a small tmpfs (mount -t tmpfs)")


@contextlib.contextmanager
def small_fs(where: pathlib.Path, size: str = "64m") -> Iterator[pathlib.Path]:
    """A tmpfs of ``size`` mounted at ``where`` for the block; unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(fs: pathlib.Path) -> pathlib.Path:
    """Write a filler file until the file system has no byte left."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in (2**20, 4096, 512, 1):
            buf = b"\xa5" * chunk
            while True:
                try:
                    os.write(fd, buf)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    finally:
        os.close(fd)
    return filler


def _reason(e: grpc.RpcError) -> str:
    st = rpc_status.from_call(e)  # type: ignore[arg-type]
    for d in st.details if st is not None else ():
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return str(info.reason)
    return ""


def _create(nd: NodeProcess, name: str) -> str:
    """CreateBucket ``name`` (request id = name): "ok", "full" (the stable refusal) or the code
    name of any other outcome (unknown: retried later with the same id)."""
    try:
        nd.stub().CreateBucket(svc.CreateBucketRequest(name=name), timeout=3,
                               metadata=(("x-request-id", name),))
        return "ok"
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert e.details() == MESSAGE and _reason(e) == "DISK_FULL", (e.code(), e.details())
            return "full"
        return str(e.code().name)


def _names(nd: NodeProcess, stale: bool = False) -> set[str]:
    md = (("x-gantry-consistency", "stale"),) if stale else ()
    r = nd.stub().ListBuckets(svc.ListBucketsRequest(), timeout=5, metadata=md)
    return {b.name for b in r.buckets}


def _fill_until_refused(nodes: list[NodeProcess], fs: list[pathlib.Path], target: NodeProcess,
                        acked: list[str], unknown: list[str]) -> list[pathlib.Path]:
    fillers = [fill(f) for f in fs]
    outcome = ""
    for i in range(2000):  # the first few may still fit in the last pages the files hold
        name = f"during-{i}"
        outcome = _create(target, name)
        if outcome == "ok":
            acked.append(name)
        elif outcome == "full":
            break
        else:
            unknown.append(name)
    assert outcome == "full", "writes never refused on a full disk"
    for i in range(5):  # and from now on, every write is refused the same way, at once
        t0 = time.monotonic()
        assert _create(target, f"refused-{i}") == "full"
        assert time.monotonic() - t0 < 1.0
    return fillers


def _check_files(db: pathlib.Path, acked: list[str]) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        names = {r[0] for r in conn.execute("SELECT name FROM buckets")}
        counts = conn.execute("SELECT name, COUNT(*) FROM buckets GROUP BY name "
                              "HAVING COUNT(*) > 1").fetchall()
    finally:
        conn.close()
    missing = [n for n in acked if n not in names]
    assert not missing, f"acknowledged writes lost: {missing[:5]}"
    assert not counts, f"applied twice: {counts[:5]}"


@pytest.mark.parametrize("db_elsewhere", [False, True], ids=["everything", "raft-log-only"])
def test_full_disk_refuses_writes_serves_reads_and_recovers_without_restart(
        tmp_path: pathlib.Path, db_elsewhere: bool) -> None:
    """``everything``: data directory and database on the small disk (SQLite usually runs out
    first); ``raft-log-only``: the database elsewhere (``--db-path``), so the Raft log append is
    what does not fit."""
    with small_fs(tmp_path / "fs") as fs:
        port, raft = free_ports(2)
        db = tmp_path / "db" / "gantry.db"
        # raft-log-only also turns the up-front free-space check off, so that the Raft log
        # append itself is what meets the full disk.
        extra = ["--db-path", str(db), "--min-free-bytes", "0"] if db_elsewhere else []
        nd = NodeProcess(fs / "node", port, raft, [], extra, node_id="small")
        nd.log_path = tmp_path / "small.log"  # the log is not on the small disk
        try:
            nd.start().wait_serving()
            assert nd.proc is not None
            pid = nd.proc.pid
            acked = []
            for i in range(20):
                write_any([nd], "CreateBucket", svc.CreateBucketRequest(name=f"before-{i}"),
                          f"before-{i}")
                acked.append(f"before-{i}")
            unknown: list[str] = []
            (filler,) = _fill_until_refused([nd], [fs], nd, acked, unknown)
            if not db_elsewhere:
                # The up-front check refuses the first write on a full disk at once, instead of
                # appending it, holding it in the writer and answering "outcome unknown" at the
                # deadline (operator trial).
                assert not unknown, unknown

            # Reads keep serving, at every consistency level, and see every acknowledged write.
            assert set(acked) <= _names(nd)
            assert set(acked) <= _names(nd, stale=True)
            nd.stub().GetBucket(svc.GetBucketRequest(name="before-3"), timeout=5)
            assert nd.is_serving()

            # Space returns: writes work again, same process.
            filler.unlink()
            wait_until(lambda: _create(nd, "after-0") == "ok", 30, 0.2, "a write after the disk "
                       "has room again")
            acked.append("after-0")
            for i in range(1, 20):
                write_any([nd], "CreateBucket", svc.CreateBucketRequest(name=f"after-{i}"),
                          f"after-{i}")
                acked.append(f"after-{i}")
            for name in unknown:  # in doubt: the same request id gives the original outcome
                write_any([nd], "CreateBucket", svc.CreateBucketRequest(name=name), name)
                acked.append(name)
            assert nd.proc.poll() is None and nd.proc.pid == pid, "the node restarted"
            assert set(acked) <= _names(nd)
            events = {e.get("event") for e in nd.log_events()}
            assert {"disk_full", "disk_space_recovered"} <= events, nd.tail_log()
            if db_elsewhere:
                assert {"raft_log_append_refused", "raft_log_appends_resumed"} <= events
            assert "node_failed" not in events
        finally:
            assert nd.stop() == 0
        _check_files(db if db_elsewhere else nd.data_dir / "gantry.db", acked)


def test_full_raft_log_on_the_leader_of_three(tmp_path: pathlib.Path) -> None:
    """Bonus: three nodes, each with its Raft log on its own small tmpfs (databases elsewhere);
    the leader's disk fills up. It refuses writes, hands leadership to a follower, and the
    cluster keeps taking writes (and linearizable reads) through the others while the full node
    serves stale reads; once its space returns it catches up and takes writes again. No node
    restarts; replicas converge with every acknowledged write."""
    ports = free_ports(6)
    fss = [tmp_path / f"fs{i}" for i in range(3)]
    with contextlib.ExitStack() as stack:
        for f in fss:
            stack.enter_context(small_fs(f, "48m"))
        nodes = [NodeProcess(fss[i] / "node", ports[i], ports[3 + i],
                             [ports[3 + j] for j in range(3) if j != i],
                             ["--db-path", str(tmp_path / f"db{i}" / "gantry.db"),
                              "--min-free-bytes", "0"],  # the Raft log append meets the full disk
                             node_id=f"n{i}")
                 for i in range(3)]
        for i, nd in enumerate(nodes):
            nd.log_path = tmp_path / f"n{i}.log"
        codes: list[int | None] = []
        try:
            for nd in nodes:
                nd.start()
            for nd in nodes:
                nd.wait_serving()
            pids = [nd.proc.pid for nd in nodes if nd.proc is not None]
            acked = []
            for i in range(20):
                write_any(nodes, "CreateBucket", svc.CreateBucketRequest(name=f"before-{i}"),
                          f"before-{i}", start=i)
                acked.append(f"before-{i}")
            full = leader_of(nodes)
            others = [n for n in nodes if n is not full]
            unknown: list[str] = []
            (filler,) = _fill_until_refused(nodes, [fss[nodes.index(full)]], full, acked,
                                            unknown)
            new_lead = leader_of(others)  # it handed leadership over
            for i in range(20):
                name = f"while-full-{i}"
                write_any(others, "CreateBucket", svc.CreateBucketRequest(name=name), name,
                          start=i)
                acked.append(name)
            assert _create(full, "refused-still") == "full"
            assert set(acked) <= _names(new_lead)  # linearizable, on a node with room
            assert {f"before-{i}" for i in range(20)} <= _names(full, stale=True)
            filler.unlink()
            wait_until(lambda: _create(full, "after-0") == "ok", 30, 0.2,
                       "a write through the full node after it has room again")
            acked.append("after-0")
            for name in unknown:
                write_any(nodes, "CreateBucket", svc.CreateBucketRequest(name=name), name)
                acked.append(name)
            assert [nd.proc.pid for nd in nodes if nd.proc is not None] == pids
            assert all(nd.proc is not None and nd.proc.poll() is None for nd in nodes)
            top = status(leader_of(nodes)).commit_index
            wait_until(lambda: all(status(n).applied_index >= top for n in nodes), 30,
                       what="every node caught up")
            events = {e.get("event") for e in full.log_events()}
            assert {"raft_log_append_refused", "leadership_handover_disk_full",
                    "disk_space_recovered"} <= events, full.tail_log()
        finally:
            codes = [nd.stop() for nd in nodes]
        assert codes == [0, 0, 0]
        for i in range(3):
            _check_files(tmp_path / f"db{i}" / "gantry.db", acked)

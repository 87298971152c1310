"""Process lifecycle: graceful SIGTERM, and refusal to start on an unknown or dirty schema."""

from __future__ import annotations

import pathlib
import sqlite3
import threading

import grpc

from gantry.pb.service.v1 import service_pb2 as svc
from gantry.state import migrate
from tests.support import NodeProcess, free_ports, single_node, wait_until


def _node(tmp: pathlib.Path) -> NodeProcess:
    port, raft = free_ports(2)
    return NodeProcess(tmp / "node", port, raft, [], node_id="life")


def test_sigterm_finishes_in_flight_writes_and_checkpoints(tmp_path: pathlib.Path) -> None:
    nd = _node(tmp_path)
    acked: list[str] = []
    errors: list[grpc.StatusCode] = []
    stop = threading.Event()
    try:
        nd.start().wait_serving()
        stub = nd.stub()

        def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                try:
                    stub.CreateBucket(svc.CreateBucketRequest(name=f"t{w}-{i}"), timeout=10)
                    acked.append(f"t{w}-{i}")
                except grpc.RpcError as e:
                    errors.append(e.code())
                    return
                except ValueError:
                    return
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) >= 100, 30, what="100 writes")
        code = nd.stop()
        stop.set()
        for t in threads:
            t.join(10)
        assert code == 0, nd.tail_log()
        # Refused calls are UNAVAILABLE (server shutting down), never INTERNAL.
        assert set(errors) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, errors
        events = [e.get("event") for e in nd.log_events()]
        assert "node_stopped" in events and "writer_stopped" in events
        wal = nd.data_dir / "gantry.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0, "WAL not checkpointed on shutdown"
        conn = sqlite3.connect(f"file:{nd.data_dir / 'gantry.db'}?mode=ro", uri=True)
        names = {r[0] for r in conn.execute("SELECT name FROM buckets")}
        conn.close()
        assert set(acked) <= names
    finally:
        stop.set()
        nd.stop()


def test_refuses_unknown_schema_version(tmp_path: pathlib.Path) -> None:
    nd = _node(tmp_path)
    nd.data_dir.mkdir(parents=True)
    db = nd.data_dir / "gantry.db"
    migrate.upgrade(db)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc)"
                 " VALUES ('ffff', '9999_from_the_future', '2030-01-01 00:00:00')")
    conn.commit()
    conn.close()
    nd.start()
    assert nd.proc is not None
    assert nd.proc.wait(30) == 2
    log = nd.log_path.read_text()
    assert "schema_refused" in log and "newer version" in log


def test_refuses_dirty_schema_until_lock_broken(tmp_path: pathlib.Path) -> None:
    nd = _node(tmp_path)
    nd.data_dir.mkdir(parents=True)
    db = nd.data_dir / "gantry.db"
    migrate.upgrade(db)
    conn = sqlite3.connect(db)  # a migration that crashed mid-way leaves yoyo's lock row
    conn.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, '2026-01-01', 424242)")
    conn.commit()
    conn.close()
    nd.start()
    assert nd.proc is not None
    assert nd.proc.wait(30) == 2
    assert "gantry migrate break-lock" in nd.log_path.read_text()
    migrate.break_lock(db)
    try:
        nd.start().wait_serving()
    finally:
        assert nd.stop() == 0


def test_port_in_use_fails_fast_with_a_clear_message(tmp_path: pathlib.Path) -> None:
    first = _node(tmp_path / "a")
    try:
        first.start().wait_serving()
        # Same Raft port, different gRPC port and data dir.
        [port] = free_ports(1)
        second = NodeProcess(tmp_path / "b" / "node", port, first.raft_port, [], node_id="second")
        second.start()
        assert second.proc is not None
        assert second.proc.wait(30) == 2
        assert "cannot listen on Raft address" in second.log_path.read_text()
        # Same gRPC port, free Raft port.
        [raft] = free_ports(1)
        third = NodeProcess(tmp_path / "c" / "node", first.port, raft, [], node_id="third")
        third.start()
        assert third.proc is not None
        assert third.proc.wait(30) == 2
        assert "cannot listen on gRPC address" in third.log_path.read_text()
        assert first.is_serving()
    finally:
        first.stop()


def test_second_process_on_the_same_data_dir_is_refused(tmp_path: pathlib.Path) -> None:
    import subprocess
    import sys

    first = _node(tmp_path)
    try:
        first.start().wait_serving()
        port, raft = free_ports(2)  # different ports, same data directory
        second = NodeProcess(first.data_dir, port, raft, [], node_id="intruder")
        second.log_path = tmp_path / "intruder.log"
        second.start()
        assert second.proc is not None
        assert second.proc.wait(30) == 2
        assert "is in use by pid" in second.log_path.read_text()
        # Migrations refuse a database a live node holds, too.
        r = subprocess.run([sys.executable, "-m", "gantry.cli", "migrate", "down", "--db",
                            str(first.data_dir / "gantry.db")], capture_output=True, text=True)
        assert r.returncode == 2 and "in use" in r.stderr
        first.stub().CreateBucket(svc.CreateBucketRequest(name="still-mine"), timeout=10)
        assert first.is_serving()
    finally:
        first.stop()


def _listen_addrs(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) with a LISTEN socket on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # 0A = LISTEN
                out.add(addr)
    return out


def test_raft_and_grpc_listen_on_loopback_only(tmp_path: pathlib.Path) -> None:
    nd = _node(tmp_path)
    try:
        nd.start().wait_serving()
        loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
        raft, grpc_ = _listen_addrs(nd.raft_port), _listen_addrs(nd.port)
        assert raft and raft <= loopback, f"Raft listens beyond 127.0.0.1: {raft}"
        assert grpc_ and grpc_ <= loopback, f"gRPC listens beyond 127.0.0.1: {grpc_}"
    finally:
        nd.stop()


def test_refuses_a_database_ahead_of_its_raft_log(tmp_path: pathlib.Path) -> None:
    nd = _node(tmp_path)
    try:
        nd.start().wait_serving()
        for i in range(5):
            nd.stub().CreateBucket(svc.CreateBucketRequest(name=f"ahead-{i}"), timeout=10)
    finally:
        assert nd.stop() == 0
    # An operator deletes the Raft log but keeps the database (or copies a database in).
    (nd.data_dir / "raft.log").unlink()
    (nd.data_dir / "raft.log.meta").unlink()
    nd.start()
    assert nd.proc is not None
    assert nd.proc.wait(30) == 2
    assert "Raft log ends at" in nd.log_path.read_text()


def test_data_directory_and_files_are_private(tmp_path: pathlib.Path) -> None:
    # Operator trial: the data directory was 0755 and gantry.db 0644 (etcd: 0700 / 0600).
    import stat

    with single_node(tmp_path / "n") as nd:
        nd.stub().CreateBucket(svc.CreateBucketRequest(name="private"), timeout=10)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode)
                 for p in [nd.data_dir, *nd.data_dir.iterdir()] if p.is_file() or p.is_dir()}
    assert modes[nd.data_dir.name] == 0o700, modes
    assert all(m & 0o077 == 0 for m in modes.values()), modes


def test_a_data_dir_that_is_a_file_is_refused_in_one_line(tmp_path: pathlib.Path) -> None:
    # Operator trial: `--data-dir` naming a regular file exited 1 with nothing on stderr (only
    # a start_failed traceback in the JSON log).
    import subprocess

    not_a_dir = tmp_path / "afile"
    not_a_dir.write_text("x")
    port, raft = free_ports(2)
    nd = NodeProcess(not_a_dir, port, raft, [], node_id="file")
    r = subprocess.run(nd.args(), capture_output=True, text=True, timeout=60)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, lines, r.stdout[-2000:])
    assert lines == [f"gantry: --data-dir {not_a_dir} exists and is not a directory: give a "
                     "directory the node may create or write to"]
    assert not_a_dir.read_text() == "x"
    nd.data_dir = not_a_dir / "sub"
    r = subprocess.run(nd.args(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "a parent of it is not a directory" in r.stderr, r.stderr
    # An empty --data-dir was the current directory (the default is ./data).
    r = subprocess.run([*nd.args(), "--data-dir", ""], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 2 and "--data-dir: must not be empty" in r.stderr, r.stderr
    assert not (tmp_path / "LOCK").exists() and not (tmp_path / "gantry.db").exists()


def test_refused_starts_leave_a_new_data_dir_uncreated(tmp_path: pathlib.Path) -> None:
    # Operator trial: --force-new-cluster on a new directory, or a taken gRPC port, created the
    # directory (and its LOCK, gantry.db, raft.log) before refusing.
    import socket
    import subprocess

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port, raft = taken.getsockname()[1], free_ports(1)[0]
        for extra, expect, grpc_port in (
                (["--force-new-cluster"], "nothing to recover", free_ports(1)[0]),
                ([], f"cannot listen on gRPC address 127.0.0.1:{port} (in use?)", port)):
            new_dir = tmp_path / f"new-{len(extra)}"
            nd = NodeProcess(new_dir, grpc_port, raft, [], extra, node_id="refused")
            r = subprocess.run(nd.args(), capture_output=True, text=True, timeout=60)
            assert r.returncode == 2 and expect in r.stderr, (r.returncode, r.stderr)
            assert not new_dir.exists()

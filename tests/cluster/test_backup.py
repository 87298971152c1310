"""Backup and restore on real processes: ``gantry backup`` from a follower of a 3-node cluster
under write load, ``gantry restore`` into a new directory, a node started on it serves every
acknowledged row and takes writes, then grows with ``gantry add-node``; the Backup stream's
shape; restore refusing a live or non-empty directory."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pathlib
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import grpc
import pytest

from gantry.backup import check_database
from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.tlsconfig import ClientConfig
from tests.certs import make_pki
from tests.cluster.helpers import (
    BUCKET,
    CRADLE,
    Load,
    admin,
    check_converged,
    leader_of,
    objects_by_key,
    setup_bucket,
    status,
)
from tests.support import REPO, NodeProcess, cluster, free_ports, single_node, wait_until, write_any
from tests.support import gantry_cli as gantry

FINAL = re.compile(r"^wrote (?P<path>\S+): (?P<bytes>\d+) bytes at applied index (?P<index>\d+) "
                   r"\(term (?P<term>\d+)\) from (?P<node>\S+) in (?P<s>[\d.]+) s$")



def test_backup_from_a_follower_restores_into_a_cluster_that_grows(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "backup.db"
    with cluster(tmp_path, 3, CRADLE) as nodes:
        setup_bucket(nodes)
        with Load(nodes, threads=2) as load:
            load.wait_acked(40)
            lead = leader_of(nodes)
            follower = next(n for n in nodes if n is not lead)
            with load.lock:
                acked = list(load.acked)
            # Every write acknowledged so far is at or below the leader's commit index; once the
            # follower applied that far, its backup must hold them all.
            commit = status(lead).commit_index
            wait_until(lambda: status(follower).applied_index >= commit, 20,
                       what="the follower applied the acknowledged writes")
            r = gantry("backup", "--addr", follower.addr, str(out))
            load.wait_acked(len(acked) + 20)  # the load went on during the backup
        assert r.returncode == 0, r.stderr
        m = FINAL.match(r.stdout.strip())
        assert m, r.stdout
        assert r.stderr == ""  # no progress bar without a terminal
        assert m["node"] == follower.node_id and m["path"] == str(out)
        index, term = int(m["index"]), int(m["term"])
        assert index >= commit
        assert out.stat().st_size == int(m["bytes"])
        assert check_database(out) == (index, term)
        assert not (tmp_path / "backup.db.tmp").exists()
        assert not list(follower.data_dir.glob("backup-*")), "the node's copy was not removed"
        in_backup = objects_by_key(out)
        missing = [k for k in acked if not in_backup[k]]
        assert not missing, f"{len(missing)} acknowledged writes not in the backup: {missing[:5]}"

    grpc1, raft1, grpc2, raft2 = free_ports(4)
    data = tmp_path / "restored"
    r = gantry("restore", str(out), "--data-dir", str(data), "--raft-addr", f"127.0.0.1:{raft1}")
    assert r.returncode == 0, r.stderr
    assert f"at applied index {index} (term {term})" in r.stdout
    new = NodeProcess(data, grpc1, raft1, [], node_id="restored")
    second = NodeProcess(tmp_path / "second", grpc2, raft2, [raft1], node_id="second")
    try:
        new.start().wait_serving()
        st = status(new)
        assert [m.raft_addr for m in st.members] == [new.raft_addr]
        assert st.role == "leader" and st.term > term and st.applied_index >= index
        # The log goes on after the backup's index (the node's own registration is applied there).
        wait_until(lambda: status(new).applied_index > index, 10, what="an entry past the backup")
        have = objects_by_key(data / "gantry.db")
        assert not [k for k in acked if not have[k]]
        # It takes writes: a new bucket, and an object in the restored bucket.
        write_any([new], "CreateBucket", svc.CreateBucketRequest(name="after-restore"), "ar-1")
        write_any([new], "PlanWrite", svc.PlanWriteRequest(bucket=BUCKET, key="after/k", size=1),
                  "ar-2")
        # A live data directory and a non-empty one are refused, and left alone.
        r = gantry("restore", str(out), "--data-dir", str(data))
        assert r.returncode == 2 and "in use by pid" in r.stderr, r.stderr
        assert new.is_serving()
        # Grow: start the second node with the restored one as its peer, then add it.
        second.start()

        def added() -> bool:
            r = gantry("add-node", second.raft_addr, "--addr", new.addr)
            assert "not reachable" in r.stderr or r.returncode == 0, r.stderr
            return r.returncode == 0

        wait_until(added, 30, 0.2, what="add-node of the second node")
        second.wait_serving()
        check_converged([new, second], [*acked, "after/k"])
        assert any(e.get("event") == "snapshot_restored" and e.get("from_leader")
                   for e in second.log_events()), second.tail_log()
        assert {m.raft_addr for m in status(second).members} == {new.raft_addr, second.raft_addr}
        second.stop()
        r = gantry("restore", str(out), "--data-dir", str(second.data_dir))
        assert r.returncode == 2 and "is not empty" in r.stderr, r.stderr
    finally:
        second.stop()
        new.stop()


def test_backup_stream_shape_progress_bar_and_quiet(tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path, ["--cradle-addr", "127.0.0.1:9"]) as nd:
        for i in range(30):
            write_any([nd], "CreateBucket", svc.CreateBucketRequest(name=f"shape-{i:03d}"), f"s{i}")
        applied = status(nd).applied_index
        msgs = list(admin(nd).Backup(apb.BackupRequest(chunk_bytes=4096), timeout=30))
        kinds = [m.WhichOneof("kind") for m in msgs]
        assert kinds[0] == "header" and kinds[-1] == "trailer"
        assert set(kinds[1:-1]) == {"data"}
        head, trail = msgs[0].header, msgs[-1].trailer
        data = b"".join(m.data for m in msgs[1:-1])
        assert all(len(m.data) == 4096 for m in msgs[1:-2]) and 0 < len(msgs[-2].data) <= 4096
        assert len(data) == head.size_bytes == trail.size_bytes
        assert trail.sha256 == hashlib.sha256(data).digest()
        assert (head.applied_index, head.applied_term) == (trail.applied_index, trail.applied_term)
        assert head.applied_index >= applied and head.node_id == "solo"
        assert head.raft_addr == nd.raft_addr
        f = tmp_path / "streamed.db"
        f.write_bytes(data)
        assert check_database(f) == (head.applied_index, head.applied_term)
        with pytest.raises(grpc.RpcError) as e:
            list(admin(nd).Backup(apb.BackupRequest(chunk_bytes=64 << 20), timeout=10))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A client that goes away mid-stream ends the node's backup (the next one may start).
        call = admin(nd).Backup(apb.BackupRequest(chunk_bytes=1), timeout=30)  # a long stream
        assert next(call).WhichOneof("kind") == "header"
        assert next(call).WhichOneof("kind") == "data"
        call.cancel()

        def next_backup_runs() -> bool:
            try:
                return len(list(admin(nd).Backup(apb.BackupRequest(), timeout=10))) == 3
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                return False

        wait_until(next_backup_runs, 10, what="the cancelled backup released the node")
        logged = [ev for ev in nd.log_events()
                  if ev.get("event") == "rpc_finished" and ev.get("grpc.method") == "Backup"]
        codes = [ev["grpc.code"] for ev in logged]
        # (the next one may have found the node still busy while the cancel was on its way)
        assert codes[:2] == ["OK", "INVALID_ARGUMENT"] and codes[-1] == "OK", codes
        assert codes.count("CANCELLED") == 1, codes
        assert set(codes[2:-1]) <= {"CANCELLED", "RESOURCE_EXHAUSTED"}, codes
        assert logged[0]["sent_bytes"] == head.size_bytes
        assert not list(nd.data_dir.glob("backup-*"))

        # On a terminal the CLI draws a progress bar on stderr (tqdm); --quiet draws none.
        def on_a_tty(*args: str) -> tuple[int, str, str]:
            master, slave = pty.openpty()
            # A terminal 100 columns wide (a fresh pty is 0 wide: tqdm would draw nothing).
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
            p = subprocess.Popen([sys.executable, "-m", "gantry.cli", "backup", "--addr",
                                  nd.addr, *args], cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=slave, text=True)
            os.close(slave)
            err = b""
            while True:
                ready, _, _ = select.select([master], [], [], 30)
                if not ready:
                    break
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                err += chunk
            os.close(master)
            stdout, _ = p.communicate(timeout=30)
            return p.returncode, stdout, err.decode(errors="replace")

        rc, stdout, err = on_a_tty(str(tmp_path / "tty.db"))
        assert rc == 0 and FINAL.match(stdout.strip()), stdout
        assert "tty.db" in err and "B/s" in err, err
        rc, stdout, err = on_a_tty("--quiet", str(tmp_path / "quiet.db"))
        assert rc == 0 and FINAL.match(stdout.strip()) and err == "", err


def test_backup_never_replaces_a_nodes_own_files(tmp_path: pathlib.Path) -> None:
    """A backup written over a live node's gantry.db or raft.log lost every write after the
    backup's index, and the Raft log with them (a new-user trial)."""
    elsewhere = tmp_path / "db-elsewhere"
    elsewhere.mkdir()
    live_db = elsewhere / "gantry.db"
    with single_node(tmp_path, ["--db-path", str(live_db)]) as nd:
        for i in range(5):
            write_any([nd], "CreateBucket", svc.CreateBucketRequest(name=f"own-{i}"), f"o{i}")
        before = {p.name: p.read_bytes() for p in (nd.data_dir / "raft.log", live_db)}
        for target in (nd.data_dir / "raft.log", nd.data_dir / "gantry.db",
                       nd.data_dir / "raft.snapshot", live_db):
            r = gantry("backup", "--addr", nd.addr, str(target))
            assert r.returncode == 1, (target, r.stdout, r.stderr)
            assert "refusing" in r.stderr or "never goes into one" in r.stderr, r.stderr
        assert "in use by pid" in gantry("backup", "--addr", nd.addr,
                                         str(nd.data_dir / "x.db")).stderr
        assert not (nd.data_dir / "raft.snapshot").exists()
        assert not list(nd.data_dir.glob("*.tmp")) and not list(elsewhere.glob("*.tmp"))
        assert (nd.data_dir / "raft.log").read_bytes()[:64] == before["raft.log"][:64]
        write_any([nd], "CreateBucket", svc.CreateBucketRequest(name="own-after"), "oa")
        r = gantry("backup", "--addr", nd.addr, str(tmp_path / "fine.db"))
        assert r.returncode == 0, r.stderr
        nd.stop()
        nd.start().wait_serving()  # the same files
        got = {b.name for b in nd.stub().ListBuckets(svc.ListBucketsRequest(), timeout=10).buckets}
        assert {f"own-{i}" for i in range(5)} | {"own-after"} <= got


def test_backup_beyond_loopback_needs_tls_and_the_admin_token(tmp_path: pathlib.Path) -> None:
    """Backup streams the whole database: on a node listening beyond loopback it is a closed
    admin method (gantry.api.auth), and the CLI takes the admin commands' TLS flags and token."""
    pki = make_pki(tmp_path / "pki")
    token = "backup-test-token-0123456789"
    serve = ["--host", "0.0.0.0", "--tls-cert", str(pki.server_cert), "--tls-key",
             str(pki.server_key)]
    with single_node(tmp_path, serve, env={"GANTRY_ADMIN_TOKEN": token},
                     tls=ClientConfig(ca=pki.ca)) as nd:
        out = tmp_path / "b.db"
        r = gantry("backup", "--addr", nd.addr, str(out), "--tls-ca", str(pki.ca))
        assert r.returncode == 1 and "UNAUTHENTICATED: admin credentials required" in r.stderr, \
            r.stderr
        r = gantry("backup", "--addr", nd.addr, str(out), "--timeout", "5")
        assert r.returncode == 1 and "cannot reach a node at" in r.stderr, r.stderr
        assert "--tls-ca" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not out.exists() and not (tmp_path / "b.db.tmp").exists()
        r = gantry("backup", "--addr", nd.addr, str(out), "--tls-ca", str(pki.ca),
                   env={"GANTRY_ADMIN_TOKEN": token})
        assert r.returncode == 0 and FINAL.match(r.stdout.strip()), r.stderr
        assert check_database(out)[0] >= 1
        refused = [e for e in nd.log_events() if e.get("event") == "admin_call_refused"]
        assert [e["grpc.method"] for e in refused] == ["Backup"]


@pytest.mark.slow
def test_round_trip_of_100k_objects(tmp_path: pathlib.Path) -> None:
    """ops/bench_backup.py end to end (figures in docs/BENCHMARKS.md): seed, backup, restore,
    list every object back, write, restart, add a node and converge."""
    r = subprocess.run([sys.executable, str(REPO / "ops" / "bench_backup.py"), "--objects",
                        "100000", "--work-dir", str(tmp_path / "work"), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    fig = json.loads(r.stdout.strip().splitlines()[-1])
    assert fig["objects"] == 100000 and fig["backup_bytes"] > 10_000_000
    assert fig["backup_applied_index"] > 50

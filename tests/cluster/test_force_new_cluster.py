"""Disaster recovery on real processes: a 3-node cluster loses two nodes for good (kill -9), the
survivor restarts with ``--force-new-cluster`` as a one-member cluster with every acknowledged
write, accepts new writes, grows back to three with fresh nodes, and the two old nodes, restarted
with their old data and flags, cannot reach it (they form a stale cluster of their own: the
reason docs/OPERATIONS.md says to wipe them). Plus the refusals: a new data directory, --peers, a
data directory a live node holds."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

import grpc

from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.service.v1 import service_pb2 as svc
from tests.cluster.helpers import admin, dump, leader_of, status
from tests.support import REPO, NodeProcess, cluster, free_ports, single_node, wait_until, write_any


def _names(nd: NodeProcess) -> set[str]:
    r = nd.stub().ListBuckets(svc.ListBucketsRequest(), timeout=5)
    return {b.name for b in r.buckets}


def _add(leader: NodeProcess, new: NodeProcess) -> None:
    """AddNode once ``new`` listens (started with the members as --peers: README)."""

    def added() -> bool:
        try:
            admin(leader).AddNode(apb.AddNodeRequest(raft_addr=new.raft_addr), timeout=30)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.ALREADY_EXISTS:  # a retry after a slow success
                return True
            raise
        return True

    wait_until(added, 30, 0.2, f"{new.node_id} added")


def _ports_avoiding(avoid: set[int], n: int) -> list[int]:
    while True:
        ports = free_ports(n)
        if not avoid & set(ports):
            return ports


def test_force_new_cluster_from_one_survivor_of_three(tmp_path: pathlib.Path) -> None:
    started: list[NodeProcess] = []
    try:
        with cluster(tmp_path, 3) as nodes:
            acked = []
            for i in range(40):
                name = f"before-{i}"
                write_any(nodes, "CreateBucket", svc.CreateBucketRequest(name=name), name, start=i)
                acked.append(name)
            lead = leader_of(nodes)
            commit = status(lead).commit_index
            old_term = status(lead).term
            # The survivor must hold every acknowledged write: wait until all three applied them.
            wait_until(lambda: all(status(n).applied_index >= commit for n in nodes), 20,
                       what="every node applied the acknowledged writes")
            survivor = next(n for n in nodes if n is not lead)
            lost = [n for n in nodes if n is not survivor]
            for nd in lost:
                nd.kill()  # the majority is gone for good
            assert survivor.stop() == 0

            # -- recover: the survivor alone, keeping its data --
            solo = NodeProcess(survivor.data_dir, survivor.port, survivor.raft_port, [],
                               ["--force-new-cluster"], node_id=survivor.node_id)
            started.append(solo)
            solo.start().wait_serving()
            st = status(solo)
            assert st.role == "leader"
            assert [m.raft_addr for m in st.members] == [solo.raft_addr]
            assert st.term > old_term
            assert set(acked) <= _names(solo)
            events = [e for e in solo.log_events() if e.get("event") == "force_new_cluster"]
            assert len(events) == 1, solo.tail_log()
            ev = events[0]
            assert ev["members"] == [solo.raft_addr]
            assert set(ev["previous_members"]) == {n.raft_addr for n in nodes}
            backup = pathlib.Path(ev["backup"])
            assert {"raft.log", "raft.log.meta", "gantry.db"} <= {p.name for p in backup.iterdir()}
            write_any([solo], "CreateBucket", svc.CreateBucketRequest(name="after-recovery"),
                      "after-recovery")

            # -- grow back: start fresh nodes with the current members as --peers, add them --
            g1, r1, g2, r2 = _ports_avoiding(
                {p for n in nodes for p in (n.port, n.raft_port)}, 4)
            d = NodeProcess(tmp_path / "fresh-d", g1, r1, [solo.raft_port], node_id="fresh-d")
            started.append(d)
            d.start()
            _add(solo, d)
            d.wait_serving()
            e = NodeProcess(tmp_path / "fresh-e", g2, r2, [solo.raft_port, d.raft_port],
                            node_id="fresh-e")
            started.append(e)
            e.start()
            _add(leader_of([solo, d]), e)
            e.wait_serving()
            new = [solo, d, e]
            for nd in new:
                wait_until(lambda nd=nd: {m.raft_addr for m in status(nd).members}
                           == {n.raft_addr for n in new}, 20, what=f"{nd.node_id} sees 3 members")
            write_any(new, "CreateBucket", svc.CreateBucketRequest(name="grown"), "grown")
            ref = dump(leader_of(new).data_dir / "gantry.db")
            for nd in new:
                wait_until(lambda nd=nd: dump(nd.data_dir / "gantry.db") == ref, 30,
                           what=f"{nd.node_id} identical")
                assert set(acked) | {"after-recovery", "grown"} <= _names(nd)

            # -- the old nodes come back with their old data and flags --
            new_lead = leader_of(new)
            term = status(new_lead).term
            for nd in lost:
                nd.start()
            # Together they are a majority of the *old* configuration: they elect a leader of
            # their own (a stale cluster; hence "wipe them"). The new cluster refuses their
            # connections (they are not members) and does not notice them.
            wait_until(lambda: any(status(n).role == "leader" for n in lost), 30,
                       what="the old pair electing a leader among themselves")
            for i in range(10):
                name = f"while-old-nodes-run-{i}"
                write_any(new, "CreateBucket", svc.CreateBucketRequest(name=name), name,
                          timeout_s=10)
                time.sleep(0.2)
            for nd in new:
                st = status(nd)
                assert st.term == term, "the old nodes disturbed the new cluster"
                assert st.leader_raft_addr == new_lead.raft_addr
                assert {m.raft_addr for m in st.members} == {n.raft_addr for n in new}
            for nd in lost:
                assert {m.raft_addr for m in status(nd).members} == {n.raft_addr for n in nodes}
                assert "after-recovery" not in _names(nd)  # their own, stale, history
    finally:
        for nd in started:
            nd.stop()


def _serve(args: list[str], timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gantry.cli", "serve", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s,
                          env={"LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"})


def test_force_new_cluster_refusals(tmp_path: pathlib.Path) -> None:
    port, raft = free_ports(2)
    base = ["--port", str(port), "--raft-addr", f"127.0.0.1:{raft}", "--force-new-cluster"]
    empty = tmp_path / "empty"
    r = _serve(["--data-dir", str(empty), *base])
    assert r.returncode == 2 and "nothing to recover" in r.stderr, r.stderr
    assert not (empty / "raft.log").exists() and not (empty / "gantry.db").exists()
    with single_node(tmp_path) as nd:
        write_any([nd], "CreateBucket", svc.CreateBucketRequest(name="kept"), "kept")
        r = _serve(["--data-dir", str(nd.data_dir), *base])  # a live node holds it
        assert r.returncode == 2 and "in use" in r.stderr, r.stderr
    r = _serve(["--data-dir", str(nd.data_dir), *base, "--peers", "127.0.0.1:9"])
    assert r.returncode == 2 and "without --peers" in r.stderr, r.stderr
    assert not list(nd.data_dir.glob("force-new-cluster-*"))

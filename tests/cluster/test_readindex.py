"""ReadIndex (Raft thesis §6.4) on real processes: linearizable reads add no log entry, still see
every write acknowledged before them on every node, and an old leader that was frozen (SIGSTOP)
or partitioned (iptables, tests/chaos/net.py) while a newer leader acknowledged a write never
answers one from its stale state."""

from __future__ import annotations

import os
import pathlib
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.service.v1 import service_pb2 as svc
from tests.chaos.cluster import ChaosCluster, ChaosNode, poll, serving_cluster
from tests.chaos.net import Partitioner
from tests.cluster.helpers import admin, leader_of, status
from tests.support import NodeProcess, cluster, wait_until, write_any


def _indexes(nodes: list[NodeProcess]) -> list[tuple[int, int]]:
    """(commit index, applied index) of every node."""
    return [(st.commit_index, st.applied_index) for st in map(status, nodes)]


def test_a_thousand_linearizable_reads_on_an_idle_cluster_add_no_log_entry(
        tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3) as nodes:
        write_any(nodes, "CreateBucket", svc.CreateBucketRequest(name="idle"), "idle")

        def settled() -> list[tuple[int, int]] | None:
            # Idle: every node registered itself through the log and all agree on the indexes.
            named = all(all(m.node_id for m in status(n).members) for n in nodes)
            now = _indexes(nodes)
            return now if named and len(set(now)) == 1 and now[0][0] == now[0][1] else None

        before = wait_until(settled, 30, what="an idle cluster")
        stubs = [n.stub() for n in nodes]
        for i in range(1000):  # spread over the leader and both followers
            got = stubs[i % 3].GetBucket(svc.GetBucketRequest(name="idle"), timeout=10)
            assert got.bucket.name == "idle"
        assert _indexes(nodes) == before, "linearizable reads wrote to the Raft log"


def test_linearizable_reads_after_a_leader_change_need_no_write(tmp_path: pathlib.Path) -> None:
    # After an election the newest committed entry is the new leader's no-op until the next
    # write, and the read index is that commit index; the applied index reads wait on moved only
    # for Gantry entries, so every default (linearizable) read on every node timed out — "log
    # index 19 not applied on this node before the deadline" — and `status` showed LAG 1 on an
    # idle cluster, until something was written (a new-user trial, 2026-12-04).
    with cluster(tmp_path, 3) as nodes:
        write_any(nodes, "CreateBucket", svc.CreateBucketRequest(name="before"), "before")
        lead = leader_of(nodes)
        heir = next(n for n in nodes if n is not lead)
        admin(lead).TransferLeadership(
            apb.TransferLeadershipRequest(raft_addr=heir.raft_addr), timeout=15)
        wait_until(lambda: status(heir).role == "leader", 30, what="the heir leads")
        for nd in nodes:
            got = nd.stub().GetBucket(svc.GetBucketRequest(name="before"), timeout=10)
            assert got.bucket.name == "before"
        for nd in nodes:
            wait_until(lambda nd=nd: (lambda st: st.applied_index == st.commit_index
                                      == st.last_applied)(status(nd)), 10,
                       what=f"{nd.node_id}'s applied index at its commit index (the no-op)")


def test_reads_see_a_write_acknowledged_just_before_on_every_node(tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3) as nodes:
        stubs = [n.stub() for n in nodes]
        misses = []
        for i in range(150):
            name = f"rw-{i}"
            stubs[i % 3].CreateBucket(svc.CreateBucketRequest(name=name), timeout=10)
            for j, stub in enumerate(stubs):  # default consistency, no index from the write
                try:
                    stub.GetBucket(svc.GetBucketRequest(name=name), timeout=10)
                except grpc.RpcError as e:
                    misses.append((name, j, e.code().name))
        assert not misses, misses[:5]


class _Readers:
    """Threads reading bucket ``name`` from ``node`` (default consistency) in a loop, each call
    recorded as (monotonic start, outcome): the bucket's name, or the status code's name."""

    def __init__(self, node: ChaosNode, name: str, threads: int = 6) -> None:
        self.node, self.name = node, name
        self.calls: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        stub = self.node.stub()
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                got = stub.GetBucket(svc.GetBucketRequest(name=self.name), timeout=2).bucket.name
            except grpc.RpcError as e:
                got = e.code().name
            with self.lock:
                self.calls.append((t0, got))

    def __enter__(self) -> _Readers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def answered_after(self, t: float) -> list[str]:
        with self.lock:
            return [got for t0, got in self.calls if t0 >= t]


def _create(nd: ChaosNode, name: str, budget_s: float = 30.0) -> float | None:
    """CreateBucket with one request id, retried while the outcome is unknown or there is no
    leader; the monotonic time it was acknowledged, or None."""
    rid = uuid.uuid4().hex

    def attempt() -> float | None:
        try:
            nd.stub().CreateBucket(svc.CreateBucketRequest(name=name), timeout=3,
                                   metadata=(("x-request-id", rid),))
            return time.monotonic()
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            return None

    acked: float | None = poll(attempt, budget_s, 0.05)
    return acked


@pytest.fixture
def three(tmp_path: pathlib.Path) -> Iterator[ChaosCluster]:
    with serving_cluster(tmp_path, 3, 48000 + os.getpid() % 1000 * 3) as c:
        yield c


def _new_leader(others: list[ChaosNode], above_term: int) -> ChaosNode:
    found: ChaosNode | None = poll(
        lambda: next((n for n in others if (st := n.status()).role == "leader"
                      and st.term > above_term), None), 30)
    assert found is not None, "the others elected no new leader"
    return found


def _check_not_stale(readers: _Readers, acked_at: float) -> None:
    after = readers.answered_after(acked_at)
    assert after, "no read reached the old leader after the write"
    assert "NOT_FOUND" not in after, (
        f"stale linearizable read on the old leader: {after.count('NOT_FOUND')} of {len(after)}")
    assert set(after) <= {readers.name, "UNAVAILABLE", "DEADLINE_EXCEEDED"}, set(after)


def test_frozen_old_leader_never_serves_a_stale_read(three: ChaosCluster) -> None:
    old = three.leader()
    assert old is not None
    term = old.status().term
    others = [n for n in three.nodes if n is not old]
    old.pause()
    try:
        new = _new_leader(others, term)
        acked_at = _create(new, "while-frozen")
        assert acked_at is not None
        # Reads are sent to the frozen process now: they wait in its sockets and meet it the
        # moment it wakes, still believing it leads term `term`.
        with _Readers(old, "while-frozen") as readers:
            old.resume()
            assert poll(lambda: len(readers.answered_after(acked_at)) >= 60, 60), \
                "the old leader answered too few reads"
        _check_not_stale(readers, acked_at)
    finally:
        old.resume()
    # Once it has caught up it serves the write.
    assert poll(lambda: old.stub().GetBucket(svc.GetBucketRequest(name="while-frozen"),
                                             timeout=3).bucket.name == "while-frozen", 30)


def test_partitioned_old_leader_never_serves_a_stale_read(three: ChaosCluster) -> None:
    net = Partitioner(chain=f"GRIT{os.getpid()}")
    if not net.setup():
        pytest.skip(f"partitions need iptables: {net.reason}")
    try:
        old = three.leader()
        assert old is not None
        term = old.status().term
        others = [n for n in three.nodes if n is not old]
        # Readers hammer the old leader from the cut on: until it steps down (an election
        # timeout without a majority) it still believes it leads.
        with _Readers(old, "while-cut") as readers:
            net.isolate(old.endpoint, [o.endpoint for o in others])
            new = _new_leader(others, term)
            acked_at = _create(new, "while-cut")
            assert acked_at is not None
            assert poll(lambda: len(readers.answered_after(acked_at)) >= 30, 60), \
                "the old leader answered too few reads"
        _check_not_stale(readers, acked_at)
        net.heal()
        assert poll(lambda: old.stub().GetBucket(svc.GetBucketRequest(name="while-cut"),
                                                 timeout=3).bucket.name == "while-cut", 30)
    finally:
        net.close()

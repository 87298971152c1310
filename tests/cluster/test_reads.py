"""The read path on real processes: read-your-writes through a follower, linearizable reads on a
frozen old leader, reads during a snapshot restore, 70k buckets paged, dev test buckets."""

from __future__ import annotations

import os
import pathlib
import signal
import sqlite3
import threading

import grpc
import pytest

from gantry.pb.service.v1 import service_pb2 as svc
from gantry.state import migrate
from tests.cluster.helpers import leader_of
from tests.support import cluster, single_node, wait_until, write_any

IDX = "x-gantry-log-index"


def _index(call: grpc.Call) -> int:
    return int(dict(call.trailing_metadata())[IDX])


def test_read_your_writes_through_a_follower(tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3) as nodes:
        lead = leader_of(nodes)
        followers = [n for n in nodes if n is not lead]
        misses = 0
        for i in range(1000):
            writer = nodes[i % 3]
            reader = followers[i % 2]
            name = f"ryw-{i}"
            _, call = writer.stub().CreateBucket.with_call(svc.CreateBucketRequest(name=name),
                                                           timeout=10)
            got = reader.stub().GetBucket(svc.GetBucketRequest(name=name), timeout=10,
                                          metadata=(("x-gantry-min-log-index", str(_index(call))),))
            misses += got.bucket.name != name
        assert misses == 0
        # The default (linearizable) also sees a write made through another node, with no index.
        nodes[0].stub().CreateBucket(svc.CreateBucketRequest(name="ryw-default"), timeout=10)
        assert followers[0].stub().GetBucket(svc.GetBucketRequest(name="ryw-default"),
                                             timeout=10).bucket.name == "ryw-default"


def test_linearizable_read_on_frozen_old_leader_is_never_stale(tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3) as nodes:
        old = leader_of(nodes)
        assert old.proc is not None
        others = [n for n in nodes if n is not old]
        os.kill(old.proc.pid, signal.SIGSTOP)
        try:
            write_any(others, "CreateBucket", svc.CreateBucketRequest(name="while-frozen"),
                      "while-frozen", timeout_s=60)
        finally:
            os.kill(old.proc.pid, signal.SIGCONT)
        # Immediately after waking, the old leader still thinks it leads. A linearizable read
        # must either see the write or fail; never answer from its stale state.
        outcomes = []
        for _ in range(20):
            try:
                r = old.stub().GetBucket(svc.GetBucketRequest(name="while-frozen"), timeout=3)
                outcomes.append(r.bucket.name)
            except grpc.RpcError as e:
                assert e.code() != grpc.StatusCode.NOT_FOUND, "stale linearizable read"
                outcomes.append(e.code().name)
        assert "while-frozen" in outcomes or set(outcomes) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
        # A stale read on the same node is allowed to lag, and says which index it saw.
        wait_until(lambda: old.stub().GetBucket(svc.GetBucketRequest(name="while-frozen"),
                                                timeout=3).bucket.name == "while-frozen", 30,
                   what="old leader catches up")


def test_reads_keep_answering_during_snapshot_restore(tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3, ["--snapshot-entries", "50"]) as nodes:
        for i in range(60):
            write_any(nodes, "CreateBucket", svc.CreateBucketRequest(name=f"pre-{i}"), f"pre-{i}")
        lead = leader_of(nodes)
        lagging = next(n for n in nodes if n is not lead)
        lagging.stop()
        for i in range(200):
            write_any([lead], "CreateBucket", svc.CreateBucketRequest(name=f"gap-{i}"), f"gap-{i}")
        errors: list[str] = []
        seen: list[int] = []
        per_thread: list[list[int]] = [[] for _ in range(4)]
        stop = threading.Event()

        def reader(n: int) -> None:
            stub = lagging.stub()
            answered = False
            while not stop.is_set():
                try:
                    resp = stub.ListBuckets(svc.ListBucketsRequest(), timeout=5,
                                            metadata=(("x-gantry-consistency", "stale"),))
                    seen.append(len(resp.buckets))
                    per_thread[n].append(len(resp.buckets))
                    answered = True
                except grpc.RpcError as e:
                    if answered or e.code() != grpc.StatusCode.UNAVAILABLE:  # not just "not up yet"
                        errors.append(f"{e.code().name}: {e.details()}")

        lagging.start()  # readers hammer it from the moment its port opens, through the restore
        threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            # Force the lagging node to need a snapshot: it was down while the log compacted.
            wait_until(lambda: len(seen) > 0 and seen[-1] >= 260, 60, what="caught up")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not errors, errors[:5]
        for mine in per_thread:  # each client's successive reads never go back in time
            assert mine == sorted(mine), "a read went backwards while the database was swapped"
        assert any(e.get("event") == "snapshot_restored" for e in lagging.log_events()), \
            "the lagging node did not restore a snapshot: the test did not test a swap"


def test_seventy_thousand_buckets_list_in_pages(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "node" / "gantry.db"
    data.parent.mkdir(parents=True)
    migrate.upgrade(data)
    conn = sqlite3.connect(data)
    with conn:
        conn.executemany(
            "INSERT INTO buckets (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
            ((f"B{i:08d}", f"bucket-{i:06d}-" + "x" * 40, 1_700_000_000_000_000 + i,
              1_700_000_000_000_000 + i) for i in range(70_000)))
    conn.close()
    with single_node(tmp_path) as nd:
        stub = nd.stub()
        # An upstream client (no paging fields) gets the first page, not a message-size error.
        first = stub.ListBuckets(svc.ListBucketsRequest(), timeout=30)
        assert len(first.buckets) == 10_000 and first.next_continuation_token
        names: list[str] = []
        token = ""
        while True:
            page = stub.ListBuckets(svc.ListBucketsRequest(continuation_token=token), timeout=30)
            names += [b.name for b in page.buckets]
            token = page.next_continuation_token
            if not token:
                break
        assert len(names) == 70_000 and names == sorted(names)


@pytest.mark.parametrize("env,canned", [("development", True), ("production", False)])
def test_dev_test_buckets_only_in_development(tmp_path: pathlib.Path, env: str, canned: bool) -> None:
    with single_node(tmp_path, ["--cradle-addr", "127.0.0.1:9"], env={"APP_ENV": env}) as nd:
        stub = nd.stub()
        expected = {
            "bad": grpc.StatusCode.INVALID_ARGUMENT,
            "taken": grpc.StatusCode.ALREADY_EXISTS,
            "forbidden": grpc.StatusCode.PERMISSION_DENIED,
            "no-cradles": grpc.StatusCode.FAILED_PRECONDITION,
            "panic": grpc.StatusCode.INTERNAL,
        }
        for name, code in expected.items():
            try:
                stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=5)
                got = grpc.StatusCode.OK
            except grpc.RpcError as e:
                got = e.code()
            assert got == (code if canned else grpc.StatusCode.OK), name
        assert nd.is_serving()


"""Shared helpers for the cluster tests: table dumps, admin calls, finding the leader, a
request-id-carrying write load, and the convergence check (every acknowledged write exactly once,
replicas identical)."""

from __future__ import annotations

import collections
import pathlib
import sqlite3
import threading
from typing import Any

import grpc

from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.admin.v1 import admin_pb2_grpc
from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import NodeProcess, wait_until, write_any

TABLES = ("buckets", "cradle_servers", "objects")
BUCKET = "faults"


def dump(db: pathlib.Path) -> list[list[tuple[object, ...]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES]
    finally:
        conn.close()


def admin(nd: NodeProcess) -> admin_pb2_grpc.ClusterServiceStub:
    return admin_pb2_grpc.ClusterServiceStub(nd.channel())


def status(nd: NodeProcess) -> apb.StatusResponse:
    return admin(nd).Status(apb.StatusRequest(), timeout=5)


def leader_of(nodes: list[NodeProcess]) -> NodeProcess:
    def find() -> NodeProcess | None:
        for nd in nodes:
            if nd.proc is not None and nd.proc.poll() is None and status(nd).role == "leader":
                return nd
        return None

    found: NodeProcess = wait_until(find, 20, what="a leader")
    return found


def objects_by_key(db: pathlib.Path) -> collections.Counter[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return collections.Counter(r[0] for r in conn.execute("SELECT key FROM objects"))
    finally:
        conn.close()


class Load:
    """Writer threads doing PlanWrite (one object per key) through any node, with request ids."""

    def __init__(self, nodes: list[NodeProcess], threads: int = 6) -> None:
        self.nodes = nodes
        self.acked: list[str] = []
        self.unacked: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(w,)) for w in range(threads)]

    def run(self, w: int) -> None:
        i = 0
        while not self.stop.is_set():
            key = f"w{w}/k{i}"
            try:
                write_any(self.nodes, "PlanWrite", svc.PlanWriteRequest(bucket=BUCKET, key=key, size=1),
                          request_id=key, start=w + i, timeout_s=30, per_call_s=3,
                          give_up=self.stop)
                with self.lock:
                    self.acked.append(key)
            except (grpc.RpcError, ValueError):  # ValueError: a closed channel (given up)
                with self.lock:
                    self.unacked.append(key)
            i += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def wait_acked(self, n: int) -> None:
        wait_until(lambda: len(self.acked) >= n, 60, what=f"{n} acknowledged writes")


def check_converged(nodes: list[NodeProcess], acked: list[str]) -> None:
    for nd in nodes:
        nd.wait_serving()
    # A final write through the leader, applied everywhere, fences the comparison.
    write_any(nodes, "CreateBucket", svc.CreateBucketRequest(name="fence"), "fence")
    ref = dump(leader_of(nodes).data_dir / "gantry.db")
    for nd in nodes:
        wait_until(lambda nd=nd: dump(nd.data_dir / "gantry.db") == ref, 30,
                   what=f"{nd.node_id} identical")
    counts = objects_by_key(nodes[0].data_dir / "gantry.db")
    missing = [k for k in acked if counts[k] == 0]
    assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
    dupes = {k: c for k, c in counts.items() if c > 1}
    assert not dupes, f"writes applied more than once: {list(dupes.items())[:5]}"


def setup_bucket(nodes: list[NodeProcess]) -> None:
    write_any(nodes, "CreateBucket", svc.CreateBucketRequest(name=BUCKET), "setup-bucket")
    wait_until(lambda: all(status(n).applied_index > 0 for n in nodes), 20, what="replicated")


CRADLE = ["--cradle-addr", "127.0.0.1:9"]



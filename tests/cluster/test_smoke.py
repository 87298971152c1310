"""A 3-node cluster of real processes: a write through a follower is visible on all nodes."""

from __future__ import annotations

import pathlib
import sqlite3

from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import NodeProcess, cluster, wait_until


def _bucket_names(db: pathlib.Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM buckets")}
    finally:
        conn.close()


def test_write_through_any_node_visible_on_all(tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3) as nodes:
        for i, nd in enumerate(nodes):
            nd.stub().CreateBucket(svc.CreateBucketRequest(name=f"via-node-{i}"), timeout=10)
        want = {f"via-node-{i}" for i in range(3)}
        for nd in nodes:
            def listed(nd: NodeProcess = nd) -> bool:
                resp = nd.stub().ListBuckets(svc.ListBucketsRequest(), timeout=5)
                return want <= {b.name for b in resp.buckets}

            def stored(nd: NodeProcess = nd) -> bool:
                return want <= _bucket_names(nd.data_dir / "gantry.db")

            wait_until(listed, 20, what=f"{nd.node_id} lists all")
            wait_until(stored, 20, what=f"{nd.node_id} database has all")

"""The batch RPCs on a 3-node cluster of real processes: a PutObjects and a DeleteObjects sent
through different nodes replicate to identical rows on every node, and a retry of the batch on
another node (same x-request-id) answers the original per-item results without applying again."""

from __future__ import annotations

import pathlib

from gantry.pb.service.v1 import service_pb2 as svc
from tests.cluster.helpers import CRADLE, dump
from tests.support import cluster, wait_until

T = 10


def test_batches_replicate_identically_and_dedupe_across_nodes(tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3, CRADLE) as nodes:
        a, b, c = (nd.stub() for nd in nodes)
        a.CreateBucket(svc.CreateBucketRequest(name="bulk"), timeout=T)
        wait_until(lambda: b.ListCradleServers(svc.ListCradleServersRequest(), timeout=T)
                   .cradle_servers, 20, what="the cradle server registered")
        entries = [svc.PutObjectsEntry(key=f"d{i % 7}/f{i}", size=i + 1,
                                       last_modified_ms=1_700_000_000_000 + i)
                   for i in range(2000)]
        entries.append(svc.PutObjectsEntry(key="bad\x01", size=1, last_modified_ms=1))
        req = svc.PutObjectsRequest(bucket="bulk", objects=entries)
        md = (("x-request-id", "bulk-1"),)
        first = b.PutObjects(req, timeout=T, metadata=md)
        assert [r.code for r in first.results] == [0] * 2000 + [3]
        again = c.PutObjects(req, timeout=T, metadata=md)  # another node: the same outcome
        assert again == first
        deleted = a.DeleteObjects(svc.DeleteObjectsRequest(
            bucket="bulk", keys=[f"d0/f{i}" for i in range(0, 2000, 7)] + ["nope"]), timeout=T)
        assert len(deleted.deleted) == 287 and not deleted.errors
        # The largest entry the API allows (1 MiB of keys) replicates like any other.
        big = [svc.PutObjectsEntry(key=f"big/{i:04d}/" + "k" * 1015, size=1, last_modified_ms=1)
               for i in range(1024)]
        assert sum(len(e.key) for e in big) == 1 << 20
        resp = c.PutObjects(svc.PutObjectsRequest(bucket="bulk", objects=big), timeout=T)
        assert {r.code for r in resp.results} == {0}
        # Keys of 2-byte UTF-8 characters: the entry's pickle is about twice its command, so
        # pysyncobj's leader marks several of its chunks "finish" (override 11).
        wide = [svc.PutObjectsEntry(key=f"wide/{i:03d}/" + "é" * 400, size=1, last_modified_ms=1)
                for i in range(200)]
        resp = b.PutObjects(svc.PutObjectsRequest(bucket="bulk", objects=wide), timeout=T)
        assert {r.code for r in resp.results} == {0}
        dbs = [nd.data_dir / "gantry.db" for nd in nodes]
        wait_until(lambda: dump(dbs[0]) == dump(dbs[1]) == dump(dbs[2]), 30,
                   what="replicas identical")
        objects = dump(dbs[0])[2]
        states = [str(r[3]) for r in objects]
        assert len(objects) == 2000 + 1024 + 200  # the retry applied nothing
        assert (states.count("COMMITTED"), states.count("DELETED")) == (1714 + 1024 + 200, 286)
        # The large entries reached the followers in chunks, each decoded once (override 11).
        failed = [e for nd in nodes for e in nd.log_events() if "_onTick" in str(e.get("event"))]
        assert not failed, failed

"""kill -9 loses nothing acknowledged: a node killed after N acknowledged writes restarts with all
N, each exactly once (pysyncobj replays its journal; the applied index in SQLite skips repeats)."""

from __future__ import annotations

import pathlib
import sqlite3
import threading

import grpc

from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import NodeProcess, free_ports


def _count(db: pathlib.Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_sigkill_during_writes_loses_no_acknowledged_write(tmp_path: pathlib.Path) -> None:
    port, raft = free_ports(2)
    nd = NodeProcess(tmp_path / "node", port, raft, [], ["--cradle-addr", "127.0.0.1:9"],
                     node_id="crash")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        nd.start().wait_serving()
        stub = nd.stub()
        stub.CreateBucket(svc.CreateBucketRequest(name="crash-bucket"), timeout=10)

        def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                name = f"w{w}-{i}"
                try:
                    stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=5)
                except (grpc.RpcError, ValueError):  # ValueError: channel closed by kill()
                    return  # the node died under us: unacknowledged, may or may not exist
                with lock:
                    acked.append(name)
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        # Kill once a good number of writes were acknowledged (poll, don't sleep blindly).
        from tests.support import wait_until

        wait_until(lambda: len(acked) >= 300, 60, what="300 acknowledged writes")
        nd.kill()
        stop.set()
        for t in threads:
            t.join(10)
        n_acked = len(acked)
        assert n_acked >= 300

        nd.start().wait_serving()
        names = {b.name for b in nd.stub().ListBuckets(svc.ListBucketsRequest(), timeout=10).buckets}
        missing = [a for a in acked if a not in names]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        db = nd.data_dir / "gantry.db"
        dupes = _count(db, "SELECT COUNT(*) - COUNT(DISTINCT name) FROM buckets")
        assert dupes == 0
        # Exactly-once: every bucket row has a distinct id and the applied index moved forward.
        assert _count(db, "SELECT COUNT(*) FROM buckets") >= n_acked + 1
        # A write after restart works and gets a higher log index.
        _, call = nd.stub().CreateBucket.with_call(svc.CreateBucketRequest(name="after-restart"),
                                                  timeout=10)
        idx = int(dict(call.trailing_metadata())["x-gantry-log-index"])
        assert idx > _count(db, "SELECT COUNT(*) FROM buckets") - 2
    finally:
        stop.set()
        nd.stop()

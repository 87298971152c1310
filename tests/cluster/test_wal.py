"""The WAL shrinks back after a long reader: an operator's read transaction (the stock sqlite3
reader, held open) lets ``gantry.db-wal`` grow while writes continue; once it ends, the writer
truncates the WAL back below ``db.WAL_SIZE_LIMIT_BYTES``, under continued writes and when the
writes stopped before the reader ended."""

from __future__ import annotations

import pathlib
import sqlite3
import threading
import time

import grpc
import pytest

from gantry.db import WAL_SIZE_LIMIT_BYTES
from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import single_node, wait_until

MB = 2**20


@pytest.mark.parametrize("writes_after", [True, False], ids=["writes-continue", "idle-after"])
def test_wal_returns_below_the_limit_after_a_long_reader(tmp_path: pathlib.Path,
                                                         writes_after: bool) -> None:
    with single_node(tmp_path) as nd:
        wal = nd.data_dir / "gantry.db-wal"
        stop = threading.Event()
        acked = [0]
        errors: list[BaseException] = []

        def writer(w: int) -> None:
            stub = nd.stub()
            i = 0
            while not stop.is_set():
                try:
                    stub.CreateBucket(svc.CreateBucketRequest(name=f"w{w}-{i:08d}-" + "x" * 40),
                                      timeout=10)
                    acked[0] += 1
                except grpc.RpcError as e:
                    errors.append(e)
                    return
                i += 1

        def wal_size() -> int:
            return wal.stat().st_size if wal.exists() else 0

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
        for t in threads:
            t.start()
        reader = None
        try:
            wait_until(lambda: acked[0] >= 200, 30, what="writes under way")
            before = wal_size()
            # An operator's long read transaction: its snapshot pins the WAL.
            reader = sqlite3.connect(f"file:{nd.data_dir / 'gantry.db'}?mode=ro", uri=True,
                                     isolation_level=None)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM buckets").fetchone()
            grow_target = 3 * WAL_SIZE_LIMIT_BYTES
            wait_until(lambda: wal_size() > grow_target, 90, 0.1, "WAL growth behind the reader")
            peak = wal_size()
            if not writes_after:
                stop.set()
                for t in threads:
                    t.join(15)
            reader.execute("ROLLBACK")
            reader.close()
            reader = None
            ended_at, acked_at_end = time.monotonic(), acked[0]
            # Writes go on; the WAL comes back below the limit.
            wait_until(lambda: wal_size() <= WAL_SIZE_LIMIT_BYTES, 30, 0.05,
                       "WAL back below the limit")
            shrunk_s, after = time.monotonic() - ended_at, wal_size()
            assert (acked[0] > acked_at_end) == writes_after
            # And it stays there (under continued writes, or idle).
            until = time.monotonic() + 2.0
            high = 0
            while time.monotonic() < until:
                high = max(high, wal_size())
                time.sleep(0.05)
            print(f"WAL ({'writes continue' if writes_after else 'idle after'}): "
                  f"{before / MB:.1f} MB before the reader, {peak / MB:.1f} MB behind it, "
                  f"{after / MB:.1f} MB {shrunk_s:.2f}s after it ended, "
                  f"max {high / MB:.1f} MB over the next 2 s ({acked[0]} writes)")
            assert high <= WAL_SIZE_LIMIT_BYTES + 1 * MB, f"WAL grew again to {high / MB:.1f} MB"
            assert not errors, errors[:3]
        finally:
            stop.set()
            if reader is not None:
                reader.close()
            for t in threads:
                t.join(15)

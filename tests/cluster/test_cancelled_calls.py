"""Calls a client cancels while the node is still working on them: the node survives and logs
them as ``CANCELLED``. With the grpc.aio front door, reading the call's context (peer,
metadata) after the cancel, in the logging ``finally`` block, crashed the process with SIGSEGV
(about one Backup cancel in two did)."""

from __future__ import annotations

import json
import pathlib

import grpc

from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.service.v1 import service_pb2 as svc
from tests.cluster.helpers import admin
from tests.support import single_node, wait_until

ROUNDS = 6


def _finished(log_path: pathlib.Path, method: str) -> list[dict[str, object]]:
    lines = []
    for raw in log_path.read_text().splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if rec.get("event") == "rpc_finished" and rec.get("grpc.method") == method:
            lines.append(rec)
    return lines


def test_cancelled_backup_streams_and_waiting_reads_do_not_crash_the_node(
        tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path) as nd:
        for i in range(ROUNDS):
            call = admin(nd).Backup(apb.BackupRequest(chunk_bytes=1), timeout=30)
            assert next(call).WhichOneof("kind") == "header"
            assert next(call).WhichOneof("kind") == "data"
            call.cancel()
            # A read that waits (an index far ahead) and is cancelled by its client.
            fut = nd.stub().GetBucket.future(
                svc.GetBucketRequest(name="nope"), timeout=30,
                metadata=(("x-gantry-min-log-index", str(10**9)), ("x-request-id", f"c{i}")))
            # A quick call behind it on the same connection: answered once the node has read the
            # waiting one (calls on one connection start in order on the one event loop).
            try:
                nd.stub().GetBucket(svc.GetBucketRequest(name="nope"), timeout=10,
                                    metadata=(("x-gantry-consistency", "stale"),))
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
            fut.cancel()

            def backup_runs() -> bool:
                try:
                    return len(list(admin(nd).Backup(apb.BackupRequest(), timeout=10))) == 3
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e  # still busy
                    return False

            wait_until(backup_runs, 10, what=f"round {i}: the node answers a new backup")
        assert nd.proc is not None and nd.proc.poll() is None
        # A read cancelled before it reached the node leaves no line; those that did reach it
        # are logged CANCELLED with the peer and request id read before the cancel.
        cancelled = [r for r in _finished(nd.log_path, "GetBucket") if r["grpc.code"] == "CANCELLED"]
        assert cancelled and {r["request_id"] for r in cancelled} <= {f"c{i}" for i in range(ROUNDS)}
        assert all(str(r["peer"]).startswith("ipv4:127.0.0.1:") for r in cancelled)
        assert len([r for r in _finished(nd.log_path, "Backup") if r["grpc.code"] == "CANCELLED"]) == ROUNDS

"""A node whose stdout reader goes away (``gantry serve | jq`` losing jq) keeps serving and
stops on SIGTERM: every RPC answered INTERNAL (its log line raised EPIPE) and SIGTERM was lost
in its handler's own log line, so only kill -9 ended it (a new-user trial, 2026-12-03)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import threading

from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import REPO, NodeProcess, free_ports, wait_until


def test_a_node_keeps_serving_and_stops_when_its_stdout_reader_is_gone(
        tmp_path: pathlib.Path) -> None:
    port, raft = free_ports(2)
    nd = NodeProcess(tmp_path / "node", port, raft, [], node_id="piped")
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "info",
           "GANTRY_HEARTBEAT_INTERVAL": "0"}
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as err:
        nd.proc = subprocess.Popen(nd.args(), cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                                   stderr=err, start_new_session=True)
    assert nd.proc.stdout is not None
    lines: list[bytes] = []
    reading = threading.Event()
    reading.set()

    def drain() -> None:  # the reader, until the test takes it away
        assert nd.proc is not None and nd.proc.stdout is not None
        while reading.is_set():
            line = nd.proc.stdout.readline()
            if not line:
                return
            lines.append(line)
        # Closed by this thread: closing it from another one while readline() holds the
        # buffer's lock would block there for good.
        nd.proc.stdout.close()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        nd.wait_serving(60)
        nd.stub().CreateBucket(svc.CreateBucketRequest(name="before"), timeout=10)
        wait_until(lambda: any(b"rpc_finished" in line for line in lines), 10,
                   what="the first call's log line read")
        reading.clear()  # the reader goes at its next line: the writes after it get EPIPE
        nd.stub().CreateBucket(svc.CreateBucketRequest(name="last-read"), timeout=10)
        reader.join(10)
        assert not reader.is_alive()
        for i in range(20):  # every call still answered, each after a failed log write
            nd.stub().CreateBucket(svc.CreateBucketRequest(name=f"after-{i}"), timeout=10)
        got = nd.stub().GetBucket(svc.GetBucketRequest(name="after-19"), timeout=10)
        assert got.bucket.name == "after-19"
        assert nd.stop() == 0, "SIGTERM must still stop it"
        said = stderr_path.read_text()
        assert said.count("cannot write log lines to stdout") == 1, said
    finally:
        nd.stop()

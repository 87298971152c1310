"""The README's mistake undone on a real 3-node cluster: a dead storage address, registered,
goes DEGRADED and then OFFLINE; ``gantry unregister-cradle``
through a follower removes it on every replica alike, and the leader stops heartbeating it."""

from __future__ import annotations

import pathlib
import sqlite3
import subprocess
import sys

from gantry.heartbeat import OFFLINE_AFTER
from gantry.pb.service.v1 import service_pb2 as svc
from tests.cluster.helpers import leader_of
from tests.support import REPO, cluster, wait_until

DEAD = "127.0.0.1:9"
OTHER = "127.0.0.1:7"  # also nothing listens there (echo port, closed)


def _row(db: pathlib.Path) -> tuple[object, ...] | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row: tuple[object, ...] | None = conn.execute(
            "SELECT id, status, consecutive_misses, unregistered_at, updated_at FROM cradle_servers"
            " WHERE address = ?", (DEAD,)).fetchone()
        return row
    finally:
        conn.close()


def _misses(db: pathlib.Path, address: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT consecutive_misses FROM cradle_servers WHERE address = ?",
                           (address,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def test_unregister_a_dead_server_through_a_follower(tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3, ["--heartbeat-interval", "100ms"]) as nodes:
        leader = leader_of(nodes)
        follower = next(nd for nd in nodes if nd is not leader)
        follower.stub().RegisterCradleServer(svc.RegisterCradleServerRequest(address=DEAD),
                                             timeout=10)
        db = leader.data_dir / "gantry.db"

        def offline() -> bool:
            row = _row(db)
            return row is not None and row[1] == "OFFLINE"

        wait_until(offline, 20, what="the dead server OFFLINE")
        r = subprocess.run([sys.executable, "-m", "gantry.cli", "unregister-cradle", DEAD,
                            "--addr", follower.addr], cwd=str(REPO), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"unregistered cradle server {DEAD} (")
        for nd in nodes:
            listed = nd.stub().ListCradleServers(svc.ListCradleServersRequest(), timeout=10)
            assert [c.address for c in listed.cradle_servers] == []
        # Every replica holds the same row, marked unregistered; heartbeats no longer touch it.
        wait_until(lambda: len({_row(nd.data_dir / "gantry.db") for nd in nodes}) == 1, 20,
                   what="replicas agree")
        before = _row(db)
        assert before is not None and before[3] is not None
        # Proof that heartbeat rounds ran meanwhile: a second dead server gathers misses.
        follower.stub().RegisterCradleServer(svc.RegisterCradleServerRequest(address=OTHER),
                                             timeout=10)
        wait_until(lambda: _misses(db, OTHER) == OFFLINE_AFTER, 20,
                   what="heartbeat rounds after unregister")
        assert _row(db) == before

"""``gantry status --cluster``: one view of a real 3-node cluster, and of it with a member down."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

from tests.cluster.helpers import leader_of
from tests.support import REPO, cluster, wait_until

INT_FIELDS = ("term", "commit_index", "applied_index", "last_applied", "lag")


def status_cluster(addr: str, *extra: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "gantry.cli", "status", "--cluster", "--addr", addr,
                        "--timeout", "5", *extra], cwd=str(REPO), capture_output=True, text=True,
                       timeout=60)
    assert not r.stderr, r.stderr  # never a traceback
    return r.returncode, r.stdout


def view(addr: str) -> tuple[int, dict[str, Any]]:
    code, out = status_cluster(addr, "--json")
    return code, json.loads(out)


def healthy_view(addr: str) -> dict[str, Any] | None:
    code, v = view(addr)
    return v if code == 0 else None


def test_status_cluster_of_three_then_one_down(tmp_path: pathlib.Path) -> None:
    with cluster(tmp_path, 3) as nodes:
        # SERVING comes before every node's gRPC address announcement is applied everywhere.
        v = wait_until(lambda: healthy_view(nodes[0].addr), 30, 0.2, "status --cluster exit 0")
        rows = v["members"]
        assert v["healthy"] is True and len(rows) == 3
        assert sorted(r["node_id"] for r in rows) == ["node0", "node1", "node2"]
        assert [r["role"] for r in rows].count("leader") == 1
        assert sorted(r["grpc_addr"] for r in rows) == sorted(n.addr for n in nodes)
        assert sorted(r["raft_addr"] for r in rows) == sorted(n.raft_addr for n in nodes)
        for r in rows:
            assert r["reachable"] is True and r["serving"] is True and r["error"] is None
            for k in INT_FIELDS:
                assert type(r[k]) is int, (k, r)
        assert type(v["leader_commit_index"]) is int

        code, text = status_cluster(nodes[1].addr)
        assert code == 0, text
        assert text.splitlines()[0].split()[:2] == ["NODE", "RAFT"]
        assert "3 members, 3 SERVING, 0 unreachable" in text

        # Stop a follower; ask another node.
        leader = leader_of(nodes)
        victim = next(n for n in nodes if n is not leader)
        asked = next(n for n in nodes if n is not victim)
        victim.stop()
        code, v = view(asked.addr)
        assert code == 3
        assert v["healthy"] is False
        by_raft = {r["raft_addr"]: r for r in v["members"]}
        assert len(by_raft) == 3
        down = by_raft[victim.raft_addr]
        assert down["reachable"] is False and down["node_id"] == victim.node_id
        assert down["role"] is None and down["lag"] is None and down["error"].startswith("unreachable")
        up = [r for r in v["members"] if r["raft_addr"] != victim.raft_addr]
        assert all(r["reachable"] and r["serving"] for r in up)
        assert [r["role"] for r in up].count("leader") == 1

        code, text = status_cluster(asked.addr)
        assert code == 3
        assert f"{victim.node_id}: unreachable" in text
        assert "3 members, 2 SERVING, 1 unreachable" in text

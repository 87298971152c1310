"""``gantry status`` / ``status --cluster`` / ``--version`` against in-process fake
ClusterService servers on 127.0.0.1 (real gRPC, no node): JSON types and names, unreachable
members as rows, exit codes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from importlib import metadata
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

import gantry
from gantry import cli, clusterview
from gantry.pb.admin.v1 import admin_pb2 as pb
from gantry.pb.admin.v1 import admin_pb2_grpc
from tests.support import free_ports

BIG = 2**53 + 1  # a JSON string in MessageToJson; must stay an exact number here


class FakeCluster:
    """ClusterService servers; server ``i`` answers Status with ``self.answer[i]()`` (it may block)."""

    def __init__(self, n: int) -> None:
        self.servers: list[grpc.Server] = []
        self.ports: list[int] = []
        self.answer: list[Callable[[], pb.StatusResponse]] = []
        for i in range(n):
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            admin_pb2_grpc.add_ClusterServiceServicer_to_server(self._servicer(i), server)
            self.ports.append(server.add_insecure_port("127.0.0.1:0"))
            server.start()
            self.servers.append(server)
            self.answer.append(lambda: pb.StatusResponse())

    def _servicer(self, i: int) -> admin_pb2_grpc.ClusterServiceServicer:
        fake = self

        class Servicer(admin_pb2_grpc.ClusterServiceServicer):  # type: ignore[misc]
            def Status(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
                return fake.answer[i]()

        return Servicer()

    def addr(self, i: int) -> str:
        return f"127.0.0.1:{self.ports[i]}"

    def stop(self) -> None:
        for s in self.servers:
            s.stop(0).wait()


@pytest.fixture
def fakes() -> Iterator[FakeCluster]:
    fc = FakeCluster(3)
    try:
        yield fc
    finally:
        fc.stop()


def _members(grpc_addrs: list[str], self_i: int, leader_i: int = 0) -> list[pb.Member]:
    return [pb.Member(raft_addr=f"127.0.0.1:{7000 + i}", node_id=f"n{i}", grpc_addr=a,
                      is_self=i == self_i, is_leader=i == leader_i, connected=True)
            for i, a in enumerate(grpc_addrs)]


def _status(i: int, grpc_addrs: list[str], role: str, commit: int, applied: int,
            serving: bool = True) -> pb.StatusResponse:
    return pb.StatusResponse(
        node_id=f"n{i}", raft_addr=f"127.0.0.1:{7000 + i}", grpc_addr=grpc_addrs[i], role=role,
        leader_raft_addr="127.0.0.1:7000", leader_grpc_addr=grpc_addrs[0], term=7,
        commit_index=commit, applied_index=applied, last_applied=applied, last_snapshot_index=0,
        members=_members(grpc_addrs, i), serving=serving, log_entries=3)


def _serve_cluster(fakes: FakeCluster, addrs: list[str]) -> None:
    for i, (role, commit, applied) in enumerate([("leader", 100, 100), ("follower", 98, 95),
                                                 ("follower", 100, 99)]):
        st = _status(i, addrs, role, commit, applied)
        fakes.answer[i] = lambda st=st: st


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().out


def test_status_json_has_proto_names_and_numbers(fakes: FakeCluster,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    addrs = [fakes.addr(i) for i in range(3)]
    st = _status(0, addrs, "leader", BIG, BIG - 1)
    fakes.answer[0] = lambda: st
    code, out = run_cli(["status", "--addr", addrs[0], "--json"], capsys)
    assert code == 0
    got = json.loads(out)
    # The same fields as the proto, by their proto names (never camelCase: lastApplied).
    assert set(got) == {f.name for f in pb.StatusResponse.DESCRIPTOR.fields}
    assert got["commit_index"] == BIG and got["applied_index"] == BIG - 1
    assert got["last_applied"] == BIG - 1 and got["term"] == 7
    for k in ("term", "commit_index", "applied_index", "last_applied", "last_snapshot_index",
              "log_entries"):
        assert type(got[k]) is int, k
    assert got["serving"] is True and got["members"][0]["is_self"] is True
    assert set(got["members"][0]) == {f.name for f in pb.Member.DESCRIPTOR.fields}
    # Same content as protobuf's own JSON, once its int64 strings are numbers.
    ref = json_format.MessageToDict(st, preserving_proto_field_name=True,
                                    always_print_fields_with_no_presence=True)
    assert ref["commit_index"] == str(BIG)
    assert {k: v for k, v in got.items() if k != "members"} == {
        k: int(v) if isinstance(v, str) and v.isdigit() else v
        for k, v in ref.items() if k != "members"}


def test_message_to_dict_prints_unset_fields() -> None:
    got = clusterview.message_to_dict(pb.StatusResponse())
    assert got["term"] == 0 and got["role"] == "" and got["members"] == []
    assert got["serving"] is False


def test_cluster_all_serving_exits_0(fakes: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    addrs = [fakes.addr(i) for i in range(3)]
    _serve_cluster(fakes, addrs)
    code, out = run_cli(["status", "--cluster", "--json", "--addr", addrs[1]], capsys)
    assert code == 0
    view = json.loads(out)
    assert view["healthy"] is True and view["asked"] == addrs[1]
    assert view["leader_raft_addr"] == "127.0.0.1:7000" and view["leader_commit_index"] == 100
    rows = view["members"]
    assert [r["node_id"] for r in rows] == ["n0", "n1", "n2"]
    assert [r["role"] for r in rows] == ["leader", "follower", "follower"]
    assert [r["lag"] for r in rows] == [0, 5, 1]  # leader's commit index − member's applied index
    assert all(r["reachable"] and r["serving"] and r["error"] is None for r in rows)
    assert all(type(r[k]) is int for r in rows for k in ("term", "commit_index", "applied_index",
                                                          "last_applied", "lag"))
    code, out = run_cli(["status", "--cluster", "--addr", addrs[0]], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NODE", "RAFT", "GRPC", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG",
                                "SERVING", "REACHABLE"]
    assert lines[2].split() == ["n1", "127.0.0.1:7001", addrs[1], "follower", "7", "98", "95", "5",
                                "yes", "yes"]
    assert lines[-1] == "3 members, 3 SERVING, 0 unreachable; leader 127.0.0.1:7000"


def test_unreachable_and_not_serving_members_are_rows(fakes: FakeCluster,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    addrs = [fakes.addr(0), closed, ""]  # n1 is down, n2 never announced its gRPC address
    _serve_cluster(fakes, addrs)
    code, out = run_cli(["status", "--cluster", "--json", "--addr", addrs[0]], capsys)
    assert code == clusterview.EXIT_UNHEALTHY == 3
    rows = json.loads(out)["members"]
    assert [r["reachable"] for r in rows] == [True, False, False]
    assert rows[1]["role"] is None and rows[1]["lag"] is None and rows[1]["serving"] is None
    assert rows[1]["node_id"] == "n1"  # from the asked node's member list
    assert "UNAVAILABLE" in rows[1]["error"]
    assert "gRPC address unknown" in rows[2]["error"]
    code, out = run_cli(["status", "--cluster", "--addr", addrs[0]], capsys)
    assert code == 3
    assert "n1: unreachable: UNAVAILABLE" in out
    assert out.splitlines()[-1] == "3 members, 1 SERVING, 2 unreachable; leader 127.0.0.1:7000"

    # A reachable member that is not SERVING is unhealthy too.
    addrs = [fakes.addr(i) for i in range(3)]
    _serve_cluster(fakes, addrs)
    st = _status(2, addrs, "follower", 100, 10, serving=False)
    fakes.answer[2] = lambda: st
    code, out = run_cli(["status", "--cluster", "--json", "--addr", addrs[0]], capsys)
    assert code == 3
    row = json.loads(out)["members"][2]
    assert row["reachable"] is True and row["serving"] is False and row["lag"] == 90


def test_a_member_that_does_not_answer_in_time_is_unreachable(fakes: FakeCluster) -> None:
    addrs = [fakes.addr(i) for i in range(3)]
    _serve_cluster(fakes, addrs)
    release = threading.Event()
    hung = fakes.answer[2]

    def hang() -> pb.StatusResponse:
        release.wait(10)
        return hung()

    fakes.answer[2] = hang
    try:
        view = clusterview.collect(addrs[0], timeout_s=5, member_timeout_s=0.3)
    finally:
        release.set()
    assert [m.reachable for m in view.members] == [True, True, False]
    assert "DEADLINE_EXCEEDED" in view.members[2].error
    assert view.exit_code() == 3


def test_no_leader_answering_leaves_lag_unknown(fakes: FakeCluster) -> None:
    addrs = ["", fakes.addr(1), fakes.addr(2)]  # the leader's address is unknown
    _serve_cluster(fakes, addrs)
    view = clusterview.collect(addrs[1], timeout_s=5)
    assert view.leader_raft_addr is None and view.leader_commit_index is None
    assert [m.lag for m in view.members] == [None, None, None]
    assert "leader none answered" in view.table()


def test_asked_node_down_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"127.0.0.1:{free_ports(1)[0]}"
    assert cli.main(["status", "--cluster", "--addr", closed, "--timeout", "2"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"gantry {metadata.version('gantry-node')}\n"
    assert gantry.__version__ == gantry.version()

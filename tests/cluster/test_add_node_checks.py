"""`add-node` puts only a Gantry node started to join this cluster into the configuration (real
processes, real Raft transport). It accepted anything that answered TCP — a gRPC port, a silent
listener, a `localhost:` alias of a member, a node running its own cluster, a node with another
--raft-password — and each such member counted toward quorum (a new-user trial, 2026-12-03)."""

from __future__ import annotations

import pathlib
import shutil
import socket

import grpc
import pytest

from gantry.consensus import probe
from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.service.v1 import service_pb2 as svc
from tests.cluster.helpers import admin, leader_of, status
from tests.support import (
    NodeProcess,
    call_with_retry,
    cluster,
    free_ports,
    listens,
    single_node,
    wait_until,
)
from tests.support import gantry_cli as gantry


def _refused(lead: NodeProcess, raft_addr: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        admin(lead).AddNode(apb.AddNodeRequest(raft_addr=raft_addr), timeout=15)
    assert {m.raft_addr for m in status(lead).members} == {lead.raft_addr}, \
        "a refused add-node must not change the configuration"
    return e.value


def _refused_as(lead: NodeProcess, raft_addr: str, reason: str, seen: str) -> None:
    """AddNode refused FAILED_PRECONDITION with ``reason`` in its message, and the CLI saying
    what it saw (``seen``)."""
    err = _refused(lead, raft_addr)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason in str(err.details())
    r = gantry("add-node", raft_addr, "--addr", lead.addr)
    assert r.returncode == 1 and seen in r.stderr, r.stderr


def test_add_node_checks_who_answers_at_the_raft_address(tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path / "solo") as solo:
        err = _refused(solo, solo.addr)  # its gRPC port: TCP answers, Raft does not
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.details() == "no Gantry node answered at that Raft address"

        with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says a word
            port = silent.getsockname()[1]
            err = _refused(solo, f"127.0.0.1:{port}")
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
            r = gantry("add-node", f"127.0.0.1:{port}", "--addr", solo.addr)
            assert r.returncode == 1 and "no answer within" in r.stderr, r.stderr

        err = _refused(solo, f"localhost:{solo.raft_port}")  # a member under another name
        assert (err.code(), err.details()) == (grpc.StatusCode.ALREADY_EXISTS,
                                               "node is already a member")

        port, raft = free_ports(2)
        new_dir = tmp_path / "new" / "node"
        loner = NodeProcess(new_dir, port, raft, [], node_id="new")  # no --peers: its own cluster
        try:
            loner.start().wait_serving()
            # Its own cluster's log is in it (its registration), and its stored configuration
            # wins over --peers: restarting it with --peers cannot help, emptying it does.
            _refused_as(solo, loner.raft_addr, "node runs as another cluster: stop it, empty its "
                        "data directory", "its other members: none; its log ends at index")
        finally:
            loner.stop()

        # Its own cluster's log, now started to join: both logs are at term 1, so only the
        # entries' bytes tell the histories apart (a trial's add took it, and the cluster's
        # acknowledged writes went missing or stalled).
        loner.peers = [solo.raft_port]
        try:
            loner.start()
            wait_until(lambda: listens(raft), 30, what="the rejoining node's Raft port")
            _refused_as(solo, loner.raft_addr, "holds a Raft history that is not this cluster's",
                        "its log ends at index")
        finally:
            loner.stop()

        shutil.rmtree(new_dir)
        other_password = NodeProcess(new_dir, port, raft, [solo.raft_port], node_id="new",
                                     env={"GANTRY_RAFT_PASSWORD": "not-the-clusters"})
        try:
            other_password.start()
            wait_until(lambda: listens(raft), 30, what="the new node's Raft port")
            err = _refused(solo, other_password.raft_addr)
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert err.details() == "no Gantry node answered at that Raft address"
        finally:
            other_password.stop()

        shutil.rmtree(new_dir)
        joiner = NodeProcess(new_dir, port, raft, [solo.raft_port], node_id="new")
        try:
            joiner.start()
            wait_until(lambda: listens(raft), 30, what="the new node's Raft port")
            admin(solo).AddNode(apb.AddNodeRequest(raft_addr=joiner.raft_addr), timeout=15)
            joiner.wait_serving()
            assert {m.raft_addr for m in status(solo).members} == {solo.raft_addr,
                                                                  joiner.raft_addr}
            call_with_retry(solo.stub().CreateBucket, svc.CreateBucketRequest(name="after-add"))
            assert any(e.get("event") == "raft_probe_answered" for e in joiner.log_events())
            # Removed and added straight back, its data kept: its log ends at an entry this
            # cluster's log holds, so it is this cluster's history.
            admin(solo).RemoveNode(apb.RemoveNodeRequest(raft_addr=joiner.raft_addr), timeout=15)
            wait_until(lambda: {m.raft_addr for m in status(solo).members} == {solo.raft_addr},
                       15, what="removed")
            admin(solo).AddNode(apb.AddNodeRequest(raft_addr=joiner.raft_addr), timeout=15)
            wait_until(lambda: status(joiner).serving, 30, what="re-added member caught up")
        finally:
            joiner.stop()


def test_a_member_whose_log_ends_at_a_noop_is_added_back_with_its_data(
        tmp_path: pathlib.Path) -> None:
    # A member stopped right after an election holds the new leader's no-op as its last entry.
    # Every no-op's bytes are the same, so add-node refused it ("cannot vouch") and the operator
    # had to empty its data directory; the entry before the no-op tells the histories apart.
    with cluster(tmp_path, 3) as nodes:
        lead = leader_of(nodes)
        call_with_retry(lead.stub().CreateBucket, svc.CreateBucketRequest(name="before"))
        heir, gone = [n for n in nodes if n is not lead]
        admin(lead).TransferLeadership(
            apb.TransferLeadershipRequest(raft_addr=heir.raft_addr), timeout=15)
        # Nothing is written after the heir's no-op: once everyone's log ends at the heir's
        # commit index, that last entry is the no-op.
        wait_until(lambda: status(heir).role == "leader" and status(heir).commit_index
                   == status(gone).commit_index == status(gone).last_applied, 30,
                   what="the heir's no-op applied on the member about to go")
        noop_index = status(heir).commit_index
        assert probe.ask(gone.raft_addr, own_addr="test", password=None).last[0] == noop_index
        gone.stop()
        admin(heir).RemoveNode(apb.RemoveNodeRequest(raft_addr=gone.raft_addr), timeout=15)
        wait_until(lambda: gone.raft_addr not in {m.raft_addr for m in status(heir).members},
                   15, what="removed")
        gone.start()
        wait_until(lambda: listens(gone.raft_port), 30, what="the removed member's Raft port")
        admin(heir).AddNode(apb.AddNodeRequest(raft_addr=gone.raft_addr), timeout=15)
        call_with_retry(heir.stub().CreateBucket, svc.CreateBucketRequest(name="after"))
        wait_until(lambda: status(gone).serving
                   and status(gone).last_applied >= status(heir).commit_index, 30,
                   what="the re-added member caught up")
        for name in ("before", "after"):
            got = gone.stub().GetBucket(svc.GetBucketRequest(name=name), timeout=5,
                                        metadata=(("x-gantry-consistency", "stale"),))
            assert got.bucket.name == name

"""Consensus failures as a client sees them, without a cluster: :class:`InlineConsensus` fails
the next proposal with a given reason and the API answers with the stable status for it."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gantry.consensus.errors import ConsensusError, LeaderChanged, NoLeader, Overloaded, Stopping
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.testing import InProcessNode

T = 10


def _reason(err: grpc.RpcError) -> str:
    st = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert st is not None
    for d in st.details:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return str(info.reason)
    return ""


@pytest.mark.parametrize(("error", "reason", "message"), [
    (NoLeader(), "MISSING_LEADER", "no leader"),
    (Overloaded(), "QUEUE_FULL", "write not committed: node overloaded"),
    (LeaderChanged("127.0.0.1:2"), "LEADER_CHANGED",
     "write outcome unknown: retry with the same x-request-id"),
    (Stopping(), "NODE_STOPPING", "node stopping"),
])
def test_a_failed_proposal_is_unavailable_with_a_stable_message(
        node: InProcessNode, error: ConsensusError, reason: str, message: str) -> None:
    assert node.consensus is not None
    node.consensus.fail_next(error)
    name = f"b-{uuid.uuid4().hex[:12]}"
    with pytest.raises(grpc.RpcError) as e:
        node.stub().CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE, message)
    assert _reason(e.value) == reason
    # Nothing was applied: the name is still free.
    node.stub().CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)


def test_a_failed_read_barrier_is_a_read_retry_not_a_write_error(node: InProcessNode) -> None:
    assert node.consensus is not None
    name = f"b-{uuid.uuid4().hex[:12]}"
    node.stub().CreateBucket(svc.CreateBucketRequest(name=name), timeout=T)
    node.consensus.fail_next(LeaderChanged())
    with pytest.raises(grpc.RpcError) as e:
        node.stub().GetBucket(svc.GetBucketRequest(name=name), timeout=T)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert e.value.details() == "read not confirmed by a leader (leader changed): retry"
    assert node.stub().GetBucket(svc.GetBucketRequest(name=name), timeout=T).bucket.name == name


def test_inprocess_node_restarts_on_its_database(tmp_path: object) -> None:
    import pathlib

    d = pathlib.Path(str(tmp_path))
    with InProcessNode(d, cradle_addr="127.0.0.1:9") as nd:
        nd.stub().CreateBucket(svc.CreateBucketRequest(name="kept"), timeout=T)
        applied = nd.watermark.value
    with InProcessNode(d) as nd:
        assert nd.watermark.value == applied  # log indexes continue after the applied index
        assert nd.stub().GetBucket(svc.GetBucketRequest(name="kept"), timeout=T).bucket.name == "kept"
        nd.stub().CreateBucket(svc.CreateBucketRequest(name="next"), timeout=T)
        assert nd.watermark.value == applied + 2  # a read barrier, then the write

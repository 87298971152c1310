"""``gantry.admin.v1.ClusterService/UnregisterCradleServer`` on the in-process tier: refused while
live objects are placed on the server unless forced, gone from ListCradleServers and PlanWrite
once done, back when registered again; and ``gantry unregister-cradle`` on top of it."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.admin.v1 import admin_pb2_grpc
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.testing import InProcessNode
from tests.support import REPO

T = 10
DEAD = "127.0.0.1:9"


@pytest.fixture
def node(tmp_path: pathlib.Path) -> Iterator[InProcessNode]:
    with InProcessNode(tmp_path / "n") as nd:
        yield nd
        assert nd.fatal_reason == ""


def _admin(nd: InProcessNode) -> admin_pb2_grpc.ClusterServiceStub:
    return admin_pb2_grpc.ClusterServiceStub(nd.channel())


def _info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    st = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert st is not None
    for d in st.details:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo")


def _listed(nd: InProcessNode) -> list[str]:
    return [c.address for c in nd.stub().ListCradleServers(svc.ListCradleServersRequest(),
                                                           timeout=T).cradle_servers]


def _unregister(nd: InProcessNode, address: str, force: bool = False
                ) -> apb.UnregisterCradleServerResponse:
    resp: apb.UnregisterCradleServerResponse = _admin(nd).UnregisterCradleServer(
        apb.UnregisterCradleServerRequest(address=address, force=force), timeout=T)
    return resp


def test_unregister_a_server_nothing_was_placed_on(node: InProcessNode) -> None:
    stub = node.stub()
    stub.RegisterCradleServer(svc.RegisterCradleServerRequest(address=DEAD), timeout=T)
    assert _listed(node) == [DEAD]
    resp = _unregister(node, " 127.0.0.1:09 ")  # normalised like RegisterCradleServer
    assert (resp.address, resp.live_objects) == (DEAD, 0) and resp.cradle_server_id
    assert _listed(node) == []
    stub.CreateBucket(svc.CreateBucketRequest(name="photos"), timeout=T)
    with pytest.raises(grpc.RpcError) as e:
        stub.PlanWrite(svc.PlanWriteRequest(bucket="photos", key="k", size=1), timeout=T)
    assert e.value.details() == "no cradle servers available"
    with pytest.raises(grpc.RpcError) as e:
        _unregister(node, DEAD)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.NOT_FOUND,
                                                   "cradle server not found")
    assert _info(e.value).reason == "CRADLE_SERVER_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as e:
        _unregister(node, "no-port")
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                   "InvalidAddress")
    # Registering it again brings it back (same id), placeable again.
    again = stub.RegisterCradleServer(svc.RegisterCradleServerRequest(address=DEAD), timeout=T)
    assert again.cradle_server.id == resp.cradle_server_id and _listed(node) == [DEAD]
    plan = stub.PlanWrite(svc.PlanWriteRequest(bucket="photos", key="k", size=1), timeout=T)
    assert plan.write_plan.cradle_address == DEAD


def test_live_objects_keep_a_server_registered_unless_forced(node: InProcessNode) -> None:
    stub = node.stub()
    stub.RegisterCradleServer(svc.RegisterCradleServerRequest(address=DEAD), timeout=T)
    stub.CreateBucket(svc.CreateBucketRequest(name="photos"), timeout=T)
    plans = [stub.PlanWrite(svc.PlanWriteRequest(bucket="photos", key=f"k{i}", size=1), timeout=T)
             for i in range(3)]
    stub.CommitObject(svc.CommitObjectRequest(object_id=plans[0].write_plan.object_id, size=1,
                                              last_modified_ms=1), timeout=T)
    with pytest.raises(grpc.RpcError) as e:
        _unregister(node, DEAD)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                   "cradle server has live objects")
    info = _info(e.value)
    assert (info.reason, dict(info.metadata)) == ("CRADLE_SERVER_HAS_LIVE_OBJECTS",
                                                  {"address": DEAD})
    assert _listed(node) == [DEAD]  # nothing changed

    r = subprocess.run([sys.executable, "-m", "gantry.cli", "unregister-cradle", DEAD,
                        "--addr", node.addr], cwd=str(REPO), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "gantry: FAILED_PRECONDITION: cradle server has live objects (PENDING or COMMITTED "
        "objects are placed on it, listed by the live_objects view: delete or abort them first, "
        "or pass --force to unregister it anyway)")
    r = subprocess.run([sys.executable, "-m", "gantry.cli", "unregister-cradle", DEAD, "--force",
                        "--addr", node.addr], cwd=str(REPO), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"unregistered cradle server {DEAD} (")
    assert r.stdout.rstrip().endswith("; 3 PENDING or COMMITTED objects still name it")
    assert _listed(node) == []
    # The objects stay as they were: the committed one still names the server.
    head = stub.HeadObject(svc.HeadObjectRequest(bucket="photos", key="k0"), timeout=T)
    assert head.cradle_address == DEAD
    stub.AbortObject(svc.AbortObjectRequest(object_id=plans[1].write_plan.object_id), timeout=T)

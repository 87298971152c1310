"""Server reflection: on in development (or with ENABLE_REFLECTION=true), off otherwise."""

from __future__ import annotations

import pathlib

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support import single_node


def _services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    [resp] = list(stub.ServerReflectionInfo(iter([req]), timeout=5))
    return {s.name for s in resp.list_services_response.service}


@pytest.mark.parametrize("env,on", [({"APP_ENV": "development"}, True),
                                    ({"APP_ENV": "production", "ENABLE_REFLECTION": "true"}, True),
                                    ({"APP_ENV": "production"}, False)])
def test_reflection_follows_environment(tmp_path: pathlib.Path, env: dict[str, str], on: bool) -> None:
    with single_node(tmp_path, env=env) as nd:
        if on:
            names = _services(nd.channel())
            assert {"gantry.service.v1.GantryService", "gantry.admin.v1.ClusterService",
                    "grpc.health.v1.Health"} <= names
        else:
            with pytest.raises(grpc.RpcError) as e:
                _services(nd.channel())
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED

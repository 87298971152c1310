"""TLS and authentication on real node processes (issue 9 part 4): TLS and mTLS connections
accepted, plaintext and strangers refused; plaintext gRPC beyond loopback refused at start unless
``--insecure``; ClusterService beyond loopback needs the admin token or a client certificate,
also when a follower passes TransferLeadership on to the leader. Certificates are generated per
module (tests/certs.py) for 127.0.0.1 / localhost."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gantry.api import auth
from gantry.pb.admin.v1 import admin_pb2 as apb
from gantry.pb.admin.v1 import admin_pb2_grpc
from gantry.pb.service.v1 import service_pb2 as svc
from gantry.tlsconfig import ClientConfig
from tests.certs import Pki, make_pki
from tests.cluster.helpers import leader_of, status
from tests.support import NodeProcess, cluster, free_ports, gantry_cli, single_node, wait_until

TOKEN = "test-admin-token-0123456789"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def serve_tls(pki: Pki) -> list[str]:
    return ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]


def health(addr: str, client: ClientConfig) -> grpc.StatusCode:
    """The status of one Health/Check on a fresh channel (OK when it answered)."""
    with client.channel(addr) as ch:
        try:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK



@pytest.fixture(scope="module")
def tls_node(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """TLS on 127.0.0.1, no client certificates asked for."""
    with single_node(tmp_path_factory.mktemp("tls"), serve_tls(pki),
                     tls=ClientConfig(ca=pki.ca)) as nd:
        yield nd


def test_tls_accepted_plaintext_and_a_wrong_ca_refused(tls_node: NodeProcess, pki: Pki) -> None:
    assert health(tls_node.addr, ClientConfig(ca=pki.ca)) == grpc.StatusCode.OK
    tls_node.stub().CreateBucket(svc.CreateBucketRequest(name="over-tls"), timeout=10)
    assert tls_node.stub().GetBucket(svc.GetBucketRequest(name="over-tls"), timeout=10).bucket.name \
        == "over-tls"
    # A plaintext client's bytes are no TLS handshake: the connection is closed.
    assert health(tls_node.addr, ClientConfig()) == grpc.StatusCode.UNAVAILABLE
    # A client that trusts another CA refuses the node's certificate.
    assert health(tls_node.addr, ClientConfig(ca=pki.other_ca)) == grpc.StatusCode.UNAVAILABLE
    started = [e for e in tls_node.log_events() if e.get("event") == "node_started"]
    assert started[-1]["tls"] == "server" and started[-1]["admin_auth"] == "open (loopback)"


def test_cli_with_tls_ca(tls_node: NodeProcess, pki: Pki) -> None:
    r = gantry_cli("status", "--addr", tls_node.addr, "--tls-ca", str(pki.ca), "--json")
    assert r.returncode == 0, r.stderr
    assert '"role": "leader"' in r.stdout
    r = gantry_cli("status", "--addr", tls_node.addr, env={"GANTRY_TLS_CA": str(pki.ca)})
    assert r.returncode == 0 and "role       leader" in r.stdout, r.stderr
    r = gantry_cli("status", "--addr", tls_node.addr, "--timeout", "3")
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, r.stderr
    r = gantry_cli("status", "--addr", tls_node.addr, "--tls-ca", str(pki.server_key))
    assert r.returncode == 2 and "not a PEM CA certificate bundle" in r.stderr, r.stderr


def test_mtls_requires_a_client_certificate_from_the_client_ca(pki: Pki,
                                                               tmp_path: pathlib.Path) -> None:
    client = ClientConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    with single_node(tmp_path, [*serve_tls(pki), "--tls-client-ca", str(pki.ca)],
                     tls=client) as nd:
        assert health(nd.addr, client) == grpc.StatusCode.OK
        nd.stub().CreateBucket(svc.CreateBucketRequest(name="over-mtls"), timeout=10)
        assert health(nd.addr, ClientConfig(ca=pki.ca)) == grpc.StatusCode.UNAVAILABLE
        stranger = ClientConfig(ca=pki.ca, cert=pki.other_client_cert, key=pki.other_client_key)
        assert health(nd.addr, stranger) == grpc.StatusCode.UNAVAILABLE
        assert health(nd.addr, ClientConfig()) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("argv,message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 is not a loopback address and no --tls-cert"),
    (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "{cert}", "--tls-key", "{missing}"], "cannot read it"),
], ids=["plaintext-beyond-loopback", "cert-without-key", "unreadable-key"])
def test_unsafe_or_unusable_settings_refuse_to_start(pki: Pki, tmp_path: pathlib.Path,
                                                     argv: list[str], message: str) -> None:
    port, raft = free_ports(2)
    argv = [a.format(cert=pki.server_cert, missing=tmp_path / "missing.key") for a in argv]
    r = gantry_cli("serve", "--data-dir", str(tmp_path / "d"), "--port", str(port),
                   "--raft-addr", f"127.0.0.1:{raft}", *argv)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and r.stderr.startswith("gantry: "), r.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_insecure_beyond_loopback_starts_and_admin_calls_are_disabled(
        tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path, ["--host", "0.0.0.0", "--insecure"]) as nd:
        stub = admin_pb2_grpc.ClusterServiceStub(nd.channel())
        assert stub.Status(apb.StatusRequest(), timeout=5).role == "leader"  # open
        with pytest.raises(grpc.RpcError) as e:
            stub.AddNode(apb.AddNodeRequest(raft_addr="bogus"), timeout=5)
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                                       auth.MSG_DISABLED)
        assert any(ev.get("event") == "grpc_plaintext_beyond_loopback" for ev in nd.log_events())


def test_admin_calls_beyond_loopback_need_the_token(pki: Pki, tmp_path: pathlib.Path) -> None:
    with single_node(tmp_path, ["--host", "0.0.0.0", *serve_tls(pki)],
                     env={"GANTRY_ADMIN_TOKEN": TOKEN}, tls=ClientConfig(ca=pki.ca)) as nd:
        stub = admin_pb2_grpc.ClusterServiceStub(nd.channel())
        assert stub.Status(apb.StatusRequest(), timeout=5).role == "leader"  # open, as etcd's
        for name, req in (("AddNode", apb.AddNodeRequest(raft_addr="bogus")),
                          ("RemoveNode", apb.RemoveNodeRequest(raft_addr="bogus")),
                          ("TransferLeadership", apb.TransferLeadershipRequest())):
            with pytest.raises(grpc.RpcError) as e:
                getattr(stub, name)(req, timeout=5)
            assert (e.value.code(), e.value.details()) == (
                grpc.StatusCode.UNAUTHENTICATED, auth.MSG_CREDENTIALS_REQUIRED), name
        with pytest.raises(grpc.RpcError) as e:
            stub.AddNode(apb.AddNodeRequest(raft_addr="bogus"), timeout=5,
                         metadata=(("authorization", "Bearer not-the-token"),))
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAUTHENTICATED,
                                                       auth.MSG_INVALID_TOKEN)
        # With the token the call gets past authorization: the bogus address is what it refuses.
        with pytest.raises(grpc.RpcError) as e:
            stub.AddNode(apb.AddNodeRequest(raft_addr="bogus"), timeout=5,
                         metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                       "InvalidRaftAddress")
        refused = [ev for ev in nd.log_events() if ev.get("event") == "admin_call_refused"]
        assert {ev["grpc.method"] for ev in refused} == {"AddNode", "RemoveNode",
                                                         "TransferLeadership"}

        # The CLI: --tls-ca, then the token from the environment.
        args = ("add-node", "bogus", "--addr", nd.addr, "--tls-ca", str(pki.ca))
        r = gantry_cli(*args)
        assert r.returncode == 1 and "UNAUTHENTICATED: admin credentials required" in r.stderr, \
            r.stderr
        r = gantry_cli(*args, env={"GANTRY_ADMIN_TOKEN": TOKEN})
        assert r.returncode == 1 and "INVALID_ARGUMENT: InvalidRaftAddress" in r.stderr, r.stderr


def test_mtls_cluster_beyond_loopback_transfer_through_a_follower(pki: Pki,
                                                                  tmp_path: pathlib.Path) -> None:
    # Every node listens on 0.0.0.0 with mTLS and no token: the client certificate authorizes
    # the CLI, and the follower passes the call on with its own certificate (serverAuth +
    # clientAuth), which the leader verifies against its --tls-client-ca.
    client = ClientConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    args = ["--host", "0.0.0.0", *serve_tls(pki), "--tls-client-ca", str(pki.ca)]
    with cluster(tmp_path, 2, args, tls=client) as nodes:
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        # The follower must know the leader's gRPC address (announced through the log).
        wait_until(lambda: status(follower).leader_grpc_addr == leader.addr, 20, 0.05,
                   "the follower knows the leader's gRPC address")
        tls_args = ("--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key",
                    str(pki.client_key))
        r = gantry_cli("transfer-leader", "--addr", follower.addr, *tls_args)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"leader is now {follower.raft_addr}"
        wait_until(lambda: status(follower).role == "leader", 20, 0.05, "the follower leads")
        # Without a client certificate the CLI cannot even connect.
        r = gantry_cli("transfer-leader", "--addr", follower.addr, "--tls-ca", str(pki.ca),
                       "--timeout", "3")
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, r.stderr
        # status --cluster reaches every member over mTLS.
        r = gantry_cli("status", "--cluster", "--addr", leader.addr, *tls_args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "2 members, 2 SERVING, 0 unreachable" in r.stdout

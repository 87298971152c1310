"""Metrics and probes over real HTTP on real node processes: ``/metrics`` parsed with
prometheus-client's own parser, ``/readyz`` following health, a taken metrics port refused at
start, and the ops files (alert rules, dashboard) using only metric names a node exports."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import promql_parser
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gantry.pb.service.v1 import service_pb2 as svc
from tests.support import REPO, NodeProcess, free_ports, single_node, wait_until

WRITES = 20
GANTRY = "gantry.service.v1.GantryService"


def get(nd: NodeProcess, path: str) -> tuple[int, str]:
    """``(HTTP status, body)`` of ``GET path`` on the node's metrics address."""
    try:
        with urllib.request.urlopen(nd.metrics_url + path, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(nd: NodeProcess) -> dict[str, list[Sample]]:
    """Every sample of ``/metrics``, by metric family name."""
    status, text = get(nd, "/metrics")
    assert status == 200
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample called ``name`` whose labels include ``labels``."""
    hits = [s.value for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (name, labels, samples[:5])
    return hits[0]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    args = ["--cradle-addr", "127.0.0.1:9", "--snapshot-entries", str(WRITES // 2)]
    with single_node(tmp_path_factory.mktemp("metrics"), args) as nd:
        stub = nd.stub()
        for i in range(WRITES):
            stub.CreateBucket(svc.CreateBucketRequest(name=f"m-{i}"), timeout=5)
        with pytest.raises(grpc.RpcError) as bad:
            stub.CreateBucket(svc.CreateBucketRequest(name="Not A Bucket"), timeout=5)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub.GetBucket(svc.GetBucketRequest(name="m-0"), timeout=5)  # linearizable: a read index
        yield nd


def test_metrics_scraped_and_parsed(node: NodeProcess) -> None:
    m = scrape(node)
    rpcs = m["gantry_rpc_requests"]
    assert value(rpcs, "gantry_rpc_requests_total", grpc_service=GANTRY,
                 grpc_method="CreateBucket", grpc_code="OK") == WRITES
    assert value(rpcs, "gantry_rpc_requests_total", grpc_service=GANTRY,
                 grpc_method="CreateBucket", grpc_code="INVALID_ARGUMENT") == 1
    assert value(rpcs, "gantry_rpc_requests_total", grpc_method="GetBucket", grpc_code="OK") == 1
    assert value(m["gantry_rpc_duration_seconds"], "gantry_rpc_duration_seconds_count",
                 grpc_method="CreateBucket") == WRITES + 1
    # Every write (and the node's own registrations) went through an apply batch.
    batches = m["gantry_apply_batch_entries"]
    assert value(batches, "gantry_apply_batch_entries_sum") >= WRITES
    assert 1 <= value(batches, "gantry_apply_batch_entries_count") <= value(
        batches, "gantry_apply_batch_entries_sum")
    assert value(m["gantry_apply_duration_seconds"], "gantry_apply_duration_seconds_count") >= 1
    fsyncs = value(m["gantry_raft_log_fsync_duration_seconds"],
                   "gantry_raft_log_fsync_duration_seconds_count")
    assert fsyncs >= 1
    assert value(m["gantry_raft_log_fsync_entries"], "gantry_raft_log_fsync_entries_sum") >= WRITES
    # Raft state, read at scrape time.
    assert value(m["gantry_raft_role"], "gantry_raft_role", role="leader") == 1
    assert value(m["gantry_raft_role"], "gantry_raft_role", role="follower") == 0
    assert value(m["gantry_raft_term"], "gantry_raft_term") >= 1
    assert value(m["gantry_raft_has_leader"], "gantry_raft_has_leader") == 1
    assert value(m["gantry_raft_leader_changes"], "gantry_raft_leader_changes_total") >= 1
    applied = value(m["gantry_raft_applied_index"], "gantry_raft_applied_index")
    assert applied >= WRITES
    assert value(m["gantry_raft_commit_index"], "gantry_raft_commit_index") >= applied
    assert value(m["gantry_raft_members"], "gantry_raft_members") == 1
    assert value(m["gantry_health_serving"], "gantry_health_serving") == 1
    assert value(m["gantry_read_index_waits"], "gantry_read_index_waits_total") >= 1
    assert value(m["gantry_read_index_duration_seconds"],
                 "gantry_read_index_duration_seconds_count") >= 1
    assert value(m["gantry_db_size_bytes"], "gantry_db_size_bytes") > 0
    assert value(m["gantry_raft_log_size_bytes"], "gantry_raft_log_size_bytes") > 0
    assert value(m["gantry_filesystem_avail_bytes"], "gantry_filesystem_avail_bytes") > 0
    assert value(m["gantry_proposals_in_flight"], "gantry_proposals_in_flight") == 0
    assert value(m["gantry_build_info"], "gantry_build_info") == 1
    # A snapshot every WRITES / 2 entries: taken (off the tick thread) soon after the writes.
    def snapshotted() -> bool:
        m = scrape(node)
        return (value(m["gantry_snapshot_duration_seconds"],
                      "gantry_snapshot_duration_seconds_count") >= 1
                and value(m["gantry_snapshot_size_bytes"], "gantry_snapshot_size_bytes") > 0
                and value(m["gantry_raft_last_snapshot_index"],
                          "gantry_raft_last_snapshot_index") > 0)

    wait_until(snapshotted, 20, what="a snapshot counted")
    assert value(scrape(node)["gantry_snapshot_written_bytes"], "gantry_snapshot_written_bytes") > 0
    # The --cradle-addr server, registered through the log (heartbeats off: HEALTHY).
    wait_until(lambda: value(scrape(node)["gantry_cradle_servers"], "gantry_cradle_servers",
                             status="HEALTHY") == 1, 10, what="the cradle server counted")


def test_probes_of_a_serving_node(node: NodeProcess) -> None:
    assert get(node, "/livez") == (200, "ok\n")
    assert get(node, "/readyz") == (200, "ok\n")
    assert get(node, "/nothing")[0] == 404


def test_readyz_is_503_until_the_node_is_serving(tmp_path: pathlib.Path) -> None:
    # Two members, one started: no majority, no leader, never SERVING — until the peer comes.
    ports = free_ports(4)
    a = NodeProcess(tmp_path / "a", ports[0], ports[1], [ports[3]], node_id="a")
    b = NodeProcess(tmp_path / "b", ports[2], ports[3], [ports[1]], node_id="b")
    try:
        a.start()
        wait_until(lambda: get(a, "/livez")[0] == 200, 30, what="a's /livez")
        # Fully started (Raft answers, gRPC health reachable), and without its peer it cannot
        # ever have a leader: not ready, for as long as b is down.
        wait_until(lambda: "gantry_raft_role" in scrape(a), 30, what="a's Raft metrics")
        wait_until(lambda: _not_serving(a), 30, what="a's gRPC health NOT_SERVING")
        assert get(a, "/readyz") == (503, "not serving\n")
        m = scrape(a)
        assert value(m["gantry_health_serving"], "gantry_health_serving") == 0
        assert value(m["gantry_raft_has_leader"], "gantry_raft_has_leader") == 0
        assert value(m["gantry_raft_role"], "gantry_raft_role", role="leader") == 0
        assert value(m["gantry_raft_members_reachable"], "gantry_raft_members_reachable") == 1
        b.start()
        for nd in (a, b):
            nd.wait_serving()
            wait_until(lambda nd=nd: get(nd, "/readyz")[0] == 200, 10, what=f"{nd.node_id} ready")
        roles = [value(scrape(nd)["gantry_raft_role"], "gantry_raft_role", role="leader")
                 for nd in (a, b)]
        assert sorted(roles) == [0, 1]
    finally:
        for nd in (a, b):
            assert nd.stop() in (0, None)


def _not_serving(nd: NodeProcess) -> bool:
    """gRPC health answers, NOT_SERVING."""
    r = health_pb2_grpc.HealthStub(nd.channel()).Check(health_pb2.HealthCheckRequest(), timeout=1)
    return bool(r.status == health_pb2.HealthCheckResponse.NOT_SERVING)


def test_a_taken_metrics_port_is_a_clear_start_error(tmp_path: pathlib.Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port, raft = free_ports(2)
        nd = NodeProcess(tmp_path / "node", port, raft, [], node_id="taken")
        nd.metrics_port = holder.getsockname()[1]
        env = {**os.environ, "LOG_FORMAT": "json", "GANTRY_HEARTBEAT_INTERVAL": "0"}
        r = subprocess.run(nd.args(), cwd=str(REPO), env=env, capture_output=True, timeout=60)
    lines = r.stderr.decode(errors="replace").splitlines()
    assert r.returncode == 2, (r.returncode, lines[-5:])
    assert lines == [f"gantry: cannot listen on metrics address 127.0.0.1:{nd.metrics_port}: "
                     "Address already in use (set --metrics-addr / GANTRY_METRICS_ADDR to a free "
                     "HOST:PORT, or off)"], lines


@pytest.mark.parametrize("clash", ["unresolvable", "grpc=raft", "metrics=raft", "alias",
                                   "env"])
def test_listen_addresses_that_cannot_work_are_refused_before_any_file(
        tmp_path: pathlib.Path, clash: str) -> None:
    """`--metrics-addr nohost:1` made the data directory before refusing; `--port` equal to the
    Raft port said only "in use?" of the node's own other listener, and through an alias
    (`localhost` for 127.0.0.1) only after the data directory was made."""
    port, raft = free_ports(2)
    data = tmp_path / "node"
    env = {**os.environ, "LOG_FORMAT": "json", "GANTRY_HEARTBEAT_INTERVAL": "0"}
    raft_addr, grpc_port = f"127.0.0.1:{raft}", port
    metrics = {"unresolvable": "nohost.invalid:1", "metrics=raft": f"0.0.0.0:{raft}"}.get(
        clash, "off")
    if clash == "grpc=raft":
        grpc_port = raft
    elif clash == "alias":
        raft_addr, grpc_port = f"localhost:{raft}", raft
    args = [sys.executable, "-m", "gantry.cli", "serve", "--data-dir", str(data),
            "--metrics-addr", metrics]
    if clash == "env":
        env.update(GANTRY_PORT=str(raft), GANTRY_RAFT_ADDR=raft_addr)
    else:
        args += ["--raft-addr", raft_addr, "--port", str(grpc_port)]
    r = subprocess.run(args, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=60)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1, lines
    expected = {
        "unresolvable": "gantry: cannot listen on metrics address nohost.invalid:1: ",
        "grpc=raft": f"gantry: --port {raft} and --raft-addr {raft_addr} both name port {raft}: ",
        "metrics=raft": f"gantry: --raft-addr {raft_addr} and --metrics-addr 0.0.0.0:{raft} both "
                        f"name port {raft}: ",
        "alias": f"gantry: --port {raft} and --raft-addr {raft_addr} both name port {raft}: ",
        "env": f"gantry: GANTRY_PORT={raft} and GANTRY_RAFT_ADDR={raft_addr} both name port ",
    }
    assert lines[0].startswith(expected[clash]), lines
    assert not data.exists(), "a refused start must leave the disk alone"


def test_an_ipv6_raft_address_is_refused_in_one_line(tmp_path: pathlib.Path) -> None:
    """`--raft-addr [::1]:PORT` passed validation, made the data directory and died with an
    ActorDeadError: pysyncobj's transport resolves IPv4 only."""
    (raft,) = free_ports(1)
    r = subprocess.run([sys.executable, "-m", "gantry.cli", "serve", "--data-dir",
                        str(tmp_path / "node"), "--raft-addr", f"[::1]:{raft}"], cwd=str(REPO),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"gantry: --raft-addr [::1]:{raft}: the Raft transport takes IPv4 addresses and host "
        "names only, not IPv6"], r.stderr
    assert not (tmp_path / "node").exists()


#: Series Prometheus itself makes (``up``: the scrape succeeded), allowed beside the node's own.
PROMETHEUS_OWN = {"up"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (it must parse as PromQL)."""
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _exported(node: NodeProcess) -> set[str]:
    return {s.name for samples in scrape(node).values() for s in samples} | PROMETHEUS_OWN


def test_alert_rules_use_only_exported_metrics(node: NodeProcess) -> None:
    rules = yaml.safe_load((REPO / "ops" / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"GantryNoLeader", "GantryReplicaLag", "GantryRaftLogFsyncSlow",
            "GantryDiskFilling"} <= set(alerts)
    exported = _exported(node)
    for name, rule in alerts.items():
        used = metric_names(rule["expr"])
        assert used, f"{name}: no metric in {rule['expr']!r}"
        assert used <= exported, f"{name} uses metrics no node exports: {used - exported}"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name


def _grafana_to_promql(expr: str) -> str:
    """Grafana's variables replaced by what they stand for, so the expression parses."""
    return (expr.replace("$__rate_interval", "5m").replace("$job", ".*")
            .replace("$instance", ".*"))


def test_dashboard_uses_only_exported_metrics(node: NodeProcess) -> None:
    board = json.loads((REPO / "ops" / "grafana" / "gantry.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    exported = _exported(node) - PROMETHEUS_OWN
    for expr in exprs:
        used = metric_names(_grafana_to_promql(expr))
        assert used and used <= exported, (expr, used - exported)

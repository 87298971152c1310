"""gantry/metrics.py in-process: the HTTP endpoint and probes, the scrape-time collector on a fake
node, the RPC observer, and the ``--metrics-addr`` setting."""

from __future__ import annotations

import argparse
import pathlib
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from gantry import config, metrics
from gantry.actors.raft import RaftStatus
from gantry.db import Watermark
from gantry.state import migrate


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def server() -> Iterator[tuple[metrics.MetricsServer, dict[str, bool], CollectorRegistry]]:
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc(3)
    state = {"ready": False}
    srv = metrics.MetricsServer("127.0.0.1:0", lambda: state["ready"], registry).start()
    try:
        yield srv, state, registry
    finally:
        srv.close()


def test_probes_and_exposition(server: tuple[metrics.MetricsServer, dict[str, bool],
                                             CollectorRegistry]) -> None:
    srv, state, _ = server
    base = f"http://127.0.0.1:{srv.port}"
    assert _get(base + "/livez") == (200, "ok\n")
    assert _get(base + "/readyz") == (503, "not serving\n")
    state["ready"] = True
    assert _get(base + "/readyz") == (200, "ok\n")
    status, text = _get(base + "/metrics")
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["demo_things"].samples[0].value == 3
    assert _get(base + "/other")[0] == 404
    req = urllib.request.Request(base + "/metrics", method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200 and r.read() == b""
    # OpenMetrics when asked for it (as Prometheus does), through prometheus-client's encoder.
    req = urllib.request.Request(base + "/metrics",
                                 headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert r.read().endswith(b"# EOF\n")


def test_a_taken_port_raises_and_close_releases_it() -> None:
    srv = metrics.MetricsServer("127.0.0.1:0", lambda: True).start()
    port = srv.port
    with pytest.raises(OSError):
        metrics.MetricsServer(f"127.0.0.1:{port}", lambda: True)
    srv.close()
    srv.close()  # idempotent
    metrics.MetricsServer(f"127.0.0.1:{port}", lambda: True).close()  # free again


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = metrics.MetricsServer("[::1]:0", lambda: True).start()
    except OSError:
        pytest.skip("::1 not configured")
    try:
        assert _get(f"http://[::1]:{srv.port}/livez")[0] == 200
    finally:
        srv.close()


@dataclass
class FakeNode:
    config: config.Config
    watermark: Watermark = field(default_factory=lambda: Watermark(7))
    proposals: list[Any] = field(default_factory=lambda: [object(), object()])
    queue: list[Any] = field(default_factory=list)
    serving: bool = True
    raft: RaftStatus | None = None

    def status(self) -> RaftStatus:
        if self.raft is None:
            raise TimeoutError("tick thread busy")
        return self.raft


def _collect(node: FakeNode) -> dict[str, list[Any]]:
    registry = CollectorRegistry()
    collector = metrics.NodeCollector(node)
    registry.register(collector)
    try:
        return {f.name: f.samples for f in registry.collect()}
    finally:
        collector.close()


def _raft(role: str = "leader", leader: str | None = "127.0.0.1:1") -> RaftStatus:
    return RaftStatus(node_id="n", raft_addr="127.0.0.1:1", role=role, leader=leader, term=4,
                      commit_index=9, last_applied=9, applied_index=7,
                      members=["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
                      connected=["127.0.0.1:2"], log_size=9, last_snapshot_index=0)


def test_collector_reads_published_state(tmp_path: pathlib.Path) -> None:
    cfg = config.Config(data_dir=tmp_path)
    migrate.upgrade(cfg.database)
    import sqlite3

    conn = sqlite3.connect(cfg.database)
    conn.executemany(
        "INSERT INTO cradle_servers (id, address, status, available_bytes, consecutive_misses, "
        "last_heartbeat_at, created_at, updated_at) VALUES (?, ?, ?, 0, 0, 0, 0, 0)",
        [("a", "h:1", "HEALTHY"), ("b", "h:2", "OFFLINE"), ("c", "h:3", "OFFLINE")])
    conn.commit()
    conn.close()
    m = _collect(FakeNode(cfg, raft=_raft()))
    one = {name: s[0].value for name, s in m.items() if len(s) == 1}
    assert one["gantry_proposals_in_flight"] == 2
    assert one["gantry_raft_applied_index"] == 7
    assert one["gantry_raft_commit_index"] == 9
    assert one["gantry_raft_term"] == 4
    assert one["gantry_raft_has_leader"] == 1
    assert one["gantry_raft_members"] == 3
    assert one["gantry_raft_members_reachable"] == 2  # itself and 127.0.0.1:2
    assert one["gantry_db_size_bytes"] > 0
    assert {s.labels["role"]: s.value for s in m["gantry_raft_role"]} == {
        "follower": 0, "candidate": 0, "leader": 1}
    assert {s.labels["status"]: s.value for s in m["gantry_cradle_servers"]} == {
        "HEALTHY": 1, "DEGRADED": 0, "OFFLINE": 2}
    assert [s.labels["path"] for s in m["gantry_filesystem_avail_bytes"]] == [str(tmp_path)]


def test_collector_leaves_out_what_it_cannot_read(tmp_path: pathlib.Path) -> None:
    # No database yet, Raft not answering: those parts are missing, the rest is exported.
    m = _collect(FakeNode(config.Config(data_dir=tmp_path), serving=False))
    assert "gantry_raft_term" not in m and "gantry_cradle_servers" not in m
    assert m["gantry_health_serving"][0].value == 0
    assert m["gantry_db_size_bytes"][0].value == 0


def test_rpc_observer_counts_by_code() -> None:
    observe = metrics.rpc_observer("test.v1.Svc", "Do")
    before = metrics.REGISTRY.get_sample_value(
        "gantry_rpc_requests_total",
        {"grpc_service": "test.v1.Svc", "grpc_method": "Do", "grpc_code": "OK"}) or 0
    observe(grpc.StatusCode.OK, 0.002)
    observe(grpc.StatusCode.OK, 0.004)
    observe(grpc.StatusCode.NOT_FOUND, 0.001)
    sample = metrics.REGISTRY.get_sample_value
    labels = {"grpc_service": "test.v1.Svc", "grpc_method": "Do"}
    assert sample("gantry_rpc_requests_total", {**labels, "grpc_code": "OK"}) == before + 2
    assert sample("gantry_rpc_requests_total", {**labels, "grpc_code": "NOT_FOUND"}) == 1
    assert sample("gantry_rpc_duration_seconds_count", labels) == 3
    assert sample("gantry_rpc_duration_seconds_bucket", {**labels, "le": "0.0025"}) == 2


def _parse(argv: list[str]) -> config.Config:
    p = argparse.ArgumentParser()
    config.add_serve_arguments(p)
    return config.from_args(p.parse_args(argv), environ={})


def test_metrics_addr_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _parse([]).metrics_addr == "127.0.0.1:9081"
    assert _parse(["--metrics-addr", "0.0.0.0:9100"]).metrics_addr == "0.0.0.0:9100"
    assert _parse(["--metrics-addr", ""]).metrics_addr == ""
    assert _parse(["--metrics-addr", "off"]).metrics_addr == ""
    p = argparse.ArgumentParser()
    config.add_serve_arguments(p)
    # An empty variable counts as unset (as for every variable): "off" disables from the env.
    assert config.from_args(p.parse_args([]), {"GANTRY_METRICS_ADDR": ""}).metrics_addr == (
        "127.0.0.1:9081")
    assert config.from_args(p.parse_args([]), {"GANTRY_METRICS_ADDR": "OFF"}).metrics_addr == ""
    assert config.from_args(p.parse_args([]), {"GANTRY_METRICS_ADDR": "[::1]:9"}).metrics_addr == (
        "[::1]:9")
    for bad in ("9081", "host:", "h:0", "h:99999"):
        with pytest.raises(config.ConfigError, match="--metrics-addr"):
            _parse(["--metrics-addr", bad])


def test_rpc_latency_histogram_adds_what_read_workers_reported() -> None:
    """Main's ``gantry_rpc_duration_seconds`` is its own calls plus its workers' reported
    deltas: bucket by bucket, count and sum; a method only workers answered gets a series of
    its own; a delta of another bucket layout is refused."""
    d = metrics._RpcDurations(metrics.Histogram(
        "t_rpc_seconds", "t", ["grpc_service", "grpc_method"], buckets=metrics._LATENCY_BUCKETS,
        registry=None))
    d._own.labels("s", "Get").observe(0.003)  # bucket le=0.005
    n = len(metrics._LATENCY_BUCKETS) + 1
    d.add("s", "Get", [0.0] * 3 + [2.0] * (n - 3), 0.008)  # two more at le=0.005
    d.add("s", "Only", [1.0] * n, 0.0004)
    with pytest.raises(ValueError):
        d.add("s", "Get", [1.0], 1.0)
    got = {(s.name, s.labels.get("grpc_method"), s.labels.get("le")): s.value
           for f in d.collect() for s in f.samples}
    assert got[("t_rpc_seconds_bucket", "Get", "0.0025")] == 0
    assert got[("t_rpc_seconds_bucket", "Get", "0.005")] == 3
    assert got[("t_rpc_seconds_count", "Get", None)] == 3
    assert got[("t_rpc_seconds_sum", "Get", None)] == pytest.approx(0.011)
    assert got[("t_rpc_seconds_bucket", "Only", "0.0005")] == 1
    assert got[("t_rpc_seconds_count", "Only", None)] == 1

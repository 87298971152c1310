"""ops/bench_vs_etcd.py's arithmetic and table (the benchmark itself is not run here), its etcd
proto subset, and the floor server's fixed replies."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType
from typing import Any

import grpc
import pytest

from tests.support import REPO


def _load(name: str) -> ModuleType:
    """Import ``ops/NAME.py`` without leaving ops/ or the repository on sys.path."""
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(f"ops_{name}", REPO / "ops" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while decorating
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved


@pytest.fixture(scope="module")
def bve() -> Any:
    return _load("bench_vs_etcd")


def _rec(bve: Any, system: str, rnd: int, ops_s: float, cpu: float | None = 1.0, workload: str = "write",
         c: int = 16, errors: dict[str, int] | None = None) -> Any:
    return bve.RunRecord(system=system, workload=workload, c=c, round=rnd, ops=int(ops_s * 5),
                         ops_per_s=ops_s, p50_ms=2.0 * rnd, p99_ms=10.0 * rnd, errors=errors or {},
                         server_cpu_ms_per_op=cpu, server_cores=0.5, client_cpu_pct=30.0 + rnd)


def test_ratios_are_medians_of_per_round_ratios(bve: Any) -> None:
    records = [
        _rec(bve, "etcd", 1, 100.0), _rec(bve, "gantry", 1, 50.0), _rec(bve, "floor", 1, 200.0),
        _rec(bve, "etcd", 2, 400.0), _rec(bve, "gantry", 2, 80.0), _rec(bve, "floor", 2, 100.0),
        _rec(bve, "etcd", 3, 200.0), _rec(bve, "gantry", 3, 60.0), _rec(bve, "floor", 3, 120.0),
    ]
    [row] = bve.summarize(records)
    assert (row.workload, row.c) == ("write", 16)
    assert row.figures["gantry"].ops_per_s == 60.0  # median of 50, 80, 60
    assert row.figures["gantry"].p50_ms == 4.0 and row.figures["gantry"].p99_ms == 20.0
    assert row.gantry_vs_etcd == pytest.approx(0.3)  # per round 0.5, 0.2, 0.3
    assert row.gantry_vs_floor == pytest.approx(0.5)  # per round 0.25, 0.8, 0.5
    assert row.figures["etcd"].runs_ops_per_s == [100.0, 400.0, 200.0]


def test_table_order_missing_system_and_formats(bve: Any) -> None:
    records = [
        _rec(bve, "gantry", 1, 2500.4, cpu=0.4123, workload="linearizable-read", c=1),
        _rec(bve, "gantry", 1, 812.0, cpu=None, workload="write", c=64, errors={"UNAVAILABLE": 2}),
        _rec(bve, "floor", 1, 1624.0, cpu=0.25, workload="write", c=64),
        _rec(bve, "gantry", 1, 700.0, workload="write", c=1),
    ]
    rows = bve.summarize(records)
    assert [(r.workload, r.c) for r in rows] == [("write", 1), ("write", 64), ("linearizable-read", 1)]
    lines = bve.format_table(rows).splitlines()
    assert lines[0].startswith("| workload | c | etcd ops/s | Gantry ops/s | Gantry/etcd | floor ops/s |")
    assert lines[1] == "|" + "---|" * 13
    assert lines[3] == ("| write | 64 | – | 812 | – | 1624 | 0.50 | – | 2.00 / 10.0 | 2.00 / 10.0 "
                        "| – | – | 0.250 |")
    assert lines[4].startswith("| linearizable read | 1 | – | 2500 | – | – | – |")
    assert lines[4].endswith("| – | 0.412 | – |")
    notes = bve.format_notes(records)
    assert "Errors: Gantry UNAVAILABLE=2." in notes
    assert "Gantry 31, floor 31" in notes


def test_fmt_ms(bve: Any) -> None:
    assert [bve.fmt_ms(x) for x in (0.41234, 2.456, 23.44, 143.3, None)] == [
        "0.412", "2.46", "23.4", "143", "–"]


def test_round_order_alternates(bve: Any) -> None:
    systems = ["etcd", "gantry", "floor"]
    assert bve.round_order(systems, 0) == systems
    assert bve.round_order(systems, 1) == ["floor", "gantry", "etcd"]
    assert bve.round_order(systems, 2) == systems


def test_etcd_proto_subset_has_etcds_field_numbers(bve: Any, tmp_path: pathlib.Path) -> None:
    kv = bve.load_etcd_kv(tmp_path)

    def fields(msg: Any) -> list[tuple[str, int]]:
        return [(f.name, f.number) for f in msg.DESCRIPTOR.fields]

    assert kv.DESCRIPTOR.services_by_name["KV"].full_name == "etcdserverpb.KV"
    assert fields(kv.PutRequest) == [("key", 1), ("value", 2)]
    assert fields(kv.RangeRequest) == [("key", 1), ("serializable", 7)]
    assert fields(kv.RangeResponse) == [("count", 4)]
    api = bve.etcd_api(kv)
    assert (api.write.path, api.read.path) == ("/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range")
    assert api.read_request("k", True).serializable and not api.read_request("k", False).serializable


def test_gantry_calls(bve: Any) -> None:
    api = bve.gantry_api()
    assert api.read.path == "/gantry.service.v1.GantryService/GetBucket"
    write = bve.workload_call(api, "write", "run1", [])
    assert write.make_request(3, 7).name == "b-run1-3-7" and write.metadata is None
    local = bve.workload_call(api, "local-read", "run1", ["only"])
    assert local.make_request(0, 0).name == "only"
    assert local.metadata == (("x-gantry-consistency", "stale"),)
    assert bve.workload_call(api, "linearizable-read", "run1", ["only"]).metadata is None


def test_floor_server_answers_fixed_replies() -> None:
    floor = _load("floor_server")
    from gantry.pb.service.v1 import service_pb2 as svc
    from gantry.pb.service.v1 import service_pb2_grpc

    server, port = floor.build_server("127.0.0.1", 0)
    assert port
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = service_pb2_grpc.GantryServiceStub(ch)
            got = stub.CreateBucket(svc.CreateBucketRequest(name="anything"), timeout=5)
            assert got.bucket == floor.FIXED_BUCKET
            assert stub.GetBucket(svc.GetBucketRequest(name="x"), timeout=5).bucket == floor.FIXED_BUCKET
            with pytest.raises(grpc.RpcError) as err:
                stub.ListBuckets(svc.ListBucketsRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(0).wait()


def test_base_columns_only_with_base_figures(bve: Any) -> None:
    records = [_rec(bve, "gantry", 1, 900.0, workload="write", c=16),
               _rec(bve, "base", 1, 600.0, workload="write", c=16),
               _rec(bve, "gantry", 2, 1000.0, workload="write", c=16),
               _rec(bve, "base", 2, 400.0, workload="write", c=16)]
    [row] = bve.summarize(records)
    assert row.gantry_vs_base == pytest.approx(2.0)  # per round 1.5, 2.5
    lines = bve.format_table([row]).splitlines()
    assert "| base ops/s | Gantry/base |" in lines[0] and lines[0].endswith("| base CPU ms/op |")
    assert lines[2].startswith("| write | 16 | – | 950 | – | – | – | 500 | 2.00 |")
    assert "base" not in bve.format_table(bve.summarize(records[:1])).splitlines()[0]

"""Closed-loop load generator for Gantry's public gRPC API (``gantry.service.v1``), on grpc.aio.

Usage::

    python ops/bench.py --targets 127.0.0.1:8081[,HOST:PORT...] \\
        --workload create-bucket|plan-commit --concurrency 16 --duration 10 [--warmup 2] [--json] \\
        [--timeout 5] [--size 4096] [--bucket NAME] [--request-id] [--processes N]

Exit status 0 when every measured op succeeded, 1 when any failed, 2 on bad flags.

``--concurrency`` workers are spread over the targets round-robin (worker *i* talks to target
``i % len(targets)``); each worker sends one request at a time and sends the next as soon as the
previous one finished (a closed loop, so the offered load follows the cluster's latency).

Workloads:

``create-bucket``
    ``CreateBucket`` with a name unique per run, worker and iteration. One op = one RPC.
``plan-commit``
    One bucket is created for the run first; then each op is ``PlanWrite(bucket, random key,
    size)`` followed by ``CommitObject(object_id, size, now)``. One op = the pair; the latency is
    the pair's. Needs a registered storage server (start the node with ``--cradle-addr``), or
    every PlanWrite fails with ``FAILED_PRECONDITION``.

Ops finishing during the first ``--warmup`` seconds are not counted; the measured window is the
``--duration`` seconds after that. Every call carries a deadline (``--timeout``); with
``--request-id`` it also carries a fresh ``x-request-id``, as a client that retries would send
(the node then stores it for deduplication, which costs a little per write). The report has
total ops, ops/s, latency p50/p90/p99/max in ms, errors by status code, and the client's own CPU
use: a client near 100 % of one core is measuring itself, not the node — add ``--processes``.

Run it with the project's interpreter (``.venv/bin/python``): the stubs come from ``gantry.pb``,
found through the repository root, so the working directory does not matter.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import multiprocessing
import pathlib
import resource
import secrets
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from gantry.pb.service.v1 import service_pb2 as svc  # noqa: E402
from gantry.pb.service.v1 import service_pb2_grpc  # noqa: E402

WORKLOADS = ("create-bucket", "plan-commit")


@dataclass
class WorkerStats:
    """What one worker measured inside the measured window."""

    target: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    warmup_ops: int = 0


@dataclass
class RunSpec:
    """The parameters one bench process runs with (picklable, for ``--processes``)."""

    targets: list[str]
    workload: str
    concurrency: int
    duration_s: float
    warmup_s: float
    timeout_s: float
    size: int
    run_id: str
    bucket: str
    worker_offset: int = 0
    create_bucket: bool = True
    request_ids: bool = False  # send a fresh x-request-id with every call (server-side dedupe)
    start_at: float = 0.0  # time.time() at which the workers start (aligns several processes)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile ``p`` (0–100) of an already sorted list; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    if isinstance(exc, TimeoutError):
        return "CLIENT_TIMEOUT"
    return type(exc).__name__


def _md(spec: RunSpec) -> tuple[tuple[str, str], ...] | None:
    return (("x-request-id", uuid.uuid4().hex),) if spec.request_ids else None


async def _one_op(stub: service_pb2_grpc.GantryServiceStub, spec: RunSpec, worker: int,
                  iteration: int) -> None:
    """Run one op of ``spec.workload``; raises the RPC error on failure."""
    if spec.workload == "create-bucket":
        name = f"b-{spec.run_id}-{worker}-{iteration}"
        await stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=spec.timeout_s,
                                metadata=_md(spec))
        return
    key = f"bench/{worker}/{secrets.token_hex(8)}"
    plan = await stub.PlanWrite(svc.PlanWriteRequest(bucket=spec.bucket, key=key, size=spec.size),
                                timeout=spec.timeout_s, metadata=_md(spec))
    await stub.CommitObject(
        svc.CommitObjectRequest(object_id=plan.write_plan.object_id, size=spec.size,
                                last_modified_ms=int(time.time() * 1000)),
        timeout=spec.timeout_s, metadata=_md(spec),
    )


async def _worker(stub: service_pb2_grpc.GantryServiceStub, spec: RunSpec, worker: int,
                  measure_from: float, end: float, stats: WorkerStats) -> None:
    iteration = 0
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            return
        err: BaseException | None = None
        try:
            await _one_op(stub, spec, worker, iteration)
        except (grpc.aio.AioRpcError, TimeoutError) as e:
            err = e
        t1 = time.perf_counter()
        iteration += 1
        if t1 > end:
            return  # finished after the window closed: neither counted nor an error
        if t1 < measure_from:
            stats.warmup_ops += 1
        elif err is None:
            stats.latencies_ms.append((t1 - t0) * 1000.0)
        else:
            stats.errors[_code_of(err)] += 1
        if err is not None:
            # Do not spin on a node that is down; the pause is short next to any deadline.
            await asyncio.sleep(0.01)


async def _ensure_bucket(stub: service_pb2_grpc.GantryServiceStub, name: str, timeout_s: float) -> None:
    try:
        await stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=timeout_s)
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


async def run_async(spec: RunSpec) -> dict[str, Any]:
    """Run ``spec`` in this process's event loop; return raw latencies, errors and timings."""
    channels = [grpc.aio.insecure_channel(t) for t in spec.targets]
    try:
        for t, ch in zip(spec.targets, channels, strict=True):
            try:
                await asyncio.wait_for(ch.channel_ready(), timeout=spec.timeout_s)
            except TimeoutError:
                raise SystemExit(f"bench: cannot connect to {t} within {spec.timeout_s}s") from None
        stubs = [service_pb2_grpc.GantryServiceStub(ch) for ch in channels]
        if spec.workload == "plan-commit" and spec.create_bucket:
            await _ensure_bucket(stubs[0], spec.bucket, spec.timeout_s)
        stats = [WorkerStats(target=spec.targets[(spec.worker_offset + i) % len(stubs)])
                 for i in range(spec.concurrency)]
        if spec.start_at:
            await asyncio.sleep(max(0.0, spec.start_at - time.time()))
        start = time.perf_counter()
        measure_from = start + spec.warmup_s
        end = measure_from + spec.duration_s
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        tasks = []
        for i in range(spec.concurrency):
            w = spec.worker_offset + i
            tasks.append(asyncio.create_task(
                _worker(stubs[w % len(stubs)], spec, w, measure_from, end, stats[i])))
        await asyncio.gather(*tasks)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - start
    finally:
        for ch in channels:
            await ch.close()
    by_target: dict[str, dict[str, Any]] = {}
    for s in stats:
        agg = by_target.setdefault(s.target, {"latencies_ms": [], "errors": Counter(), "warmup_ops": 0})
        agg["latencies_ms"].extend(s.latencies_ms)
        agg["errors"].update(s.errors)
        agg["warmup_ops"] += s.warmup_ops
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"by_target": by_target, "client_cpu_s": cpu, "wall_s": wall}


def _run_in_process(spec: RunSpec) -> dict[str, Any]:
    return asyncio.run(run_async(spec))


async def _prepare_bucket(spec: RunSpec) -> None:
    async with grpc.aio.insecure_channel(spec.targets[0]) as ch:
        await _ensure_bucket(service_pb2_grpc.GantryServiceStub(ch), spec.bucket, spec.timeout_s)


def _latency_summary(lat: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of a sorted latency list, in ms."""
    return {
        "p50": round(percentile(lat, 50), 3),
        "p90": round(percentile(lat, 90), 3),
        "p99": round(percentile(lat, 99), 3),
        "max": round(lat[-1], 3) if lat else 0.0,
        "mean": round(sum(lat) / len(lat), 3) if lat else 0.0,
    }


def summarize(spec: RunSpec, parts: list[dict[str, Any]], processes: int) -> dict[str, Any]:
    """Merge per-process results into the report dictionary (overall and per target)."""
    merged: dict[str, dict[str, Any]] = {}
    for p in parts:
        for target, t in p["by_target"].items():
            m = merged.setdefault(target, {"latencies_ms": [], "errors": Counter(), "warmup_ops": 0})
            m["latencies_ms"].extend(t["latencies_ms"])
            m["errors"].update(t["errors"])
            m["warmup_ops"] += t["warmup_ops"]
    lat = sorted(x for m in merged.values() for x in m["latencies_ms"])
    errors: Counter[str] = Counter()
    for m in merged.values():
        errors.update(m["errors"])
    ops = len(lat)
    wall = max((p["wall_s"] for p in parts), default=0.0)
    cpu = sum(p["client_cpu_s"] for p in parts)
    per_target = {}
    for target in spec.targets:
        got = merged.get(target)
        if got is None:
            continue  # fewer workers than targets
        tl = sorted(got["latencies_ms"])
        per_target[target] = {
            "ops": len(tl),
            "ops_per_s": round(len(tl) / spec.duration_s, 1),
            "latency_ms": _latency_summary(tl),
            "errors": dict(sorted(got["errors"].items())),
        }
    return {
        "workload": spec.workload,
        "targets": spec.targets,
        "concurrency": spec.concurrency,
        "processes": processes,
        "duration_s": spec.duration_s,
        "warmup_s": spec.warmup_s,
        "timeout_s": spec.timeout_s,
        "ops": ops,
        "ops_per_s": round(ops / spec.duration_s, 1) if spec.duration_s > 0 else 0.0,
        "latency_ms": _latency_summary(lat),
        "errors": dict(sorted(errors.items())),
        "error_total": sum(errors.values()),
        "warmup_ops": sum(m["warmup_ops"] for m in merged.values()),
        # Share of one core the client used over the whole run (warm-up included).
        "client_cpu_pct": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
        "bucket": spec.bucket if spec.workload == "plan-commit" else None,
        "request_ids": spec.request_ids,
        "per_target": per_target,
    }


def format_report(r: dict[str, Any]) -> str:
    """Human-readable report."""
    lat = r["latency_ms"]
    lines = [
        f"workload     {r['workload']}  targets={','.join(r['targets'])}",
        f"concurrency  {r['concurrency']} (processes={r['processes']})  duration={r['duration_s']}s "
        f"warmup={r['warmup_s']}s  deadline={r['timeout_s']}s  request-ids={r['request_ids']}",
        f"ops          {r['ops']}  ({r['ops_per_s']} ops/s)",
        f"latency ms   p50={lat['p50']}  p90={lat['p90']}  p99={lat['p99']}  max={lat['max']}  "
        f"mean={lat['mean']}",
        "errors       " + (", ".join(f"{k}={v}" for k, v in r["errors"].items()) or "none"),
        f"client cpu   {r['client_cpu_pct']}% of one core",
    ]
    if r["bucket"]:
        lines.append(f"bucket       {r['bucket']}")
    if len(r["per_target"]) > 1:
        for target, t in r["per_target"].items():
            tl = t["latency_ms"]
            errs = ",".join(f"{k}={v}" for k, v in t["errors"].items()) or "0"
            lines.append(f"  {target:<21} ops={t['ops']} ({t['ops_per_s']}/s) p50={tl['p50']} "
                         f"p99={tl['p99']} errors={errs}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description="Closed-loop load generator for Gantry's gRPC API.")
    p.add_argument("--targets", default="127.0.0.1:8081",
                   help="comma-separated HOST:PORT list of nodes (default 127.0.0.1:8081)")
    p.add_argument("--workload", choices=WORKLOADS, default="create-bucket")
    p.add_argument("--concurrency", type=int, default=16, help="workers in total (default 16)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first (default 2)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-call deadline, seconds (default 5)")
    p.add_argument("--size", type=int, default=4096, help="object size for plan-commit (default 4096)")
    p.add_argument("--bucket", default="",
                   help="bucket for plan-commit (default bench-RUNID; created if missing)")
    p.add_argument("--request-id", action="store_true",
                   help="send a fresh x-request-id with every call, as a retrying client would "
                        "(the node then records it for dedupe)")
    p.add_argument("--processes", type=int, default=1,
                   help="client processes sharing the workers, for when one client core is the "
                        "bottleneck (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the benchmark, print the report. Exit 1 if any op failed, 2 on bad flags."""
    ns = build_parser().parse_args(argv)
    targets = [t.strip() for t in ns.targets.split(",") if t.strip()]
    if not targets:
        print("bench: --targets is empty", file=sys.stderr)
        return 2
    if ns.concurrency < 1 or ns.duration <= 0 or ns.warmup < 0 or ns.timeout <= 0:
        print("bench: need --concurrency ≥ 1, --duration > 0, --warmup ≥ 0, --timeout > 0",
              file=sys.stderr)
        return 2
    processes = max(1, min(ns.processes, ns.concurrency))
    run_id = secrets.token_hex(4)
    spec = RunSpec(targets=targets, workload=ns.workload, concurrency=ns.concurrency,
                   duration_s=ns.duration, warmup_s=ns.warmup, timeout_s=ns.timeout, size=ns.size,
                   run_id=run_id, bucket=ns.bucket or f"bench-{run_id}", request_ids=ns.request_id)
    if processes == 1:
        parts = [_run_in_process(spec)]
    else:
        if spec.workload == "plan-commit":
            asyncio.run(_prepare_bucket(spec))
        specs = []
        base, extra = divmod(spec.concurrency, processes)
        offset = 0
        start_at = time.time() + 3.0  # room for the spawned interpreters to import grpc
        for i in range(processes):
            n = base + (1 if i < extra else 0)
            specs.append(dataclasses.replace(spec, concurrency=n, worker_offset=offset,
                                             create_bucket=False, start_at=start_at))
            offset += n
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes) as pool:
            parts = pool.map(_run_in_process, specs)
    report = summarize(spec, parts, processes)
    if ns.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    sys.stdout.flush()
    return 1 if report["error_total"] else 0


if __name__ == "__main__":
    sys.exit(main())

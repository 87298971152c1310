"""Closed-loop load generator for Gantry's public gRPC API (``gantry.service.v1``), on grpc.aio.

Usage::

    python ops/bench.py --targets 127.0.0.1:8081[,HOST:PORT...] \\
        --workload create-bucket|plan-commit|get-bucket|head-object|list-objects \\
        --concurrency 16 --duration 10 [--warmup 2] [--json] [--timeout 5] [--size 4096] \\
        [--bucket NAME] [--request-id] [--processes N] [--channels K] \\
        [--consistency stale|linearizable|min-index] [--buckets 100] [--objects 1000] \\
        [--page-size 1000] [--prefix P] [--delimiter D] \\
        [--tls-ca CA.pem [--tls-cert C.pem --tls-key C.key]]

Exit status 0 when every measured op succeeded, 1 when any failed, 2 on bad flags.

``--concurrency`` workers are spread over the targets round-robin (worker *i* talks to target
``i % len(targets)``); with ``--channels K`` each process opens K channels per target, each with
a TCP connection of its own (``grpc.use_local_subchannel_pool``), and worker *i* uses its
target's channel ``(i // len(targets)) % K`` — a node with ``--read-workers`` spreads
connections, not calls, over its processes, so one channel would load one process. Each worker
sends one request at a time and sends the next as soon as the previous one finished (a closed
loop, so the offered load follows the cluster's latency).

Workloads:

``create-bucket``
    ``CreateBucket`` with a name unique per run, worker and iteration. One op = one RPC.
``plan-commit``
    One bucket is created for the run first; then each op is ``PlanWrite(bucket, random key,
    size)`` followed by ``CommitObject(object_id, size, now)``. One op = the pair; the latency is
    the pair's. Needs a registered storage server (start the node with ``--cradle-addr``), or
    every PlanWrite fails with ``FAILED_PRECONDITION``.
``get-bucket``
    Setup creates ``--buckets`` buckets (default 100; with ``--bucket``, that one existing bucket
    is used instead); each op is one ``GetBucket`` of a random one of them.
``head-object``
    Setup creates a bucket holding ``--objects`` COMMITTED objects (default 1000, through
    PlanWrite + CommitObject, so it needs a storage server like ``plan-commit``); with
    ``--bucket``, the first ``--objects`` keys of that existing bucket are listed instead. Each op
    is one ``HeadObject`` of a random one of those keys.
``list-objects``
    Setup creates a bucket of ``--objects`` objects like ``head-object``, or uses the existing
    ``--bucket`` as it is (e.g. one seeded with ``ops/seed_objects.py``). Each op is one
    ``ListObjects`` page of ``--page-size`` keys (default 1000, the API's maximum), optionally
    under ``--prefix`` / rolled up at ``--delimiter``: every worker walks the listing from its
    start through the continuation tokens and starts over after the last page. The report adds
    the keys returned per second and per page.

The read workloads send the consistency level of ``--consistency`` as gRPC metadata on every
call (see ``gantry/api/reads.py``): ``linearizable`` (the default; ``x-gantry-consistency:
linearizable``, a read index through the Raft log), ``stale`` (``x-gantry-consistency: stale``,
the node's local state at once) or ``min-index`` (``x-gantry-min-log-index: N``, read-your-writes:
N is the ``x-gantry-log-index`` trailing metadata of one write made at the end of setup). Setup
always ends with that write (``CreateBucket bench-RUNID-idx``) and then waits, through a
``min-index`` read on every target, until every target applied it — so no target serves the
measured reads before it holds what setup wrote. Setup runs once, in the first process, before
the warm-up; it is not measured.

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
import random
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

from gantry import tlsconfig  # noqa: E402
from gantry.pb.service.v1 import service_pb2 as svc  # noqa: E402
from gantry.pb.service.v1 import service_pb2_grpc  # noqa: E402

WORKLOADS = ("create-bucket", "plan-commit", "get-bucket", "head-object", "list-objects")
READ_WORKLOADS = ("get-bucket", "head-object", "list-objects")
CONSISTENCY_LEVELS = ("linearizable", "stale", "min-index")
CONSISTENCY_KEY = "x-gantry-consistency"
MIN_INDEX_KEY = "x-gantry-min-log-index"
LOG_INDEX_KEY = "x-gantry-log-index"
#: Concurrent setup writes (bucket creation, PlanWrite + CommitObject pairs).
SETUP_CONCURRENCY = 32


@dataclass
class WorkerStats:
    """What one worker measured inside the measured window."""

    target: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    warmup_ops: int = 0
    items: int = 0  # keys + common prefixes returned by measured list-objects ops


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
    # Read workloads.
    consistency: str = "linearizable"  # linearizable | stale | min-index
    min_index: int = 0  # x-gantry-min-log-index sent with min-index (set by setup)
    setup_buckets: int = 100  # get-bucket: buckets to create
    setup_objects: int = 1000  # head-object / list-objects: objects to create (or keys to list)
    reuse_bucket: bool = False  # --bucket given: use that existing bucket, create nothing in it
    page_size: int = 1000
    prefix: str = ""
    delimiter: str = ""
    buckets: list[str] = field(default_factory=list)  # get-bucket: names to read (set by setup)
    keys: list[str] = field(default_factory=list)  # head-object: keys to read (set by setup)
    setup_s: float = 0.0
    client: tlsconfig.ClientConfig = tlsconfig.PLAINTEXT  # --tls-ca/--tls-cert/--tls-key
    channels: int = 1  # per target and process, each its own connection (--channels)


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


def consistency_metadata(level: str, min_index: int) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that asks for read consistency ``level`` (see ``gantry/api/reads.py``)."""
    if level == "min-index":
        return ((MIN_INDEX_KEY, str(min_index)),)
    return ((CONSISTENCY_KEY, level),)


def _read_md(spec: RunSpec) -> tuple[tuple[str, str], ...]:
    md = consistency_metadata(spec.consistency, spec.min_index)
    return md + (("x-request-id", uuid.uuid4().hex),) if spec.request_ids else md


async def _one_op(stub: service_pb2_grpc.GantryServiceStub, spec: RunSpec, worker: int,
                  iteration: int, state: dict[str, Any]) -> int:
    """Run one op of ``spec.workload``; raises the RPC error on failure. Returns the keys plus
    common prefixes a list-objects page returned (0 for the other workloads). ``state`` is the
    worker's own (list-objects keeps its continuation token there)."""
    if spec.workload == "get-bucket":
        await stub.GetBucket(svc.GetBucketRequest(name=random.choice(spec.buckets)),
                             timeout=spec.timeout_s, metadata=_read_md(spec))
        return 0
    if spec.workload == "head-object":
        await stub.HeadObject(svc.HeadObjectRequest(bucket=spec.bucket, key=random.choice(spec.keys)),
                              timeout=spec.timeout_s, metadata=_read_md(spec))
        return 0
    if spec.workload == "list-objects":
        resp = await stub.ListObjects(
            svc.ListObjectsRequest(bucket=spec.bucket, prefix=spec.prefix, delimiter=spec.delimiter,
                                   max_keys=spec.page_size,
                                   continuation_token=state.get("token", "")),
            timeout=spec.timeout_s, metadata=_read_md(spec))
        state["token"] = resp.next_continuation_token if resp.is_truncated else ""
        return int(resp.key_count)
    if spec.workload == "create-bucket":
        name = f"b-{spec.run_id}-{worker}-{iteration}"
        await stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=spec.timeout_s,
                                metadata=_md(spec))
        return 0
    key = f"bench/{worker}/{secrets.token_hex(8)}"
    plan = await stub.PlanWrite(svc.PlanWriteRequest(bucket=spec.bucket, key=key, size=spec.size),
                                timeout=spec.timeout_s, metadata=_md(spec))
    await stub.CommitObject(
        svc.CommitObjectRequest(object_id=plan.write_plan.object_id, size=spec.size,
                                last_modified_ms=int(time.time() * 1000)),
        timeout=spec.timeout_s, metadata=_md(spec),
    )
    return 0


async def _worker(stub: service_pb2_grpc.GantryServiceStub, spec: RunSpec, worker: int,
                  measure_from: float, end: float, stats: WorkerStats) -> None:
    iteration = 0
    state: dict[str, Any] = {}
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            return
        err: BaseException | None = None
        items = 0
        try:
            items = await _one_op(stub, spec, worker, iteration, state)
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
            stats.items += items
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


async def _bounded(n: int, coros: list[Any]) -> None:
    """Await ``coros`` with at most ``n`` in flight; the first failure propagates."""
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> None:
        async with sem:
            await c

    await asyncio.gather(*(one(c) for c in coros))


async def _put_object(stub: service_pb2_grpc.GantryServiceStub, bucket: str, key: str, size: int,
                      timeout_s: float) -> None:
    plan = await stub.PlanWrite(svc.PlanWriteRequest(bucket=bucket, key=key, size=size),
                                timeout=timeout_s)
    await stub.CommitObject(
        svc.CommitObjectRequest(object_id=plan.write_plan.object_id, size=size,
                                last_modified_ms=int(time.time() * 1000)), timeout=timeout_s)


async def _list_keys(stub: service_pb2_grpc.GantryServiceStub, bucket: str, prefix: str, limit: int,
                     timeout_s: float) -> list[str]:
    """The first ``limit`` keys of ``bucket`` under ``prefix`` (stale reads, paged)."""
    keys: list[str] = []
    token = ""
    while len(keys) < limit:
        resp = await stub.ListObjects(
            svc.ListObjectsRequest(bucket=bucket, prefix=prefix, continuation_token=token,
                                   max_keys=min(1000, limit - len(keys))),
            timeout=timeout_s, metadata=consistency_metadata("stale", 0))
        keys.extend(c.key for c in resp.contents)
        if not resp.is_truncated:
            break
        token = resp.next_continuation_token
    return keys


async def _marker_write(stub: service_pb2_grpc.GantryServiceStub, name: str, timeout_s: float) -> int:
    """Create bucket ``name`` (or find it exists); return the ``x-gantry-log-index`` the write
    reply carried in its trailing metadata."""
    call = stub.CreateBucket(svc.CreateBucketRequest(name=name), timeout=timeout_s)
    try:
        await call
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    for k, v in await call.trailing_metadata() or ():
        if k == LOG_INDEX_KEY:
            return int(v)
    raise SystemExit(f"bench: the write reply carried no {LOG_INDEX_KEY} trailing metadata")


async def prepare(spec: RunSpec) -> RunSpec:
    """Run the workload's setup against the first target (see the module docstring) and return
    the spec the workers run with: buckets / keys to read, the min-index, ``create_bucket`` off.

    Raises SystemExit with a message when setup fails."""
    t0 = time.perf_counter()
    try:
        async with spec.client.aio_channel(spec.targets[0]) as ch:
            try:
                await asyncio.wait_for(ch.channel_ready(), timeout=spec.timeout_s)
            except TimeoutError:
                raise SystemExit(f"bench: cannot connect to {spec.targets[0]} within "
                                 f"{spec.timeout_s}s") from None
            stub = service_pb2_grpc.GantryServiceStub(ch)
            spec = await _setup(stub, spec)
        if spec.workload in READ_WORKLOADS:
            await _sync_targets(spec)
    except grpc.aio.AioRpcError as e:
        raise SystemExit(f"bench: setup failed: {e.code().name}: {e.details()}") from None
    return dataclasses.replace(spec, create_bucket=False, setup_s=time.perf_counter() - t0)


async def _setup(stub: service_pb2_grpc.GantryServiceStub, spec: RunSpec) -> RunSpec:
    to = spec.timeout_s
    if spec.workload == "plan-commit":
        await _ensure_bucket(stub, spec.bucket, to)
        return spec
    if spec.workload not in READ_WORKLOADS:
        return spec
    if spec.workload == "get-bucket":
        if spec.reuse_bucket:
            await stub.GetBucket(svc.GetBucketRequest(name=spec.bucket), timeout=to,
                                 metadata=consistency_metadata("stale", 0))
            spec = dataclasses.replace(spec, buckets=[spec.bucket])
        else:
            names = [f"bench-{spec.run_id}-g{i}" for i in range(spec.setup_buckets)]
            await _bounded(SETUP_CONCURRENCY, [_ensure_bucket(stub, n, to) for n in names])
            spec = dataclasses.replace(spec, buckets=names)
    elif spec.reuse_bucket:
        if spec.workload == "head-object":
            keys = await _list_keys(stub, spec.bucket, spec.prefix, spec.setup_objects, to)
            if not keys:
                raise SystemExit(f"bench: bucket {spec.bucket!r} has no objects to head")
            spec = dataclasses.replace(spec, keys=keys)
        else:
            await _list_keys(stub, spec.bucket, spec.prefix, 1, to)  # exists?
    else:
        await _ensure_bucket(stub, spec.bucket, to)
        width = len(str(max(1, spec.setup_objects - 1)))
        keys = [f"d{i // 100:04d}/obj-{i:0{width}d}" for i in range(spec.setup_objects)]
        await _bounded(SETUP_CONCURRENCY, [_put_object(stub, spec.bucket, k, spec.size, to)
                                           for k in keys])
        spec = dataclasses.replace(spec, keys=keys if spec.workload == "head-object" else [])
    index = await _marker_write(stub, f"bench-{spec.run_id}-idx", to)
    return dataclasses.replace(spec, min_index=index)


async def _sync_targets(spec: RunSpec) -> None:
    """Wait until every target applied log index ``spec.min_index`` (a min-index read each)."""
    for t in spec.targets:
        async with spec.client.aio_channel(t) as ch:
            await service_pb2_grpc.GantryServiceStub(ch).GetBucket(
                svc.GetBucketRequest(name=f"bench-{spec.run_id}-idx"), timeout=spec.timeout_s,
                metadata=consistency_metadata("min-index", spec.min_index))


async def run_async(spec: RunSpec) -> dict[str, Any]:
    """Run ``spec`` in this process's event loop; return raw latencies, errors and timings."""
    own = (("grpc.use_local_subchannel_pool", 1),) if spec.channels > 1 else ()
    # Channel j of target t is channels[j * len(targets) + t]: worker w talks to target
    # w % len(targets) over its channel (w // len(targets)) % K.
    channels = [spec.client.aio_channel(t, options=own)
                for _ in range(spec.channels) for t in spec.targets]
    try:
        for i, ch in enumerate(channels):
            try:
                await asyncio.wait_for(ch.channel_ready(), timeout=spec.timeout_s)
            except TimeoutError:
                raise SystemExit(f"bench: cannot connect to {spec.targets[i % len(spec.targets)]}"
                                 f" within {spec.timeout_s}s") from None
        stubs = [service_pb2_grpc.GantryServiceStub(ch) for ch in channels]
        if spec.workload == "plan-commit" and spec.create_bucket:
            await _ensure_bucket(stubs[0], spec.bucket, spec.timeout_s)
        stats = [WorkerStats(target=spec.targets[(spec.worker_offset + i) % len(spec.targets)])
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
            nt = len(spec.targets)
            stub = stubs[((w // nt) % spec.channels) * nt + w % nt]
            tasks.append(asyncio.create_task(
                _worker(stub, spec, w, measure_from, end, stats[i])))
        await asyncio.gather(*tasks)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - start
    finally:
        for ch in channels:
            await ch.close()
    by_target: dict[str, dict[str, Any]] = {}
    for s in stats:
        agg = by_target.setdefault(s.target, {"latencies_ms": [], "errors": Counter(), "warmup_ops": 0,
                                              "items": 0})
        agg["latencies_ms"].extend(s.latencies_ms)
        agg["errors"].update(s.errors)
        agg["warmup_ops"] += s.warmup_ops
        agg["items"] += s.items
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"by_target": by_target, "client_cpu_s": cpu, "wall_s": wall}


def _run_in_process(spec: RunSpec) -> dict[str, Any]:
    return asyncio.run(run_async(spec))


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
            m = merged.setdefault(target, {"latencies_ms": [], "errors": Counter(), "warmup_ops": 0,
                                           "items": 0})
            m["latencies_ms"].extend(t["latencies_ms"])
            m["errors"].update(t["errors"])
            m["warmup_ops"] += t["warmup_ops"]
            m["items"] += t.get("items", 0)
    lat = sorted(x for m in merged.values() for x in m["latencies_ms"])
    errors: Counter[str] = Counter()
    for m in merged.values():
        errors.update(m["errors"])
    ops = len(lat)
    items = sum(m["items"] for m in merged.values())
    reads = spec.workload in READ_WORKLOADS
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
        "channels": spec.channels,
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
        "bucket": spec.bucket if spec.workload in ("plan-commit", "head-object", "list-objects")
        else None,
        "request_ids": spec.request_ids,
        "per_target": per_target,
        # Read workloads only (None otherwise).
        "consistency": spec.consistency if reads else None,
        "min_log_index": spec.min_index if reads and spec.consistency == "min-index" else None,
        "setup": ({"s": round(spec.setup_s, 2), "buckets": len(spec.buckets), "keys": len(spec.keys),
                   "reused_bucket": spec.reuse_bucket,
                   "created_objects": 0 if spec.reuse_bucket or spec.workload == "get-bucket"
                   else spec.setup_objects} if reads else None),
        "page_size": spec.page_size if spec.workload == "list-objects" else None,
        "keys_returned": items if spec.workload == "list-objects" else None,
        "keys_per_s": (round(items / spec.duration_s, 1)
                       if spec.workload == "list-objects" and spec.duration_s > 0 else None),
        "keys_per_page": (round(items / ops, 1) if spec.workload == "list-objects" and ops else None),
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
    if r.get("consistency"):
        extra = f"  x-gantry-min-log-index={r['min_log_index']}" if r["min_log_index"] else ""
        su = r["setup"]
        lines.append(f"consistency  {r['consistency']}{extra}")
        lines.append(f"setup        {su['s']}s  buckets={su['buckets']} keys={su['keys']} "
                     f"created-objects={su['created_objects']} reused-bucket={su['reused_bucket']}")
    if r.get("page_size") is not None:
        lines.append(f"pages        page-size={r['page_size']}  keys={r['keys_returned']} "
                     f"({r['keys_per_s']} keys/s, {r['keys_per_page']} per page)")
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
    p.add_argument("--size", type=int, default=4096, help="object size for plan-commit and for the objects "
                        "head-object/list-objects setup creates (default 4096)")
    p.add_argument("--bucket", default="",
                   help="bucket for plan-commit (default bench-RUNID; created if missing); for the "
                        "read workloads, an existing bucket to read instead of creating one")
    p.add_argument("--consistency", choices=CONSISTENCY_LEVELS, default="linearizable",
                   help="read workloads: consistency level sent as metadata (default linearizable)")
    p.add_argument("--buckets", type=int, default=100,
                   help="get-bucket: buckets created in setup (default 100)")
    p.add_argument("--objects", type=int, default=1000,
                   help="head-object/list-objects: objects created in setup (default 1000); "
                        "head-object with --bucket: keys listed to choose from")
    p.add_argument("--page-size", type=int, default=1000,
                   help="list-objects: max_keys per page, 1..1000 (default 1000)")
    p.add_argument("--prefix", default="", help="list-objects/head-object --bucket: key prefix")
    p.add_argument("--delimiter", default="", help="list-objects: delimiter (default none)")
    p.add_argument("--request-id", action="store_true",
                   help="send a fresh x-request-id with every call, as a retrying client would "
                        "(the node then records it for dedupe)")
    p.add_argument("--processes", type=int, default=1,
                   help="client processes sharing the workers, for when one client core is the "
                        "bottleneck (default 1)")
    p.add_argument("--channels", type=int, default=1,
                   help="channels per target in each process, each with its own connection "
                        "(default 1; a node with --read-workers spreads connections)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    tlsconfig.add_client_arguments(p)
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
    if ns.buckets < 1 or ns.objects < 1 or not 1 <= ns.page_size <= 1000:
        print("bench: need --buckets ≥ 1, --objects ≥ 1, 1 ≤ --page-size ≤ 1000", file=sys.stderr)
        return 2
    try:
        client = tlsconfig.client_from_args(ns)
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    processes = max(1, min(ns.processes, ns.concurrency))
    run_id = secrets.token_hex(4)
    spec = RunSpec(targets=targets, workload=ns.workload, concurrency=ns.concurrency,
                   duration_s=ns.duration, warmup_s=ns.warmup, timeout_s=ns.timeout, size=ns.size,
                   run_id=run_id, bucket=ns.bucket or f"bench-{run_id}", request_ids=ns.request_id,
                   consistency=ns.consistency, setup_buckets=ns.buckets, setup_objects=ns.objects,
                   reuse_bucket=bool(ns.bucket), page_size=ns.page_size, prefix=ns.prefix,
                   delimiter=ns.delimiter, client=client, channels=max(1, ns.channels))
    spec = asyncio.run(prepare(spec))
    if processes == 1:
        parts = [_run_in_process(spec)]
    else:
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

"""Gantry against etcd and against the floor, in one sitting: issue 10's comparison table.

Usage::

    python ops/bench_vs_etcd.py [--rounds 3] [--duration 5] [--warmup 2] [--concurrency 1,16,64]
        [--workloads write,local-read,linearizable-read] [--systems etcd,gantry,floor,base]
        [--base CHECKOUT] [--members 3] [--timeout 5] [--read-keys 100] [--etcd PATH]
        [--etcd-arg=FLAG ...] [--serve-arg=FLAG ...]
        [--work-dir DIR] [--json]

Three systems (four with ``--base``), each ``--members`` processes (default 3) on 127.0.0.1 (free
ports, data under a temporary directory):

``etcd``
    A 3-member etcd cluster: the ``etcd`` binary on PATH (Debian's ``etcd-server``: ``apt-get
    install -y etcd-server``) with its default tuning (heartbeat, election timeout, snapshot
    count, quota, fsync on), ``--log-level warn``; plus any ``--etcd-arg``.
``gantry``
    Three ``gantry serve`` nodes from this checkout, started with ``ops/cluster.py``'s machinery,
    no storage server (CreateBucket and GetBucket need none), ``LOG_LEVEL=warning``; plus any
    ``--serve-arg``.
``floor``
    Three ``ops/floor_server.py`` processes: a do-nothing sync grpcio server (128 threads)
    answering the same GantryService calls with a fixed reply. It bounds what any Python
    grpcio node can do here; ``Gantry/floor`` is the share of it Gantry reaches.
``base``
    With ``--base CHECKOUT``: Gantry from another checkout (its own ``.venv``; e.g. a git
    worktree of the commit before a change), started like ``gantry``. The table then adds
    ``base ops/s`` and ``Gantry/base``: a before/after from the same sitting.

Workloads (one op = one RPC):

=====================  ===================================  ==========================================
workload               etcd                                 Gantry and floor
=====================  ===================================  ==========================================
``write``              ``Put`` (key unique per op,          ``CreateBucket`` (name unique per op)
                       27-byte value)
``local-read``         ``Range`` of one key,                ``GetBucket``, metadata
                       ``serializable=true``                ``x-gantry-consistency: stale``
``linearizable-read``  ``Range`` of one key (the default)   ``GetBucket`` without metadata (the
                                                            default, linearizable)
=====================  ===================================  ==========================================

The reads pick one of ``--read-keys`` keys (buckets) at random per op; those are written when the
cluster has started, then read back linearizably on every member, so each member holds them
before any measured read.

The load generator is one closed-loop grpc.aio generator in this process, the same code for every
system: only the method path, the request message and the metadata differ. ``c`` workers; worker
*i* sends to member ``i % members`` (one channel per member) and sends its next call as soon as the
previous one returned. Ops finishing in the first ``--warmup`` seconds are not counted; the
``--duration`` seconds after that are measured (ops/s = measured ops / duration). Every call has a
``--timeout`` deadline (seconds); a failed call counts as an error and its worker pauses 10 ms.

Server CPU per op: the CPU time (utime + stime of all threads, plus waited-for children, from
``/proc/PID/stat``) of the three server processes, sampled when the measured window opens and
when it closes, divided by the measured ops, in ms. The generator's CPU is this process's and is
not in it; it is reported as ``client_cpu_pct`` (percent of one core over the window) in the
progress lines and ``--json``: a generator near 100 % is measuring itself.

Rounds: each round starts a fresh cluster of each system in turn, runs every workload and ``c`` on
it (in the table's order) and stops it. The systems' order alternates between rounds (etcd,
gantry, floor; then floor, gantry, etcd; ...), so Gantry and etcd are neighbours in time in every
round. The table shows medians over the rounds; the two ratios are the medians of the per-round
ratios (A/B pairs), so they need not equal the quotient of the median columns.

Output: one JSON line per measured run on stderr as it goes, the processes' start/stop messages
also on stderr; on stdout a line naming the sitting (date, versions, load average) and the
markdown table, or with ``--json`` one JSON document (the sitting, every run and every row).
``--work-dir`` keeps the data directories and logs there (else a temporary directory, removed).
Every process it starts is stopped on exit, also on Ctrl-C or SIGTERM.

Exit status 0 when every measured call succeeded, 1 when any failed, 2 on bad flags or a missing
etcd binary. It is a benchmark, not a test: CI does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import cluster  # noqa: E402
import grpc  # noqa: E402
from bench import percentile  # noqa: E402

from gantry.pb.service.v1 import service_pb2 as svc  # noqa: E402

SYSTEMS = ("etcd", "gantry", "floor", "base")
LABELS = {"etcd": "etcd", "gantry": "Gantry", "floor": "floor", "base": "base"}
WORKLOADS = ("write", "local-read", "linearizable-read")
WORKLOAD_LABELS = {"write": "write", "local-read": "local read",
                   "linearizable-read": "linearizable read"}
#: Members per cluster unless ``--members`` says otherwise.
MEMBERS = 3
ETCD_PROTO = HERE / "etcd" / "kv.proto"
#: etcd Put's value: 27 bytes, the size of the RFC 3339 creation time a Gantry bucket stores.
ETCD_VALUE = b"2026-01-01T00:00:00.000000Z"
#: Concurrent calls while writing the read workloads' keys.
SETUP_CONCURRENCY = 32
#: Seconds a cluster may take to start answering (per system start).
READY_TIMEOUT_S = 60.0
#: Seconds between SIGTERM and SIGKILL when stopping a cluster.
STOP_TIMEOUT_S = 20.0
#: Pause of a worker after a failed call (seconds), so it does not spin on a node that is down.
ERROR_PAUSE_S = 0.01

Metadata = tuple[tuple[str, str], ...]


# -- what each system is called with --------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """One unary gRPC method: its full path and its request and response message classes."""

    path: str
    request_type: Any
    response_type: Any

    def bind(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
        """The method as a callable on ``channel``."""
        return channel.unary_unary(self.path,
                                   request_serializer=self.request_type.SerializeToString,
                                   response_deserializer=self.response_type.FromString)


@dataclass(frozen=True)
class Api:
    """How one system spells the workloads: a write of a name, a read of a name (local or
    linearizable), and the metadata a read carries."""

    write: Method
    read: Method
    write_request: Callable[[str], Any]
    read_request: Callable[[str, bool], Any]  # (name, local)
    read_metadata: Callable[[bool], Metadata | None]  # (local)


@dataclass(frozen=True)
class Call:
    """What every worker of one run sends: ``method`` with ``make_request(worker, iteration)``
    and ``metadata``."""

    method: Method
    make_request: Callable[[int, int], Any]
    metadata: Metadata | None = None


def load_etcd_kv(out_dir: pathlib.Path) -> Any:
    """Generate the Python messages of ``ops/etcd/kv.proto`` into ``out_dir`` with grpc_tools'
    protoc and import them; returns the module. Raises SystemExit when protoc fails."""
    try:
        from grpc_tools import protoc
    except ImportError:
        raise SystemExit("bench_vs_etcd: grpcio-tools is missing: pip install -e '.[dev]'") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    rc = protoc.main(["protoc", f"-I{ETCD_PROTO.parent}", f"--python_out={out_dir}", ETCD_PROTO.name])
    if rc != 0:
        raise SystemExit(f"bench_vs_etcd: protoc failed (status {rc}) on {ETCD_PROTO}")
    spec = importlib.util.spec_from_file_location("bench_etcd_kv_pb2", out_dir / "kv_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def etcd_api(kv: Any) -> Api:
    """etcd's KV service: Put to write, Range to read (``serializable`` for a local read)."""
    service = kv.DESCRIPTOR.services_by_name["KV"].full_name
    return Api(
        write=Method(f"/{service}/Put", kv.PutRequest, kv.PutResponse),
        read=Method(f"/{service}/Range", kv.RangeRequest, kv.RangeResponse),
        write_request=lambda name: kv.PutRequest(key=name.encode(), value=ETCD_VALUE),
        read_request=lambda name, local: kv.RangeRequest(key=name.encode(), serializable=local),
        read_metadata=lambda local: None,
    )


STALE_METADATA: Metadata = (("x-gantry-consistency", "stale"),)


def gantry_api() -> Api:
    """GantryService: CreateBucket to write, GetBucket to read (``x-gantry-consistency: stale``
    for a local read, no metadata for the default linearizable one; see gantry/api/reads.py).
    The floor server answers the same calls."""
    service = svc.DESCRIPTOR.services_by_name["GantryService"].full_name
    return Api(
        write=Method(f"/{service}/CreateBucket", svc.CreateBucketRequest, svc.CreateBucketResponse),
        read=Method(f"/{service}/GetBucket", svc.GetBucketRequest, svc.GetBucketResponse),
        write_request=lambda name: svc.CreateBucketRequest(name=name),
        read_request=lambda name, local: svc.GetBucketRequest(name=name),
        read_metadata=lambda local: STALE_METADATA if local else None,
    )


def workload_call(api: Api, workload: str, run_id: str, keys: list[str]) -> Call:
    """The call of ``workload`` on ``api``: writes of names unique per run, worker and iteration,
    or reads of a random one of ``keys``."""
    if workload == "write":
        return Call(api.write, lambda w, i: api.write_request(f"b-{run_id}-{w}-{i}"))
    local = workload == "local-read"
    return Call(api.read, lambda w, i: api.read_request(random.choice(keys), local),
                api.read_metadata(local))


# -- the load generator ---------------------------------------------------------------------------

def servers_cpu_s(pids: list[int]) -> float:
    """Total CPU seconds of ``pids``; NaN when one of them is gone."""
    try:
        return sum(cluster.process_cpu_s(p) for p in pids)
    except OSError:
        return float("nan")


def own_cpu_s() -> float:
    """CPU seconds (user + system) this process used so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class LoadResult:
    """What one run of the generator measured in its window."""

    latencies_ms: list[float]  # sorted, one per successful measured op
    errors: Counter[str]
    window_s: float  # seconds between the two CPU samples
    server_cpu_s: float  # the servers' CPU seconds in the window (NaN if one died)
    client_cpu_s: float  # this process's CPU seconds in the window

    @property
    def ops(self) -> int:
        """Successful measured ops."""
        return len(self.latencies_ms)


@dataclass
class _WorkerStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    return "CLIENT_TIMEOUT"


async def _worker(rpc: Callable[..., Awaitable[Any]], call: Call, worker: int, measure_from: float,
                  end: float, timeout_s: float, clock: Callable[[], float], stats: _WorkerStats) -> None:
    iteration = 0
    while True:
        t0 = clock()
        if t0 >= end:
            return
        err: BaseException | None = None
        try:
            await rpc(call.make_request(worker, iteration), timeout=timeout_s, metadata=call.metadata)
        except (grpc.aio.AioRpcError, TimeoutError) as e:
            err = e
        t1 = clock()
        iteration += 1
        if t1 > end:
            return  # finished after the window closed: neither counted nor an error
        if t1 >= measure_from:
            if err is None:
                stats.latencies_ms.append((t1 - t0) * 1000.0)
            else:
                stats.errors[_code_of(err)] += 1
        if err is not None:
            await asyncio.sleep(ERROR_PAUSE_S)


async def run_load(targets: list[str], call: Call, concurrency: int, warmup_s: float,
                   duration_s: float, timeout_s: float, server_pids: list[int]) -> LoadResult:
    """Run ``concurrency`` closed-loop workers sending ``call`` round-robin over ``targets`` for
    ``warmup_s`` + ``duration_s`` seconds; measure the second part (latencies, errors, the CPU of
    ``server_pids`` and of this process)."""
    loop = asyncio.get_running_loop()
    channels = [grpc.aio.insecure_channel(t) for t in targets]
    try:
        for t, ch in zip(targets, channels, strict=True):
            try:
                await asyncio.wait_for(ch.channel_ready(), timeout=timeout_s)
            except TimeoutError:
                raise RuntimeError(f"cannot connect to {t} within {timeout_s}s") from None
        rpcs = [call.method.bind(ch) for ch in channels]
        samples: list[tuple[float, float, float]] = []

        def sample() -> None:
            samples.append((loop.time(), servers_cpu_s(server_pids), own_cpu_s()))

        start = loop.time()
        measure_from = start + warmup_s
        end = measure_from + duration_s
        loop.call_at(measure_from, sample)
        loop.call_at(end, sample)
        stats = [_WorkerStats() for _ in range(concurrency)]
        await asyncio.gather(*(
            _worker(rpcs[i % len(rpcs)], call, i, measure_from, end, timeout_s, loop.time, stats[i])
            for i in range(concurrency)))
        while len(samples) < 2:  # the last worker may return just before the closing sample
            await asyncio.sleep(0.001)
    finally:
        for ch in channels:
            await ch.close()
    (t0, s0, c0), (t1, s1, c1) = samples
    errors: Counter[str] = Counter()
    for s in stats:
        errors.update(s.errors)
    return LoadResult(latencies_ms=sorted(x for s in stats for x in s.latencies_ms), errors=errors,
                      window_s=t1 - t0, server_cpu_s=s1 - s0, client_cpu_s=c1 - c0)


# -- clusters -------------------------------------------------------------------------------------

def plan_etcd(etcd_bin: str, workdir: pathlib.Path, extra: list[str],
              members: int = MEMBERS) -> list[tuple[cluster.Node, list[str]]]:
    """A new ``members``-member etcd cluster (client port = ``grpc_port``, peer port = ``raft_port``; data
    in ``data_dir/data``, which etcd creates with its 0700 mode): each member and its command."""
    ports = cluster.free_ports(2 * members)
    nodes = [cluster.Node(name=f"etcd{i + 1}", grpc_port=ports[i], raft_port=ports[members + i],
                          data_dir=workdir / f"etcd{i + 1}", log_path=workdir / f"etcd{i + 1}.log")
             for i in range(members)]
    initial = ",".join(f"{n.name}=http://{n.raft_addr}" for n in nodes)
    token = f"bench-{secrets.token_hex(4)}"
    return [(n, [etcd_bin, "--name", n.name, "--data-dir", str(n.data_dir / "data"),
                 "--listen-client-urls", f"http://{n.addr}", "--advertise-client-urls", f"http://{n.addr}",
                 "--listen-peer-urls", f"http://{n.raft_addr}",
                 "--initial-advertise-peer-urls", f"http://{n.raft_addr}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", token, "--logger", "zap", "--log-level", "warn", *extra])
            for n in nodes]


def plan_gantry(workdir: pathlib.Path, extra: list[str], members: int = MEMBERS,
                python: str = "") -> list[tuple[cluster.Node, list[str]]]:
    """``members`` peered ``gantry serve`` nodes (ops/cluster.py), no storage server: each node
    and its command. ``python``: the interpreter to run them with (another checkout's, for
    ``base``); default this one."""
    ports = cluster.free_ports(3 * members)
    # Metrics on, as by default (etcd always serves its own /metrics): like for like.
    nodes = cluster.plan_nodes(members, workdir, ports[:members], ports[members:2 * members],
                               ports[2 * members:])
    plan = [(nd, cluster.serve_args(nd, nodes, "", extra)) for nd in nodes]
    if python:
        for _nd, args in plan:
            args[0] = python
    return plan


def base_python(checkout: pathlib.Path) -> str:
    """The interpreter that runs ``checkout``'s Gantry: its ``.venv/bin/python`` (made by the
    README's install command). Raises SystemExit when there is none."""
    py = checkout / ".venv" / "bin" / "python"
    if not (checkout / "gantry").is_dir() or not py.exists():
        raise SystemExit(f"bench_vs_etcd: --base {checkout}: need a Gantry checkout with its own "
                         ".venv (python3 -m venv .venv && .venv/bin/pip install -e .)")
    return str(py)


def plan_floor(workdir: pathlib.Path, members: int = MEMBERS) -> list[tuple[cluster.Node, list[str]]]:
    """``members`` ``ops/floor_server.py`` processes: each and its command."""
    ports = cluster.free_ports(members)
    nodes = [cluster.Node(name=f"floor{i + 1}", grpc_port=p, raft_port=0,
                          data_dir=workdir / f"floor{i + 1}", log_path=workdir / f"floor{i + 1}.log")
             for i, p in enumerate(ports)]
    return [(n, [sys.executable, str(HERE / "floor_server.py"), "--port", str(n.grpc_port)])
            for n in nodes]


def stop(nodes: list[cluster.Node]) -> None:
    """SIGTERM every started node, SIGKILL after :data:`STOP_TIMEOUT_S` seconds; an interrupt
    while waiting kills them at once."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            cluster.stop_all(nodes, STOP_TIMEOUT_S, threading.Event())
    except BaseException:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.kill()
        raise


@contextlib.contextmanager
def running(system: str, workdir: pathlib.Path, opts: argparse.Namespace) -> Iterator[list[cluster.Node]]:
    """Start a fresh cluster of ``system`` under ``workdir`` (each process in its own session,
    its output in ``workdir/NAME.log``), yield its nodes, stop them. Gantry's nodes are waited
    for until SIGTERM; RuntimeError when they do not become SERVING."""
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"bench_vs_etcd: starting {system} in {workdir}", file=sys.stderr, flush=True)
    pythonpath = None
    if system == "etcd":
        plan = plan_etcd(opts.etcd_path, workdir, opts.etcd_arg, opts.members)
    elif system == "gantry":
        plan = plan_gantry(workdir, opts.serve_arg, opts.members)
    elif system == "base":
        plan = plan_gantry(workdir, opts.serve_arg, opts.members, base_python(opts.base))
        pythonpath = opts.base
    else:
        plan = plan_floor(workdir, opts.members)
    nodes = [n for n, _ in plan]
    try:
        for n, args in plan:
            cluster.start_node(n, args, "warning", pythonpath)
        if system in ("gantry", "base"):
            with contextlib.redirect_stdout(sys.stderr):
                problem = cluster.wait_serving(nodes, READY_TIMEOUT_S, threading.Event())
            if problem is not None:
                raise RuntimeError(f"gantry: {problem}")
        yield nodes
    finally:
        stop(nodes)


async def _call_until(rpc: Callable[..., Awaitable[Any]], request: Any, deadline: float,
                      ok: tuple[grpc.StatusCode, ...] = ()) -> None:
    """Call (1 s deadline) until it succeeds or fails with a code in ``ok``; retry any other
    failure every 0.1 s until the loop's clock passes ``deadline``, then raise it."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await rpc(request, timeout=1.0)
            return
        except grpc.aio.AioRpcError as e:
            if e.code() in ok:
                return
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.1)


async def prepare(nodes: list[cluster.Node], api: Api, keys: list[str]) -> None:
    """Wait until every member answers a linearizable read (NOT_FOUND counts), write ``keys``
    through the first member, then read the last one back linearizably on every member (so each
    member applied every key). Raises RuntimeError when a member exits or does not answer within
    :data:`READY_TIMEOUT_S` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    channels = [grpc.aio.insecure_channel(n.addr) for n in nodes]
    try:
        reads = [api.read.bind(ch) for ch in channels]
        for n, read in zip(nodes, reads, strict=True):
            assert n.proc is not None
            while True:
                if n.proc.poll() is not None:
                    raise RuntimeError(f"{n.name} exited ({cluster.describe_exit(n.proc.returncode)}); "
                                       f"last log lines:\n{cluster.tail(n.log_path)}")
                try:
                    await _call_until(read, api.read_request("ready-probe", False), 0.0,
                                      (grpc.StatusCode.NOT_FOUND,))
                    break
                except grpc.aio.AioRpcError as e:
                    if loop.time() > deadline:
                        raise RuntimeError(f"{n.name} at {n.addr} not answering after "
                                           f"{READY_TIMEOUT_S}s: {e.code().name}: {e.details()}") from None
                await asyncio.sleep(0.1)
        write = api.write.bind(channels[0])
        sem = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def put(name: str) -> None:
            async with sem:
                await _call_until(write, api.write_request(name), loop.time() + 10.0,
                                  (grpc.StatusCode.ALREADY_EXISTS,))

        await asyncio.gather(*(put(k) for k in keys))
        for read in reads:
            await _call_until(read, api.read_request(keys[-1], False), loop.time() + 10.0)
    finally:
        for ch in channels:
            await ch.close()


# -- one sitting ----------------------------------------------------------------------------------

@dataclass
class RunRecord:
    """One measured run: one system, workload and concurrency in one round."""

    system: str
    workload: str
    c: int
    round: int
    ops: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    server_cpu_ms_per_op: float | None  # None without ops or when a server died
    server_cores: float | None  # the servers' CPU seconds per second of the window
    client_cpu_pct: float  # the generator's CPU, percent of one core over the window


def record_of(system: str, workload: str, c: int, rnd: int, duration_s: float,
              res: LoadResult) -> RunRecord:
    """The record of one run measured over ``duration_s`` seconds."""
    cpu_ok = res.server_cpu_s == res.server_cpu_s  # not NaN
    return RunRecord(
        system=system, workload=workload, c=c, round=rnd, ops=res.ops,
        ops_per_s=round(res.ops / duration_s, 1),
        p50_ms=round(percentile(res.latencies_ms, 50), 3),
        p99_ms=round(percentile(res.latencies_ms, 99), 3),
        errors=dict(sorted(res.errors.items())),
        server_cpu_ms_per_op=(round(1000.0 * res.server_cpu_s / res.ops, 4)
                              if cpu_ok and res.ops else None),
        server_cores=round(res.server_cpu_s / res.window_s, 3) if cpu_ok and res.window_s > 0 else None,
        client_cpu_pct=round(100.0 * res.client_cpu_s / res.window_s, 1) if res.window_s > 0 else 0.0,
    )


def round_order(systems: list[str], rnd: int) -> list[str]:
    """The systems in the order round ``rnd`` (0-based) runs them: as given in even rounds,
    reversed in odd ones."""
    return list(systems) if rnd % 2 == 0 else list(reversed(systems))


def run_sitting(opts: argparse.Namespace, workdir: pathlib.Path) -> list[RunRecord]:
    """Every round of every system, workload and concurrency; returns the records in run order."""
    apis: dict[str, Api] = {"gantry": gantry_api(), "floor": gantry_api(), "base": gantry_api()}
    if "etcd" in opts.systems:
        apis["etcd"] = etcd_api(load_etcd_kv(workdir / "etcdpb"))
    records: list[RunRecord] = []
    for rnd in range(opts.rounds):
        for system in round_order(opts.systems, rnd):
            api = apis[system]
            keys = [f"bench-{secrets.token_hex(4)}-k{i:03d}" for i in range(opts.read_keys)]
            with running(system, workdir / f"round{rnd + 1}-{system}", opts) as nodes:
                asyncio.run(prepare(nodes, api, keys))
                targets = [n.addr for n in nodes]
                pids = [n.proc.pid for n in nodes if n.proc is not None]
                for workload in opts.workloads:
                    for c in opts.concurrency:
                        call = workload_call(api, workload, secrets.token_hex(4), keys)
                        res = asyncio.run(run_load(targets, call, c, opts.warmup, opts.duration,
                                                   opts.timeout, pids))
                        rec = record_of(system, workload, c, rnd + 1, opts.duration, res)
                        print(json.dumps(dataclasses.asdict(rec)), file=sys.stderr, flush=True)
                        records.append(rec)
    return records


# -- the table ------------------------------------------------------------------------------------

@dataclass
class Figures:
    """One system's medians over the rounds for one row."""

    ops_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_op: float | None
    runs_ops_per_s: list[float]
    errors: int


@dataclass
class Row:
    """One workload and concurrency: each system's figures and Gantry's two ratios (medians of
    the per-round ratios of ops/s; None when a side is missing)."""

    workload: str
    c: int
    figures: dict[str, Figures]
    gantry_vs_etcd: float | None
    gantry_vs_floor: float | None
    gantry_vs_base: float | None = None


def _median_or_none(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def _ratio(by_round: dict[str, dict[int, RunRecord]], num: str, den: str) -> float | None:
    a, b = by_round.get(num, {}), by_round.get(den, {})
    ratios = [a[r].ops_per_s / b[r].ops_per_s for r in sorted(set(a) & set(b)) if b[r].ops_per_s > 0]
    return statistics.median(ratios) if ratios else None


def summarize(records: list[RunRecord]) -> list[Row]:
    """Rows in the order the records first name each (workload, c), figures per system."""
    cells: dict[tuple[str, int], dict[str, dict[int, RunRecord]]] = {}
    for rec in records:
        cells.setdefault((rec.workload, rec.c), {}).setdefault(rec.system, {})[rec.round] = rec
    order = {w: i for i, w in enumerate(WORKLOADS)}
    rows = []
    for (workload, c), by_system in sorted(cells.items(), key=lambda kv: (order.get(kv[0][0], 99),
                                                                           kv[0][1])):
        figures = {}
        for system, by_round in by_system.items():
            runs = [by_round[r] for r in sorted(by_round)]
            figures[system] = Figures(
                ops_per_s=statistics.median(r.ops_per_s for r in runs),
                p50_ms=statistics.median(r.p50_ms for r in runs),
                p99_ms=statistics.median(r.p99_ms for r in runs),
                cpu_ms_per_op=_median_or_none([r.server_cpu_ms_per_op for r in runs]),
                runs_ops_per_s=[r.ops_per_s for r in runs],
                errors=sum(sum(r.errors.values()) for r in runs))
        rows.append(Row(workload=workload, c=c, figures=figures,
                        gantry_vs_etcd=_ratio(by_system, "gantry", "etcd"),
                        gantry_vs_floor=_ratio(by_system, "gantry", "floor"),
                        gantry_vs_base=_ratio(by_system, "gantry", "base")))
    return rows


def fmt_ms(x: float | None) -> str:
    """Milliseconds to about three significant digits; '–' for None."""
    if x is None:
        return "–"
    if x < 1:
        return f"{x:.3f}"
    if x < 10:
        return f"{x:.2f}"
    if x < 100:
        return f"{x:.1f}"
    return f"{x:.0f}"


def _ratio_text(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _system_cells(f: Figures | None) -> tuple[str, str, str]:
    """ops/s, 'p50 / p99' ms and CPU ms/op of one system ('–' each when it did not run)."""
    if f is None:
        return "–", "–", "–"
    return f"{f.ops_per_s:.0f}", f"{fmt_ms(f.p50_ms)} / {fmt_ms(f.p99_ms)}", fmt_ms(f.cpu_ms_per_op)


def format_table(rows: list[Row]) -> str:
    """The markdown table: ops/s, Gantry's ratios, p50 / p99 ms and server CPU ms per op of each
    system; '–' where a system did not run. The ``base`` columns (another checkout: "before")
    appear only when some row has base figures."""
    systems = [s for s in SYSTEMS if s != "base" or any("base" in r.figures for r in rows)]
    names = [LABELS[s] for s in systems]
    head = (["workload", "c", "etcd ops/s", "Gantry ops/s", "Gantry/etcd", "floor ops/s", "Gantry/floor"]
            + (["base ops/s", "Gantry/base"] if "base" in systems else [])
            + [f"{n} p50 / p99 ms" for n in names] + [f"{n} CPU ms/op" for n in names])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = {s: _system_cells(row.figures.get(s)) for s in systems}
        cols = ([WORKLOAD_LABELS.get(row.workload, row.workload), str(row.c),
                 cells["etcd"][0], cells["gantry"][0], _ratio_text(row.gantry_vs_etcd),
                 cells["floor"][0], _ratio_text(row.gantry_vs_floor)]
                + ([cells["base"][0], _ratio_text(row.gantry_vs_base)] if "base" in systems else [])
                + [cells[s][1] for s in systems] + [cells[s][2] for s in systems])
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def format_notes(records: list[RunRecord]) -> str:
    """Lines under the table: errors per system, and the generator's highest CPU per system."""
    errors: dict[str, Counter[str]] = {}
    client: dict[str, float] = {}
    for r in records:
        errors.setdefault(r.system, Counter()).update(r.errors)
        client[r.system] = max(client.get(r.system, 0.0), r.client_cpu_pct)
    present = [s for s in SYSTEMS if s in client]
    errs = "; ".join(f"{LABELS[s]} " + ", ".join(f"{k}={v}" for k, v in sorted(errors[s].items()))
                     for s in present if errors[s])
    return "\n".join([
        f"Errors: {errs or 'none'}.",
        "Generator CPU, highest over the runs (% of one core): "
        + ", ".join(f"{LABELS[s]} {client[s]:.0f}" for s in present) + ".",
        "Ratios are medians of the per-round ratios of ops/s; other figures are medians over the rounds.",
    ])


# -- the sitting's description and the command line -----------------------------------------------

def _first_line(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (out.stdout.strip().splitlines() or ["?"])[0]


def sitting(opts: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Date, versions, machine and load of this sitting."""
    etcd_version = _first_line([opts.etcd_path, "--version"]) if opts.etcd_path else ""
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["ops/bench_vs_etcd.py", *argv]),
        "etcd": etcd_version.removeprefix("etcd Version: "),
        "gantry": commit + ("+dirty" if dirty not in ("", "?") else ""),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def format_sitting(s: dict[str, Any]) -> str:
    """One line naming the sitting."""
    ends = f", {s['loadavg_end'][0]:.2f} at the end" if "loadavg_end" in s else ""
    return (f"Sitting {s['date']}: etcd {s['etcd'] or '-'}, Gantry {s['gantry']}, Python {s['python']}, "
            f"{s['cpus']} CPUs, load average {s['loadavg_start'][0]:.2f} at the start{ends}. "
            f"Command: `{s['command']}`")


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _name_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{what}: choose from {','.join(allowed)} (got {text!r})")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first (default 2)")
    p.add_argument("--concurrency", type=_int_list, default=[1, 16, 64],
                   help="comma-separated worker counts (default 1,16,64)")
    p.add_argument("--workloads", type=lambda t: _name_list(t, WORKLOADS, "--workloads"),
                   default=list(WORKLOADS), help="comma-separated, of " + ",".join(WORKLOADS))
    p.add_argument("--systems", type=lambda t: _name_list(t, SYSTEMS, "--systems"),
                   default=None, help="comma-separated, of " + ",".join(SYSTEMS)
                   + " (default etcd,gantry,floor, plus base with --base)")
    p.add_argument("--base", type=pathlib.Path, default=None,
                   help="another Gantry checkout with its own .venv (e.g. a git worktree of the "
                        "commit before a change): runs as system 'base', for a before/after table")
    p.add_argument("--members", type=int, default=MEMBERS,
                   help=f"members per cluster, every system (default {MEMBERS})")
    p.add_argument("--timeout", type=float, default=5.0, help="per-call deadline, seconds (default 5)")
    p.add_argument("--read-keys", type=int, default=100,
                   help="keys (buckets) the reads choose from (default 100)")
    p.add_argument("--etcd", default="etcd", help="the etcd binary (default: etcd on PATH)")
    p.add_argument("--etcd-arg", action="append", default=[], help="extra flag for every etcd member")
    p.add_argument("--serve-arg", action="append", default=[],
                   help="extra flag for every gantry serve, e.g. --serve-arg=--no-raft-fsync")
    p.add_argument("--work-dir", default="",
                   help="keep data directories and logs here (default: a temporary directory, removed)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    return p


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the sitting and print the table. Exit 0, 1 when any call failed, 2 on bad flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = build_parser().parse_args(argv)
    if opts.systems is None:
        # base beside gantry, so the two are neighbours in time in every round
        opts.systems = ["etcd", "gantry"] + (["base"] if opts.base else []) + ["floor"]
    if "base" in opts.systems and opts.base is None:
        print("bench_vs_etcd: system 'base' needs --base CHECKOUT", file=sys.stderr)
        return 2
    if opts.base is not None:
        opts.base = opts.base.resolve()
        base_python(opts.base)
    if (opts.members < 1 or opts.rounds < 1 or opts.duration <= 0 or opts.warmup < 0 or opts.timeout <= 0
            or opts.read_keys < 1 or not opts.concurrency or min(opts.concurrency) < 1):
        print("bench_vs_etcd: need --members ≥ 1, --rounds ≥ 1, --duration > 0, --warmup ≥ 0, --timeout > 0, "
              "--read-keys ≥ 1, --concurrency values ≥ 1", file=sys.stderr)
        return 2
    opts.etcd_path = shutil.which(opts.etcd) if "etcd" in opts.systems else ""
    if "etcd" in opts.systems and not opts.etcd_path:
        print(f"bench_vs_etcd: no etcd binary ({opts.etcd!r}): apt-get install -y etcd-server, "
              "or --etcd PATH, or leave etcd out of --systems", file=sys.stderr)
        return 2
    # Stop the clusters on SIGTERM as on Ctrl-C; and on SIGINT even when started with it ignored
    # (a shell's background job), so an interrupt always cleans up.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    info = sitting(opts, argv)
    with contextlib.ExitStack() as stack:
        if opts.work_dir:
            workdir = pathlib.Path(opts.work_dir).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-vs-etcd-")))
        try:
            records = run_sitting(opts, workdir)
        except KeyboardInterrupt:
            print("bench_vs_etcd: interrupted; every process it started is stopped", file=sys.stderr)
            return 130
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = summarize(records)
    if opts.json:
        print(json.dumps({"sitting": info, "runs": [dataclasses.asdict(r) for r in records],
                          "rows": [dataclasses.asdict(r) for r in rows]}))
    else:
        print(format_sitting(info))
        print()
        print(format_table(rows))
        print()
        print(format_notes(records))
    return 1 if any(r.errors for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())

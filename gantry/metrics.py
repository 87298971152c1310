"""Prometheus metrics and the HTTP probes: ``/metrics``, ``/livez``, ``/readyz``.

Purpose: let an operator see, from outside and without reading logs, what a node is doing —
calls by method and status, Raft role, term and indexes, apply and fsync costs, snapshots, disk
use, storage servers — and let systemd, Docker or Kubernetes probe it over plain HTTP.

Two kinds of metrics, chosen by where the cost lands:

- **Events** (a call finished, a batch applied, the log fsync'd, a snapshot written, a leader
  change, a read index obtained) are module-level counters and histograms updated where they
  happen: one ``inc``/``observe`` under a lock of prometheus-client's, a microsecond or two,
  on the thread that did the work. The hot-path ones (:func:`rpc_observer`, ``APPLY_*``,
  ``RAFT_FSYNC_*``) are pre-bound to their labels so a call does no label lookup.
- **State** (term, role, commit index, database and WAL size, storage servers by status,
  proposals in flight) is read at scrape time by :class:`NodeCollector`, on the HTTP server's
  thread, from values the node already publishes. It never calls into pysyncobj: Raft state
  comes from ``Node.status()``, an ask the tick thread answers (``actors/raft.py``), so a scrape
  costs the engine one ask, not a lock on its state.

The exposition format is prometheus-client's (``generate_latest`` and its content negotiation);
nothing here writes it by hand. Units are the base units Prometheus expects: seconds and bytes.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import socketserver
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

import gantry

if TYPE_CHECKING:
    from gantry.actors.raft import RaftStatus
    from gantry.config import Config

log = structlog.get_logger("gantry.metrics")

# ``*_created`` series double the output and no dashboard here uses them.
disable_created_metrics()

#: Everything a node exports. Module-level: the event metrics below are process-wide.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes…
PlatformCollector(registry=REGISTRY)  # python_info

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0, 30.0)
_COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: 0.1 ms doubling to ~3.3 s: a healthy local fdatasync is well under a millisecond.
_FSYNC_BUCKETS = tuple(0.0001 * 2 ** i for i in range(16))
_SLOW_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

BUILD_INFO = Gauge("gantry_build_info", "Always 1; the running Gantry version as a label.",
                   ["version"], registry=REGISTRY)
BUILD_INFO.labels(gantry.version()).set(1)

RPC_REQUESTS = Counter(
    "gantry_rpc_requests", "gRPC calls finished, by service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"], registry=REGISTRY)
RPC_DURATION = Histogram(
    "gantry_rpc_duration_seconds", "gRPC call latency in the handler (seconds), by method.",
    ["grpc_service", "grpc_method"], buckets=_LATENCY_BUCKETS, registry=None)


class _RpcDurations(Collector):  # type: ignore[misc]
    """``gantry_rpc_duration_seconds`` as this process exports it: :data:`RPC_DURATION` (the calls
    it answered) plus what its read workers reported (:func:`add_worker_durations`), so the main
    process's histogram covers every call its node answered, as its request counter does."""

    def __init__(self, own: Histogram) -> None:
        self._own = own
        self._lock = threading.Lock()
        #: (service, method) → (cumulative count per bucket, +Inf last; sum of seconds)
        self._workers: dict[tuple[str, str], tuple[list[float], float]] = {}
        self._bounds = [*_LATENCY_BUCKETS, float("inf")]

    def add(self, service: str, method: str, buckets: list[float], seconds: float) -> None:
        """Add a worker's delta: ``buckets`` per bucket of :data:`_LATENCY_BUCKETS` and +Inf,
        cumulative as Prometheus keeps them; ``seconds`` to the sum. Raises ValueError for a
        delta of another number of buckets."""
        if len(buckets) != len(self._bounds):
            raise ValueError(f"{len(buckets)} buckets, expected {len(self._bounds)}")
        with self._lock:
            have, total = self._workers.get((service, method), ([0.0] * len(self._bounds), 0.0))
            self._workers[(service, method)] = (
                [a + b for a, b in zip(have, buckets, strict=True)], total + seconds)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            workers = {k: (list(b), s) for k, (b, s) in self._workers.items()}
        index = {b: i for i, b in enumerate(self._bounds)}
        for family in self._own.collect():
            seen: set[tuple[str, str]] = set()
            samples = []
            for s in family.samples:
                key = (s.labels["grpc_service"], s.labels["grpc_method"])
                extra = workers.get(key)
                if extra is not None:
                    seen.add(key)
                    if s.name.endswith("_bucket"):
                        s = s._replace(value=s.value + extra[0][index[float(s.labels["le"])]])
                    elif s.name.endswith("_count"):
                        s = s._replace(value=s.value + extra[0][-1])
                    elif s.name.endswith("_sum"):
                        s = s._replace(value=s.value + extra[1])
                samples.append(s)
            family.samples = samples
            for (service, method), (buckets, total) in workers.items():
                if (service, method) in seen:
                    continue  # only workers answered it: a histogram of theirs alone
                labels = {"grpc_service": service, "grpc_method": method}
                for bound, count in zip(self._bounds, buckets, strict=True):
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    family.add_sample(f"{family.name}_bucket", {**labels, "le": le}, count)
                family.add_sample(f"{family.name}_count", labels, buckets[-1])
                family.add_sample(f"{family.name}_sum", labels, total)
            yield family


_RPC_DURATIONS = _RpcDurations(RPC_DURATION)
REGISTRY.register(_RPC_DURATIONS)


def add_worker_durations(service: str, method: str, buckets: list[float], seconds: float) -> None:
    """Main process: add a read worker's latency delta for ``method`` to the exported
    ``gantry_rpc_duration_seconds`` (see :class:`_RpcDurations`; raises ValueError for a delta
    with another number of buckets)."""
    _RPC_DURATIONS.add(service, method, buckets, seconds)


def rpc_duration_samples() -> dict[tuple[str, str], tuple[list[float], float]]:
    """This process's own ``(service, method)`` → (cumulative counts per bucket, +Inf last;
    sum of seconds) of :data:`RPC_DURATION` (what a read worker reports to main)."""
    out: dict[tuple[str, str], tuple[list[float], float]] = {}
    for family in RPC_DURATION.collect():
        for s in family.samples:
            key = (s.labels["grpc_service"], s.labels["grpc_method"])
            buckets, total = out.setdefault(key, ([], 0.0))
            if s.name.endswith("_bucket"):
                buckets.append(s.value)  # in bucket order, +Inf last
            elif s.name.endswith("_sum"):
                out[key] = (buckets, s.value)
    return out

APPLY_BATCH_ENTRIES = Histogram(
    "gantry_apply_batch_entries", "Log entries applied per SQLite transaction (apply batch).",
    buckets=_COUNT_BUCKETS, registry=REGISTRY)
APPLY_DURATION = Histogram(
    "gantry_apply_duration_seconds", "Time to apply one batch of entries and commit it (seconds).",
    buckets=_LATENCY_BUCKETS, registry=REGISTRY)

RAFT_FSYNC_DURATION = Histogram(
    "gantry_raft_log_fsync_duration_seconds", "fdatasync of the Raft log (seconds).",
    buckets=_FSYNC_BUCKETS, registry=REGISTRY)
RAFT_FSYNC_ENTRIES = Histogram(
    "gantry_raft_log_fsync_entries", "Log entries made durable per Raft log fsync (group commit).",
    buckets=_COUNT_BUCKETS, registry=REGISTRY)
LEADER_CHANGES = Counter(
    "gantry_raft_leader_changes", "Times this node saw a new leader (including the first).",
    registry=REGISTRY)

SNAPSHOT_DURATION = Histogram(
    "gantry_snapshot_duration_seconds",
    "Time to copy the database into a Raft snapshot, off the tick thread (seconds).",
    buckets=_SLOW_BUCKETS, registry=REGISTRY)
SNAPSHOT_WRITTEN_BYTES = Gauge(
    "gantry_snapshot_written_bytes", "Size of the last snapshot this node wrote (bytes).",
    registry=REGISTRY)
RESTORE_DURATION = Histogram(
    "gantry_snapshot_restore_duration_seconds",
    "Time to restore the database from a snapshot (seconds).",
    buckets=_SLOW_BUCKETS, registry=REGISTRY)
RESTORE_BYTES = Gauge(
    "gantry_snapshot_restore_bytes", "Size of the last snapshot this node restored (bytes).",
    registry=REGISTRY)

READ_INDEX_WAITS = Counter(
    "gantry_read_index_waits", "Linearizable reads that waited for a read index.",
    registry=REGISTRY)
READ_INDEX_DURATION = Histogram(
    "gantry_read_index_duration_seconds",
    "One read index obtained (a ReadIndex round, or a barrier entry proposed to applied here), "
    "in seconds; concurrent reads share one, and a read waits for at most about two.",
    buckets=_LATENCY_BUCKETS, registry=REGISTRY)
READ_INDEX_ROUNDS = Counter(
    "gantry_read_index_rounds",
    "ReadIndex rounds this node started as leader (Raft §6.4: one append_entries round confirms "
    "leadership for every read waiting then); no log entry is written for them.",
    registry=REGISTRY)
READ_INDEX_ROUNDS_FAILED = Counter(
    "gantry_read_index_rounds_failed",
    "ReadIndex rounds failed: leadership lost, the term changed, or no majority confirmed them "
    "within an election timeout.", registry=REGISTRY)
READ_INDEX_FALLBACKS = Counter(
    "gantry_read_index_fallbacks",
    "Read indexes obtained through a barrier log entry because the leader, or its voting "
    "majority, runs a build without ReadIndex (rolling upgrade).", registry=REGISTRY)


def rpc_observer(service: str, method: str) -> Callable[[Any, float], None]:
    """For the RPC wrapper: ``observe(code, seconds)`` counts one finished call of ``method``
    with its ``grpc.StatusCode`` and records its latency. Labels are bound once, here."""
    duration = RPC_DURATION.labels(service, method)
    by_code: dict[Any, Any] = {}

    def observe(code: Any, seconds: float) -> None:
        counter = by_code.get(code)
        if counter is None:
            counter = by_code[code] = RPC_REQUESTS.labels(service, method, code.name)
        counter.inc()
        duration.observe(seconds)

    return observe


# -- state, read at scrape time --

ROLES = ("follower", "candidate", "leader")
CRADLE_STATUSES = ("HEALTHY", "DEGRADED", "OFFLINE")


class NodeLike(Protocol):
    """What :class:`NodeCollector` reads of a :class:`gantry.node.Node`."""

    config: Config
    watermark: Any
    proposals: Any
    queue: Any

    @property
    def serving(self) -> bool: ...

    def status(self) -> RaftStatus: ...


def _size(path: pathlib.Path) -> float:
    try:
        return float(os.stat(path).st_size)
    except OSError:
        return 0.0


class NodeCollector(Collector):
    """Scrape-time gauges of one node (see the module docstring). Each part is independent: a
    part that cannot be read right now (Raft stopping, database busy) is left out of this scrape
    and logged at debug, the rest is still exported."""

    def __init__(self, node: NodeLike) -> None:
        self._node = node
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # registration must not collect: that would ask the node for its status

    def collect(self) -> Iterator[Metric]:
        node = self._node
        yield _gauge("gantry_health_serving", "1 when gRPC health is SERVING (as /readyz), else 0.",
                     node.serving)
        yield _gauge("gantry_proposals_in_flight",
                     "Proposals from this node waiting to be committed and applied.",
                     len(node.proposals))
        yield _gauge("gantry_apply_queue_entries",
                     "Committed entries handed to the writer and not yet applied.", len(node.queue))
        yield _gauge("gantry_raft_applied_index", "Last log index applied to this node's database.",
                     node.watermark.value)
        yield from self._raft()
        yield from self._files()
        yield from self._cradles()

    def close(self) -> None:
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _raft(self) -> Iterator[Metric]:
        try:
            st = self._node.status()
        except Exception as e:  # starting, stopping, or the tick thread busy: skip this part
            log.debug("metrics_raft_status_failed", error=repr(e))
            return
        yield _gauge("gantry_raft_term", "Current Raft term.", st.term)
        role = GaugeMetricFamily("gantry_raft_role", "1 for this node's current Raft role.",
                                 labels=["role"])
        for r in ROLES:
            role.add_metric([r], 1.0 if st.role == r else 0.0)
        yield role
        yield _gauge("gantry_raft_has_leader", "1 when this node knows a reachable leader.",
                     st.leader is not None)
        yield _gauge("gantry_raft_commit_index", "This node's Raft commit index.", st.commit_index)
        yield _gauge("gantry_raft_log_entries", "Entries in the Raft log (since the last compaction).",
                     st.log_size)
        yield _gauge("gantry_raft_last_snapshot_index", "Log index of the latest Raft snapshot.",
                     st.last_snapshot_index)
        yield _gauge("gantry_raft_members", "Members of the cluster configuration, this node included.",
                     len(st.members))
        yield _gauge("gantry_raft_members_reachable",
                     "Members this node heard from recently, itself included.",
                     len(set(st.connected) | {st.raft_addr}))

    def _files(self) -> Iterator[Metric]:
        cfg = self._node.config
        db = cfg.database
        data = pathlib.Path(cfg.data_dir)
        yield _gauge("gantry_db_size_bytes", "Size of the SQLite database file (bytes).", _size(db))
        yield _gauge("gantry_db_wal_size_bytes", "Size of the SQLite WAL file (bytes).",
                     _size(pathlib.Path(f"{db}-wal")))
        yield _gauge("gantry_raft_log_size_bytes", "Size of the Raft log file (bytes).",
                     _size(data / "raft.log"))
        yield _gauge("gantry_snapshot_size_bytes", "Size of the current Raft snapshot file (bytes).",
                     _size(data / "raft.snapshot"))
        avail = GaugeMetricFamily("gantry_filesystem_avail_bytes",
                                  "Bytes available to the node on the filesystem of its data "
                                  "(and database) directory.", labels=["path"])
        size = GaugeMetricFamily("gantry_filesystem_size_bytes",
                                 "Size of the filesystem of the node's data (and database) "
                                 "directory (bytes).", labels=["path"])
        for d in dict.fromkeys([data.resolve(), db.parent.resolve()]):
            try:
                vfs = os.statvfs(d)
            except OSError:
                continue
            avail.add_metric([str(d)], float(vfs.f_bavail * vfs.f_frsize))
            size.add_metric([str(d)], float(vfs.f_blocks * vfs.f_frsize))
        yield avail
        yield size

    def _cradles(self) -> Iterator[Metric]:
        counts = dict.fromkeys(CRADLE_STATUSES, 0)
        try:
            with self._conn_lock:
                if self._conn is None:
                    from gantry.db import open_ro

                    self._conn = open_ro(self._node.config.database)
                rows = self._conn.execute(
                    "SELECT status, COUNT(*) FROM cradle_servers GROUP BY status").fetchall()
        except sqlite3.Error as e:
            log.debug("metrics_cradle_query_failed", error=repr(e))
            return
        for status, n in rows:
            counts[str(status)] = int(n)
        fam = GaugeMetricFamily("gantry_cradle_servers", "Registered storage servers by status.",
                                labels=["status"])
        for status, n in counts.items():
            fam.add_metric([status], float(n))
        yield fam


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


# -- the HTTP endpoint --

class MetricsServer:
    """``/metrics`` (Prometheus text, or OpenMetrics when asked), ``/livez`` (200 while the
    process serves HTTP) and ``/readyz`` (200 when ``ready()``, else 503) on ``addr``
    (``HOST:PORT``), on a thread per request. Raises ``OSError`` when it cannot listen."""

    def __init__(self, addr: str, ready: Callable[[], bool],
                 registry: CollectorRegistry = REGISTRY) -> None:
        host, _, port = addr.rpartition(":")
        host = host.strip("[]")
        server_cls = _V6Server if ":" in host else _Server
        self._server = server_cls((host, int(port)), _handler(registry, ready))
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http",
                                        daemon=True)

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer's own looks up the host's FQDN (a DNS query on some hosts); not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _V6Server(_Server):
    address_family = socket.AF_INET6


def _handler(registry: CollectorRegistry, ready: Callable[[], bool]
             ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._answer(body=True)

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(registry), content_type, body)
            elif path == "/livez":
                self._send(200, b"ok\n", "text/plain; charset=utf-8", body)
            elif path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ok\n" if ok else b"not serving\n",
                           "text/plain; charset=utf-8", body)
            else:
                self._send(404, b"not found: try /metrics, /livez or /readyz\n",
                           "text/plain; charset=utf-8", body)

        def _send(self, code: int, data: bytes, content_type: str, body: bool) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass  # probes every few seconds would flood the log

    return Handler


def serve(addr: str, node: NodeLike) -> tuple[MetricsServer, NodeCollector]:
    """Start the endpoint for ``node`` on ``addr`` and register its scrape-time collector;
    raises ``OSError`` when ``addr`` cannot be listened on. Undo with :func:`stop`."""
    server = MetricsServer(addr, lambda: node.serving)
    collector = NodeCollector(node)
    REGISTRY.register(collector)
    log.info("metrics_started", addr=addr, port=server.port)
    return server.start(), collector


def stop(server: MetricsServer, collector: NodeCollector) -> None:
    """Undo :func:`serve`."""
    server.close()
    with contextlib.suppress(KeyError):
        REGISTRY.unregister(collector)
    collector.close()

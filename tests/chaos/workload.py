"""Concurrent clients and the history they record.

Every mutation (unique CreateBucket, PlanWrite, CommitObject) carries an ``x-request-id`` and is
retried with the same id, on the next node, after a retryable status (README "Failures":
UNAVAILABLE — no leader, not committed, outcome unknown, node stopping — and DEADLINE_EXCEEDED)
until a bound. Reads (GetBucket, HeadObject, ListBuckets) use the default (linearizable)
consistency and are checked on the spot against the writes acknowledged before they began.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from gantry.pb.service.v1 import service_pb2 as svc
from tests.chaos.cluster import ChaosCluster, ChaosNode

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
#: Final statuses that are a legitimate refusal, not a sign of a lost or doubled write.
EXPECTED_FAILURES = {("plan_write", "FAILED_PRECONDITION", "no cradle servers available")}
LOG_INDEX_KEY = "x-gantry-log-index"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def rfc3339_to_us(text: str) -> int:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` → Unix microseconds (exact)."""
    t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def _log_index(md: Any) -> int:
    for k, v in md or ():
        if k == LOG_INDEX_KEY:
            try:
                return int(v)
            except ValueError:
                return -1
    return 0


@dataclass
class Op:
    """One logical client operation and what became of it.

    ``outcome``: ``ok`` (acknowledged), ``fail`` (a definite non-retryable status), ``unknown``
    (gave up after retryable statuses: it may or may not have been applied)."""

    kind: str
    rid: str
    args: dict[str, Any]
    start: float
    end: float = 0.0
    outcome: str = ""
    code: str = ""
    message: str = ""
    attempts: collections.Counter[str] = field(default_factory=collections.Counter)
    result: dict[str, Any] = field(default_factory=dict)
    log_index: int = 0
    node: str = ""


@dataclass
class History:
    """Everything the clients did, plus violations found while reading."""

    ops: list[Op] = field(default_factory=list)
    acked_buckets: list[tuple[str, int, float, int]] = field(default_factory=list)
    acked_commits: list[tuple[str, str, str, float, int]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        """Record a finished op (and index acknowledged writes for the readers)."""
        with self.lock:
            self.ops.append(op)
            if op.outcome == "ok" and op.kind == "create_bucket":
                self.acked_buckets.append((op.args["name"], op.result["created_at_us"], op.end,
                                           op.log_index))
            if op.outcome == "ok" and op.kind == "commit_object":
                self.acked_commits.append((op.args["bucket"], op.args["key"], op.args["object_id"],
                                           op.end, op.log_index))

    def violation(self, text: str) -> None:
        """Record one violation."""
        with self.lock:
            self.violations.append(text)

    def counts(self) -> dict[str, Any]:
        """Figures: acked by kind, final failures by code, unknown outcomes, attempt errors."""
        acked: collections.Counter[str] = collections.Counter()
        failed: collections.Counter[str] = collections.Counter()
        unknown: collections.Counter[str] = collections.Counter()
        attempts: collections.Counter[str] = collections.Counter()
        with self.lock:
            for op in self.ops:
                attempts.update(op.attempts)
                if op.outcome == "ok":
                    acked[op.kind] += 1
                elif op.outcome == "fail":
                    failed[f"{op.kind}:{op.code}"] += 1
                else:
                    unknown[f"{op.kind}:{op.code}"] += 1
        return {"acked": acked, "failed": failed, "unknown": unknown, "attempt_errors": attempts}


class Workload:
    """Client threads over every node of ``cluster``, recording into ``history``."""

    def __init__(self, cluster: ChaosCluster, history: History, seed: int, tag: str,
                 threads: int = 6, per_call_s: float = 4.0, op_bound_s: float = 45.0) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = random.Random(seed)
        self.tag = tag
        self.n_threads = threads
        self.per_call_s = per_call_s
        self.op_bound_s = op_bound_s
        self.stop_event = threading.Event()
        self.filler_stop = threading.Event()
        self.buckets: list[str] = []
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._fillers: list[threading.Thread] = []
        self.rng_lock = threading.Lock()

    # -- plumbing --

    def _next(self) -> int:
        return next(self._seq)

    def _nodes(self) -> list[ChaosNode]:
        return self.cluster.nodes

    def mutate(self, kind: str, method: str, request: Any, args: dict[str, Any],
               rng: random.Random, bound_s: float | None = None) -> tuple[Op, Any]:
        """Send one mutation with a fresh request id, retrying (same id, next node) on retryable
        statuses until the bound. Returns the recorded op and the response (None unless ok)."""
        rid = f"{self.tag}-{kind}-{uuid.uuid4().hex[:16]}"
        op = Op(kind, rid, args, time.monotonic())
        deadline = op.start + (bound_s if bound_s is not None else self.op_bound_s)
        nodes = self._nodes()
        i = rng.randrange(len(nodes))
        resp: Any = None
        while True:
            nd = nodes[i % len(nodes)]
            try:
                resp, call = getattr(nd.stub(), method).with_call(
                    request, timeout=self.per_call_s, metadata=(("x-request-id", rid),))
                op.end = time.monotonic()
                op.outcome, op.code, op.node = "ok", "OK", nd.name
                op.log_index = _log_index(call.trailing_metadata())
                break
            except grpc.RpcError as e:
                code = e.code()
                name = code.name if code is not None else "UNKNOWN"
                if code in RETRYABLE and time.monotonic() < deadline:
                    op.attempts[name] += 1
                    i += 1
                    time.sleep(0.05)
                    continue
                op.end = time.monotonic()
                op.code, op.message, op.node = name, e.details() or "", nd.name
                op.outcome = "unknown" if code in RETRYABLE else "fail"
                resp = None
                break
        return op, resp

    def read(self, method: str, request: Any, rng: random.Random,
             bound_s: float = 20.0) -> tuple[Op, Any, int]:
        """A default-consistency read, retried on retryable statuses. Returns (op, response or
        None, the applied index the read saw)."""
        op = Op(method, "", {}, time.monotonic())
        deadline = op.start + bound_s
        nodes = self._nodes()
        i = rng.randrange(len(nodes))
        while True:
            nd = nodes[i % len(nodes)]
            try:
                resp, call = getattr(nd.stub(), method).with_call(request, timeout=self.per_call_s)
                op.end, op.outcome, op.code, op.node = time.monotonic(), "ok", "OK", nd.name
                return op, resp, _log_index(call.trailing_metadata())
            except grpc.RpcError as e:
                code = e.code()
                name = code.name if code is not None else "UNKNOWN"
                if code in RETRYABLE and time.monotonic() < deadline and not self.stop_event.is_set():
                    op.attempts[name] += 1
                    i += 1
                    time.sleep(0.05)
                    continue
                op.end, op.code, op.message, op.node = time.monotonic(), name, e.details() or "", nd.name
                op.outcome = "unknown" if code in RETRYABLE else "fail"
                return op, None, _log_index(e.trailing_metadata())

    def _finish(self, op: Op) -> None:
        if op.outcome == "fail" and (op.kind, op.code, op.message) not in EXPECTED_FAILURES:
            if op.kind in ("create_bucket", "plan_write", "commit_object"):
                self.history.violation(
                    f"unexpected status for acknowledged-path mutation {op.kind} rid={op.rid} "
                    f"args={op.args}: {op.code} {op.message!r} (node {op.node}, attempts "
                    f"{dict(op.attempts)})")
        self.history.add(op)

    # -- operations --

    def create_bucket(self, rng: random.Random, name: str | None = None) -> Op:
        """CreateBucket with a unique name."""
        name = name or f"b-{self.tag}-{self._next()}"
        op, resp = self.mutate("create_bucket", "CreateBucket", svc.CreateBucketRequest(name=name),
                               {"name": name}, rng)
        if resp is not None:
            op.result["created_at_us"] = rfc3339_to_us(resp.bucket.created_at_rfc3339)
            if resp.bucket.name != name:
                self.history.violation(f"CreateBucket {name} answered bucket {resp.bucket.name!r}")
        self._finish(op)
        return op

    def put_object(self, rng: random.Random, pad: int = 0) -> None:
        """PlanWrite of a unique key, then CommitObject of the planned object."""
        if not self.buckets:
            return
        bucket = rng.choice(self.buckets)
        key = f"k/{self.tag}/{self._next()}"
        if pad:
            key += "/" + "p" * pad
        size = rng.randint(1, 1 << 20)
        op, resp = self.mutate("plan_write", "PlanWrite",
                               svc.PlanWriteRequest(bucket=bucket, key=key, size=size),
                               {"bucket": bucket, "key": key, "size": size}, rng)
        if resp is not None:
            op.result["object_id"] = resp.write_plan.object_id
        self._finish(op)
        if resp is None:
            return
        oid = resp.write_plan.object_id
        lm = 1_700_000_000_000 + rng.randrange(10**9)
        cop, cresp = self.mutate("commit_object", "CommitObject",
                                 svc.CommitObjectRequest(object_id=oid, size=size, last_modified_ms=lm),
                                 {"bucket": bucket, "key": key, "object_id": oid, "size": size,
                                  "last_modified_ms": lm}, rng)
        self._finish(cop)

    def get_bucket(self, rng: random.Random) -> None:
        """GetBucket of a bucket acknowledged before the read began: must be found, same time."""
        with self.history.lock:
            if not self.history.acked_buckets:
                return
            name, created, acked_at, widx = rng.choice(self.history.acked_buckets)
        op, resp, ridx = self.read("GetBucket", svc.GetBucketRequest(name=name), rng)
        op.kind = "get_bucket"
        op.args = {"name": name}
        if op.outcome == "fail" and op.code == "NOT_FOUND":
            self.history.violation(
                f"stale read: GetBucket({name}) on {op.node} began {op.start - acked_at:.3f}s after "
                f"its CreateBucket was acknowledged (log index {widx}) and got NOT_FOUND "
                f"(read saw index {ridx})")
        elif op.outcome == "fail":
            self.history.violation(f"GetBucket({name}) on {op.node}: {op.code} {op.message!r}")
        elif resp is not None and rfc3339_to_us(resp.bucket.created_at_rfc3339) != created:
            self.history.violation(
                f"GetBucket({name}) on {op.node} returned created_at {resp.bucket.created_at_rfc3339}"
                f" but CreateBucket acknowledged {created} µs (another bucket with the same name)")
        self.history.add(op)

    def head_object(self, rng: random.Random) -> None:
        """HeadObject of a key committed before the read began: must be that object."""
        with self.history.lock:
            if not self.history.acked_commits:
                return
            bucket, key, oid, acked_at, widx = rng.choice(self.history.acked_commits)
        op, resp, ridx = self.read("HeadObject", svc.HeadObjectRequest(bucket=bucket, key=key), rng)
        op.kind = "head_object"
        op.args = {"bucket": bucket, "key": key}
        if op.outcome == "fail":
            self.history.violation(
                f"stale read: HeadObject({bucket}, {key[:40]}) on {op.node} began "
                f"{op.start - acked_at:.3f}s after CommitObject({oid}) was acknowledged (log index "
                f"{widx}): {op.code} {op.message!r} (read saw index {ridx})")
        elif resp is not None and resp.object_id != oid:
            self.history.violation(
                f"stale read: HeadObject({bucket}, {key[:40]}) on {op.node} returned object "
                f"{resp.object_id}, acknowledged commit was {oid}")
        self.history.add(op)

    def list_buckets(self, rng: random.Random) -> None:
        """ListBuckets (all pages): every bucket acknowledged before the read began is listed."""
        with self.history.lock:
            before = list(self.history.acked_buckets)
        names: set[str] = set()
        token = ""
        op: Op | None = None
        ridx = 0
        while True:
            op, resp, ridx = self.read("ListBuckets", svc.ListBucketsRequest(continuation_token=token),
                                       rng)
            if resp is None:
                break
            names.update(b.name for b in resp.buckets)
            token = resp.next_continuation_token
            if not token:
                break
        assert op is not None
        op.kind = "list_buckets"
        if op.outcome == "ok":
            missing = [b for b in before if b[0] not in names]
            if missing:
                name, _, acked_at, widx = missing[0]
                self.history.violation(
                    f"stale read: ListBuckets on {op.node} (saw index {ridx}) misses {len(missing)} "
                    f"bucket(s) acknowledged before it began, e.g. {name} (acknowledged "
                    f"{op.start - acked_at:.3f}s earlier at log index {widx})")
        self.history.add(op)

    # -- threads --

    def setup(self, n_buckets: int = 4, timeout_s: float = 60.0) -> float:
        """Create the object buckets and wait until a PlanWrite succeeds. Returns how long after
        all nodes were SERVING the first PlanWrite succeeded (the readiness gap, issue #8)."""
        rng = random.Random(self.rng.random())
        for k in range(n_buckets):
            op = self.create_bucket(rng, f"obj-{self.tag}-{k}")
            if op.outcome == "ok":
                self.buckets.append(op.args["name"])
        if not self.buckets:
            raise RuntimeError("setup: no bucket could be created")
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            op, resp = self.mutate("plan_write", "PlanWrite",
                                   svc.PlanWriteRequest(bucket=self.buckets[0], key=f"ready/{self.tag}",
                                                        size=1),
                                   {"bucket": self.buckets[0], "key": f"ready/{self.tag}", "size": 1},
                                   rng, bound_s=10)
            if resp is not None:
                op.result["object_id"] = resp.write_plan.object_id
                self.history.add(op)
                return time.monotonic() - t0
            if op.code != "FAILED_PRECONDITION":
                raise RuntimeError(f"setup PlanWrite failed: {op.code} {op.message}")
            time.sleep(0.05)
        raise RuntimeError("setup: PlanWrite never succeeded (no placeable cradle)")

    def _client(self, w: int, seed: float) -> None:
        rng = random.Random(seed)
        while not self.stop_event.is_set():
            r = rng.random()
            if r < 0.30:
                self.create_bucket(rng)
            elif r < 0.65:
                self.put_object(rng)
            elif r < 0.80:
                self.get_bucket(rng)
            elif r < 0.95:
                self.head_object(rng)
            else:
                self.list_buckets(rng)

    def _filler(self, seed: float, pad: int) -> None:
        rng = random.Random(seed)
        while not self.filler_stop.is_set() and not self.stop_event.is_set():
            self.put_object(rng, pad=pad)

    def start(self) -> None:
        """Start the client threads."""
        for w in range(self.n_threads):
            t = threading.Thread(target=self._client, args=(w, self.rng.random()),
                                 name=f"client-{w}", daemon=True)
            t.start()
            self._threads.append(t)

    def start_fillers(self, n: int, pad: int = 900) -> None:
        """Extra threads writing objects with long keys (to grow the log and the snapshot)."""
        self.filler_stop.clear()
        for k in range(n):
            t = threading.Thread(target=self._filler, args=(self.rng.random(), pad),
                                 name=f"filler-{k}", daemon=True)
            t.start()
            self._fillers.append(t)

    def stop_fillers(self, timeout_s: float = 60.0) -> None:
        """Stop the filler threads (their ops in flight finish or hit their bound)."""
        self.filler_stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._fillers:
            t.join(max(0.1, deadline - time.monotonic()))
        self._fillers = [t for t in self._fillers if t.is_alive()]

    def stop(self, timeout_s: float = 90.0) -> list[str]:
        """Stop every thread; ops in flight keep retrying until acknowledged or their bound.
        Returns the names of threads still alive after ``timeout_s``."""
        self.stop_event.set()
        self.filler_stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads + self._fillers:
            t.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in self._threads + self._fillers if t.is_alive()]

"""The campaign: runs (cluster + clients + faults), the checks after each heal, the per-run
table and the final summary. ``main`` is the command line of ``ops/nemesis.py``."""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse  # noqa: E402
import atexit  # noqa: E402
import collections  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from tests.chaos.checker import check_history, log_stats, wait_converged  # noqa: E402
from tests.chaos.cluster import ChaosCluster  # noqa: E402
from tests.chaos.faults import ALL_KINDS, PARTITION_KINDS, Nemesis  # noqa: E402
from tests.chaos.net import Partitioner  # noqa: E402
from tests.chaos.workload import History, Workload  # noqa: E402

SCHEDULES = ("random", "isolate-leader-during-snapshot")
HEAL_DEADLINE_S = 30.0


@dataclass
class RunConfig:
    """One run's parameters."""

    index: int
    seed: int
    duration_s: float
    nodes: int
    snapshot_entries: int | None
    schedule: str
    threads: int
    base: pathlib.Path
    kinds: tuple[str, ...] = ALL_KINDS


@dataclass
class RunResult:
    """One run's figures and violations."""

    index: int
    seed: int
    schedule: str
    snapshot_entries: str
    seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    attempt_errors: dict[str, int] = field(default_factory=dict)
    reads_ok: int = 0
    elections: int = 0
    leader_changed: int = 0
    term: tuple[int, int] = (0, 0)
    snapshots: int = 0
    restores: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    alert_samples: list[str] = field(default_factory=list)
    applied_index: int = 0
    heal_to_serving_s: float = -1.0
    heal_to_write_s: float = -1.0
    ready_gap_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    kept: str = ""


class Campaign:
    """Owns the partitioner and the live cluster, so that every exit path cleans up."""

    def __init__(self, base: pathlib.Path, verbose: bool, keep: bool, use_partitions: bool) -> None:
        self.base = base
        self.verbose = verbose
        self.keep = keep
        self.net = Partitioner()
        self.cluster: ChaosCluster | None = None
        self.workload: Workload | None = None
        if use_partitions and self.net.setup():
            self.say(f"partitions: iptables chain {self.net.chain} (jump from OUTPUT on lo)")
        else:
            why = self.net.reason if use_partitions else "--no-partitions, or no partition fault chosen"
            self.say(f"NOTICE: partition faults skipped ({why})")
        atexit.register(self.cleanup)

    def say(self, text: str) -> None:
        """Print a progress line."""
        print(text, flush=True)

    def cleanup(self) -> None:
        """Stop the workload, kill every node and the cradle, remove our iptables chain."""
        if self.workload is not None:
            self.workload.stop_event.set()
            self.workload.filler_stop.set()
        if self.cluster is not None:
            self.cluster.kill_all()
            self.cluster = None
        self.net.close()

    def run(self, cfg: RunConfig) -> RunResult:
        """One run: start, load, faults, heal, check, stop. Never raises for a product failure:
        it becomes a violation."""
        res = RunResult(cfg.index, cfg.seed, cfg.schedule,
                        str(cfg.snapshot_entries) if cfg.snapshot_entries else "default")
        t_start = time.monotonic()
        rng = random.Random(cfg.seed)
        tag = f"r{cfg.index}s{cfg.seed % 100000}"
        run_dir = cfg.base / f"run-{cfg.index:03d}"
        shutil.rmtree(run_dir, ignore_errors=True)
        extra = ["--snapshot-entries", str(cfg.snapshot_entries)] if cfg.snapshot_entries else []
        gid_base = 200_000 + (os.getpid() % 50_000) * 16
        cl = ChaosCluster(run_dir, cfg.nodes, extra, gid_base)
        self.cluster = cl
        history = History()
        wl = Workload(cl, history, rng.randrange(2**32), tag, threads=cfg.threads)
        self.workload = wl
        say = self.say if self.verbose else (lambda _t: None)
        nem = Nemesis(cl, self.net, random.Random(rng.randrange(2**32)), say, cfg.kinds)
        stop = threading.Event()
        try:
            cl.start()
            slow = cl.wait_serving(60)
            if slow:
                res.violations.append(f"cluster not SERVING 60s after start: {[n.name for n in slow]}")
                return res
            res.ready_gap_s = wl.setup()
            t0_term = max((st.term for st in cl.statuses().values()), default=0)
            wl.start()
            nem.t0 = time.monotonic()
            if cfg.schedule == "random":
                nem.run_random(cfg.duration_s, stop)
            else:
                if not self.net.available:
                    res.notes.append("isolate-leader-during-snapshot needs iptables: skipped")
                else:
                    stop.wait(2.0)
                    nem.run_isolate_leader_during_snapshot(wl, stop)
            # Heal, then the liveness checks, then let in-flight ops finish.
            nem.heal_all()
            t_heal = time.monotonic()
            slow = cl.wait_serving(HEAL_DEADLINE_S)
            if slow:
                res.violations.append(
                    f"not SERVING {HEAL_DEADLINE_S:.0f}s after healing: "
                    + ", ".join(f"{n.name} ({_brief_status(n)})" for n in slow))
            else:
                res.heal_to_serving_s = time.monotonic() - t_heal
            left = max(1.0, HEAL_DEADLINE_S - (time.monotonic() - t_heal))
            fence, _ = wl.mutate("create_bucket", "CreateBucket", _fence_request(tag),
                                 {"name": f"fence-{tag}"}, rng, bound_s=left)
            if fence.outcome == "ok":
                res.heal_to_write_s = time.monotonic() - t_heal
            else:
                res.violations.append(f"no write acknowledged within {HEAL_DEADLINE_S:.0f}s of healing "
                                      f"(last: {fence.code} {fence.message!r}, attempts "
                                      f"{dict(fence.attempts)})")
            stuck = wl.stop()
            if stuck:
                res.notes.append(f"client threads still busy after 90s: {stuck}")
            conv = wait_converged(cl, 60)
            if not conv.ok:
                res.violations.append("replicas did not converge within 60s: " + " | ".join(conv.detail))
                # Still check what each node holds.
                from tests.chaos.checker import dump

                dumps = {}
                for nd in cl.nodes:
                    try:
                        dumps[nd.name] = dump(nd)
                    except Exception as e:  # noqa: BLE001
                        res.violations.append(f"{nd.name}: database unreadable: {e!r}")
            else:
                res.applied_index = conv.applied_index
                dumps = conv.dumps
            res.violations.extend(check_history(history, dumps))
            res.term = (t0_term, max((st.term for st in cl.statuses().values()), default=0))
        except Exception as e:  # noqa: BLE001 - a harness or product failure ends the run
            import traceback

            res.violations.append(f"run aborted: {e!r}\n{traceback.format_exc(limit=5)}")
        finally:
            stop.set()
            wl.stop_event.set()
            wl.filler_stop.set()
            self.net.heal()
            cl.stop()
            self.cluster = None
            self.workload = None
        res.violations[:0] = history.violations
        counts = history.counts()
        res.acked = dict(counts["acked"])
        res.reads_ok = sum(v for k, v in counts["acked"].items()
                           if k in ("get_bucket", "head_object", "list_buckets"))
        res.acked = {k: v for k, v in counts["acked"].items()
                     if k in ("create_bucket", "plan_write", "commit_object")}
        res.failed = dict(counts["failed"])
        res.unknown = dict(counts["unknown"])
        res.attempt_errors = dict(counts["attempt_errors"])
        res.faults = dict(nem.faults)
        res.notes.extend(nem.notes)
        ls = log_stats(cl)
        res.elections, res.leader_changed = ls["leaders_elected"], ls["leader_changed"]
        res.snapshots, res.restores = ls["snapshots"], ls["restores"]
        res.alerts, res.alert_samples = dict(ls["alerts"]), ls["samples"]
        res.seconds = time.monotonic() - t_start
        serious = {"commit_index_clamped", "dump_load_failed", "snapshot_restore_failed", "apply_failed",
                   "node_failed", "critical", "raw_traceback", "log_index_not_increasing"}
        if res.violations or self.keep or serious & set(res.alerts):
            res.kept = str(run_dir)
            _write_history(run_dir / "history.jsonl", history)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        return res


def _write_history(path: pathlib.Path, history: History) -> None:
    """Every recorded op, one JSON object per line (kept runs only)."""
    with contextlib.suppress(OSError), path.open("w") as f:
        for op in history.ops:
            row = {**vars(op), "attempts": dict(op.attempts)}
            f.write(json.dumps(row, default=str) + "\n")


def _fence_request(tag: str) -> Any:
    from gantry.pb.service.v1 import service_pb2 as svc

    return svc.CreateBucketRequest(name=f"fence-{tag}")


def _brief_status(nd: Any) -> str:
    if not nd.alive():
        return f"exited {nd.proc.returncode if nd.proc else '?'}"
    try:
        st = nd.status(1)
    except Exception:  # noqa: BLE001
        return "no Status answer"
    return (f"role {st.role} term {st.term} commit {st.commit_index} applied {st.applied_index} "
            f"leader {st.leader_raft_addr or '-'} serving {st.serving}")


def _fmt(d: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(d.items())) or "-"


def format_run(r: RunResult, total: int) -> str:
    """The per-run table."""
    lines = [
        f"run {r.index}/{total}  seed={r.seed}  schedule={r.schedule}  snapshot-entries="
        f"{r.snapshot_entries}  {r.seconds:.1f}s",
        f"  faults      {_fmt(r.faults)}",
        f"  acked       {sum(r.acked.values())} ({_fmt(r.acked)}); reads ok {r.reads_ok}",
        f"  failed      {_fmt(r.failed)}",
        f"  unknown     {_fmt(r.unknown)}",
        f"  retried on  {_fmt(r.attempt_errors)}",
        f"  elections   {r.elections} won, {r.leader_changed} leader_changed lines, term "
        f"{r.term[0]}→{r.term[1]}",
        f"  snapshots   {r.snapshots} persisted, {r.restores} restored; applied index "
        f"{r.applied_index}",
        f"  after heal  SERVING in {r.heal_to_serving_s:.1f}s, write in {r.heal_to_write_s:.1f}s; "
        f"first PlanWrite {r.ready_gap_s:.2f}s after SERVING",
        f"  log alerts  {_fmt(r.alerts)}",
    ]
    lines += [f"      {s}" for s in r.alert_samples]
    lines += [f"  note        {n}" for n in r.notes]
    lines.append(f"  violations  {len(r.violations)}")
    lines += [f"    - {v}" for v in r.violations[:20]]
    if len(r.violations) > 20:
        lines.append(f"    … {len(r.violations) - 20} more")
    if r.kept:
        lines.append(f"  data kept   {r.kept}")
    return "\n".join(lines)


def format_summary(results: list[RunResult]) -> str:
    """The final summary over all runs."""
    faults: collections.Counter[str] = collections.Counter()
    acked: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    unknown: collections.Counter[str] = collections.Counter()
    alerts: collections.Counter[str] = collections.Counter()
    for r in results:
        faults.update(r.faults)
        acked.update(r.acked)
        failed.update(r.failed)
        unknown.update(r.unknown)
        alerts.update(r.alerts)
    bad = [r for r in results if r.violations]
    head = f"{'run':>4} {'schedule':<10} {'snap':>7} {'secs':>6} {'faults':>6} {'acked':>6} " \
           f"{'unkn':>5} {'elect':>5} {'viol':>5}"
    rows = [head] + [
        f"{r.index:>4} {r.schedule[:10]:<10} {r.snapshot_entries:>7} {r.seconds:>6.1f} "
        f"{sum(r.faults.values()):>6} {sum(r.acked.values()):>6} {sum(r.unknown.values()):>5} "
        f"{r.elections:>5} {len(r.violations):>5}" for r in results]
    return "\n".join([
        "=" * 72,
        "SUMMARY",
        *rows,
        f"runs {len(results)}, with violations {len(bad)}"
        + (f" ({', '.join(str(r.index) for r in bad)})" if bad else ""),
        f"faults      {sum(faults.values())}: {_fmt(dict(faults))}",
        f"acked       {sum(acked.values())}: {_fmt(dict(acked))}; reads ok "
        f"{sum(r.reads_ok for r in results)}",
        f"failed      {_fmt(dict(failed))}",
        f"unknown     {_fmt(dict(unknown))}",
        f"elections   {sum(r.elections for r in results)}",
        f"log alerts  {_fmt(dict(alerts))}",
        f"violations  {sum(len(r.violations) for r in results)}",
    ])


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="nemesis", description="Randomized fault campaign against a real local Gantry cluster.")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of faults per run (random)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--snapshot-entries", default="mixed",
                   help="300 (any number), default, or mixed (alternate per run; default)")
    p.add_argument("--schedule", choices=SCHEDULES, default="random")
    p.add_argument("--seed", type=int, default=None, help="campaign seed (default: random)")
    p.add_argument("--threads", type=int, default=6, help="client threads (default 6)")
    p.add_argument("--faults", default=",".join(ALL_KINDS),
                   help=f"comma-separated fault kinds for the random schedule ({','.join(ALL_KINDS)})")
    p.add_argument("--base-dir", default="", help="where run directories go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep every run's data and logs")
    p.add_argument("--no-partitions", action="store_true", help="never touch iptables")
    p.add_argument("--json", default="", help="write the results as JSON to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-fault lines")
    return p


def _snapshot_entries(spec: str, i: int) -> int | None:
    if spec == "default":
        return None
    if spec == "mixed":
        return 300 if i % 2 == 1 else None
    return int(spec)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign; 0 when no run had a violation, 1 otherwise, 2 on bad arguments."""
    ns = build_parser().parse_args(argv)
    kinds = tuple(k for k in ns.faults.split(",") if k)
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or ns.runs < 1 or ns.nodes < 3 or ns.duration <= 0:
        print(f"nemesis: bad arguments (unknown faults {unknown}, runs ≥ 1, nodes ≥ 3, "
              "duration > 0)", file=sys.stderr)
        return 2
    if ns.snapshot_entries not in ("default", "mixed") and not ns.snapshot_entries.isdigit():
        print("nemesis: --snapshot-entries takes a number, default or mixed", file=sys.stderr)
        return 2
    seed = ns.seed if ns.seed is not None else random.randrange(10**9)
    base = pathlib.Path(ns.base_dir or tempfile.mkdtemp(prefix="nemesis-")).resolve()
    base.mkdir(parents=True, exist_ok=True)
    want_partitions = not ns.no_partitions and (
        ns.schedule != "random" or any(k in PARTITION_KINDS for k in kinds))

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"nemesis: seed={seed} runs={ns.runs} duration={ns.duration}s nodes={ns.nodes} "
          f"snapshot-entries={ns.snapshot_entries} schedule={ns.schedule} base={base}", flush=True)
    camp = Campaign(base, not ns.quiet, ns.keep, want_partitions)
    results: list[RunResult] = []
    interrupted = False
    try:
        for i in range(1, ns.runs + 1):
            cfg = RunConfig(i, seed * 1000 + i, ns.duration, ns.nodes,
                            _snapshot_entries(ns.snapshot_entries, i), ns.schedule, ns.threads, base,
                            kinds)
            camp.say(f"--- run {i}/{ns.runs} seed={cfg.seed} snapshot-entries="
                     f"{cfg.snapshot_entries or 'default'} schedule={cfg.schedule}")
            r = camp.run(cfg)
            results.append(r)
            camp.say(format_run(r, ns.runs))
    except KeyboardInterrupt:
        interrupted = True
        camp.say("nemesis: interrupted, stopping every process")
    finally:
        camp.cleanup()
    if results:
        camp.say(format_summary(results))
    if ns.json:
        pathlib.Path(ns.json).write_text(json.dumps(
            {"seed": seed, "interrupted": interrupted, "partitions": camp.net.reason or "on",
             "runs": [asdict(r) for r in results]}, indent=1, default=str))
    if not ns.base_dir and not any(r.kept for r in results):
        shutil.rmtree(base, ignore_errors=True)
    if interrupted:
        return 130
    return 1 if any(r.violations for r in results) else 0

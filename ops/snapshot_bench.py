"""Measure what a Raft snapshot costs a node holding a large database, with the real code paths.

Usage::

    python ops/snapshot_bench.py [--objects 1000000] [--db PATH] [--work-dir DIR] [--keep]
        [--pins 20] [--tick-ms 5] [--baseline-s 2] [--json]

The database: ``--db PATH`` reuses an existing node database — copied first into the work
directory with SQLite's backup API from a read-only connection (consistent even while a node
runs on it; the original is never written) —; otherwise ``--objects`` COMMITTED objects are seeded into a new
database under a temporary directory with :mod:`seed_objects` (the same code as
``ops/seed_objects.py``). Figures:

(a) **pause** — what the Raft path blocks on. ``WriterActor.begin_snapshot(index, meta)`` is
    called for real, through a pykka proxy, on a writer actor started on the database (nothing
    queued): apply what is queued, open a read-only connection (``gantry.open_ro``),
    ``BEGIN``, read the applied index (the first read pins the WAL snapshot). Reported are the
    ask round trip and, measured separately ``--pins`` times without the actor, the pinning
    steps alone (median / max).
(b) **build** — ``PendingSnapshot.build(dest)`` of that pinned transaction: SQLite online backup
    into ``dest.building`` + the Raft metadata table (``gantry.state.snapshot.write``), fsync, rename,
    directory fsync — duration and snapshot size.
(c) **restore** — ``gantry.state.snapshot.restore(snapshot, live)`` into a freshly migrated database
    opened with ``gantry.open_rw`` (what ``WriterActor.restore_if_newer`` runs), then a
    row count to check it.
(d) **stall** — while (b), and again while (c), run on a background thread, the main thread
    sleeps ``--tick-ms`` in a loop and records the intervals between wake-ups: the worst one
    shows how long another Python thread (a gRPC handler, the Raft tick thread) could be held
    off by the GIL or by I/O. The same loop runs ``--baseline-s`` seconds with nothing in the
    background first, for comparison.

The Raft metadata is built with the real ``gantry.state.snapshot.encode_meta`` from stand-in
pysyncobj entries (empty command bytes, index = max(applied index, 1), term 1) and a 3-node
membership. Results are printed as text (or one JSON object with ``--json``), with the command
line used. The temporary directory is removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import seed_objects  # noqa: E402

from gantry import logs  # noqa: E402
from gantry.actors.writer import EntryQueue, PendingSnapshot, WriterActor  # noqa: E402
from gantry.consensus.proposals import Proposals  # noqa: E402
from gantry.db import Watermark, open_ro, open_rw  # noqa: E402
from gantry.state import migrate, snapshot, statemachine  # noqa: E402


@dataclass(frozen=True)
class _FakeNode:
    """Stands in for a pysyncobj node: ``encode_meta`` only reads ``.id``."""

    id: str


def meta_json(index: int) -> str:
    """Raft metadata JSON as the RaftActor would pass it, for log ``index``."""
    cluster = {_FakeNode(f"127.0.0.1:{7081 + i}") for i in range(3)}
    return snapshot.encode_meta(((b"", index, 1), (b"", max(index - 1, 0), 1), cluster))


class Ticker:
    """Sleeps ``tick_s`` in a loop on the calling thread and records every interval between
    wake-ups (seconds) until ``until()`` is true."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self.intervals: list[float] = []

    def run(self, until: Callable[[], bool]) -> None:
        last = time.perf_counter()
        while not until():
            time.sleep(self.tick_s)
            now = time.perf_counter()
            self.intervals.append(now - last)
            last = now

    def summary(self) -> dict[str, float]:
        """Tick count and intervals in ms: max, p99, median, and how many exceeded 10/50 ms."""
        iv = sorted(self.intervals)
        if not iv:
            return {"ticks": 0}
        return {
            "ticks": len(iv),
            "max_ms": round(iv[-1] * 1000, 2),
            "p99_ms": round(iv[min(len(iv) - 1, int(0.99 * len(iv)))] * 1000, 2),
            "median_ms": round(statistics.median(iv) * 1000, 2),
            "over_10ms": sum(1 for x in iv if x > 0.010),
            "over_50ms": sum(1 for x in iv if x > 0.050),
        }


def in_background(fn: Callable[[], Any], tick_s: float) -> tuple[Any, float, dict[str, float]]:
    """Run ``fn`` on a background thread while ticking on this one; returns ``(result, seconds
    fn took, tick summary)``. Re-raises what ``fn`` raised."""
    box: dict[str, Any] = {}

    def target() -> None:
        t0 = time.perf_counter()
        try:
            box["result"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e
        box["s"] = time.perf_counter() - t0

    th = threading.Thread(target=target, name="snapshot-bench")
    ticker = Ticker(tick_s)
    th.start()
    ticker.run(lambda: not th.is_alive())
    th.join()
    if "error" in box:
        raise box["error"]
    return box.get("result"), box["s"], ticker.summary()


def pin_once(db: pathlib.Path) -> tuple[float, sqlite3.Connection, int]:
    """The pinning steps of ``WriterActor.begin_snapshot`` alone: ``(seconds, conn, applied)``."""
    t0 = time.perf_counter()
    conn = open_ro(db)
    conn.execute("BEGIN")
    applied = statemachine.applied_index(conn)
    return time.perf_counter() - t0, conn, applied


def measure(db: pathlib.Path, work: pathlib.Path, pins: int, tick_s: float,
            baseline_s: float) -> dict[str, Any]:
    """Run (a)–(d) on database ``db``, writing the snapshot and the restore target under
    ``work``; returns the figures."""
    out: dict[str, Any] = {"db": str(db), "db_bytes": db.stat().st_size}
    c = open_ro(db)
    try:
        out["objects"] = c.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
    finally:
        c.close()

    base = Ticker(tick_s)
    t_end = time.perf_counter() + baseline_s
    base.run(lambda: time.perf_counter() >= t_end)
    out["ticks_idle"] = base.summary()

    # (a) pinning alone, repeated.
    samples = []
    for _ in range(pins):
        s, conn, applied = pin_once(db)
        samples.append(s)
        conn.execute("ROLLBACK")
        conn.close()
    out["pin_ms"] = {"n": len(samples), "median": round(statistics.median(samples) * 1000, 3),
                     "max": round(max(samples) * 1000, 3), "min": round(min(samples) * 1000, 3)}

    # (a) the real begin_snapshot through a writer actor on this database. It opens the file
    # read-write (WAL mode, as a node does) but applies nothing: its queue is empty.
    writer = WriterActor.start(db, EntryQueue(), Watermark(), Proposals(),
                               lambda reason: print(f"writer fatal: {reason}", file=sys.stderr))
    try:
        applied = writer.proxy().applied_index().get(timeout=30)
        index = max(applied, 1)
        t0 = time.perf_counter()
        pending: PendingSnapshot = writer.proxy().begin_snapshot(index, meta_json(index)).get(timeout=60)
        out["begin_snapshot_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        out["snapshot_index"] = index
        out["applied_index"] = pending.applied_index

        # (b) + (d): build on a background thread, tick here.
        dest = work / "snapshot.bin"
        figures, build_s, ticks = in_background(lambda: pending.build(dest), tick_s)
        out["build"] = {"wall_ms": round(build_s * 1000, 1),
                        "write_ms": figures["duration_ms"],  # snapshot.write: backup, meta, fsync, rename
                        "size_bytes": figures["size_bytes"]}
        out["ticks_during_build"] = ticks
    finally:
        writer.stop(timeout=30)

    # (c) + (d): restore into a fresh migrated database, on a background thread.
    live_path = work / "restore" / "gantry.db"
    live_path.parent.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(live_path)

    wal = live_path.with_name(live_path.name + "-wal")

    def restore() -> tuple[int, float, float, int, int]:
        # The live connection is used on the thread that opened it (sqlite3's default check),
        # as the writer actor does.
        live = open_rw(live_path)
        try:
            t0 = time.perf_counter()
            index = snapshot.restore(dest, live)
            t1 = time.perf_counter()
            wal_bytes = wal.stat().st_size if wal.exists() else 0
            live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            t2 = time.perf_counter()
            count = live.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
        finally:
            live.close()
        return index, t1 - t0, t2 - t1, count, wal_bytes

    (restored, restore_s, checkpoint_s, count, wal_bytes), _, ticks = in_background(restore, tick_s)
    out["restore"] = {"wall_ms": round(restore_s * 1000, 1), "restored_index": restored,
                      "objects": count, "checkpoint_after_ms": round(checkpoint_s * 1000, 1),
                      "wal_bytes_after_restore": wal_bytes, "db_bytes": live_path.stat().st_size}
    out["ticks_during_restore"] = ticks
    if count != out["objects"]:
        raise SystemExit(f"snapshot_bench: restored {count} objects, expected {out['objects']}")
    return out


def _ticks_line(name: str, t: dict[str, float]) -> str:
    return (f"{name:<22} ticks={t['ticks']} max={t.get('max_ms')} ms p99={t.get('p99_ms')} ms "
            f"median={t.get('median_ms')} ms  >10ms={t.get('over_10ms')} >50ms={t.get('over_50ms')}")


def format_report(r: dict[str, Any]) -> str:
    """Human-readable report of :func:`measure`'s figures (plus seeding, when done)."""
    mb = 1e6
    lines = [f"command      {r['command']}"]
    if r.get("seed"):
        s = r["seed"]
        lines.append(f"seeded       {s['objects']:,} objects in {s['insert_s']} s "
                     f"({s['rows_per_s']:,.0f} rows/s)")
    b, rs = r["build"], r["restore"]
    lines += [
        f"database     {r['db']}  {r['db_bytes'] / mb:.1f} MB  objects={r['objects']:,}",
        f"(a) pause    begin_snapshot (actor ask, real code) {r['begin_snapshot_ms']} ms; "
        f"pin alone (open_ro+BEGIN+read) median {r['pin_ms']['median']} ms, "
        f"max {r['pin_ms']['max']} ms over {r['pin_ms']['n']}",
        f"(b) build    {b['wall_ms']} ms wall (snapshot.write = backup + meta + fsync + rename "
        f"{b['write_ms']} ms); "
        f"size {b['size_bytes'] / mb:.1f} MB",
        f"(c) restore  {rs['wall_ms']} ms into a fresh migrated db; WAL then "
        f"{rs['wal_bytes_after_restore'] / mb:.1f} MB, checkpoint(TRUNCATE) {rs['checkpoint_after_ms']} ms; "
        f"{rs['objects']:,} objects, index {rs['restored_index']}",
        "(d) " + _ticks_line(f"ticks {r['tick_ms']} ms, idle", r["ticks_idle"]),
        "    " + _ticks_line("ticks during build", r["ticks_during_build"]),
        "    " + _ticks_line("ticks during restore", r["ticks_during_restore"]),
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description="Measure snapshot pause, build, restore and stalls.")
    p.add_argument("--objects", type=int, default=1_000_000,
                   help="objects to seed when no --db is given (default 1000000)")
    p.add_argument("--db", default="", help="existing database to measure instead of seeding")
    p.add_argument("--work-dir", default="",
                   help="where to seed / write the snapshot (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--pins", type=int, default=20, help="repetitions of the pin measurement")
    p.add_argument("--tick-ms", type=float, default=5.0, help="tick sleep in ms (default 5)")
    p.add_argument("--baseline-s", type=float, default=2.0,
                   help="seconds of idle ticking for comparison (default 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    """Seed (unless --db), measure, print. Exit 0, 2 on bad flags."""
    ns = build_parser().parse_args(argv)
    logs.configure("snapshot_bench", level="warning")
    if ns.objects < 1 or ns.pins < 1 or ns.tick_ms <= 0:
        print("snapshot_bench: need --objects ≥ 1, --pins ≥ 1, --tick-ms > 0", file=sys.stderr)
        return 2
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv]) if argv is None else \
        shlex.join(["snapshot_bench.py", *argv])
    work = pathlib.Path(ns.work_dir or tempfile.mkdtemp(prefix="gantry-snapbench-"))
    work.mkdir(parents=True, exist_ok=True)
    seeded: dict[str, Any] | None = None
    try:
        if ns.db:
            src_path = pathlib.Path(ns.db)
            if not src_path.exists():
                print(f"snapshot_bench: no such database {src_path}", file=sys.stderr)
                return 2
            db = work / "copy" / "gantry.db"
            db.parent.mkdir(parents=True, exist_ok=True)
            db.unlink(missing_ok=True)
            src, dst = open_ro(src_path), sqlite3.connect(str(db))
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        else:
            if not ns.json:
                print(f"seeding {ns.objects:,} objects under {work} ...", flush=True)
            sr = seed_objects.seed(work / "seed", ns.objects, "big")
            seeded = {"objects": sr.objects, "insert_s": round(sr.insert_s, 2),
                      "rows_per_s": round(sr.rows_per_s), "size_bytes": sr.size_bytes}
            db = sr.db_path
        r = measure(db, work, ns.pins, ns.tick_ms / 1000, ns.baseline_s)
        r.update(command=command, seed=seeded, tick_ms=ns.tick_ms)
        print(json.dumps(r) if ns.json else format_report(r))
    finally:
        if not ns.keep and not ns.work_dir:
            shutil.rmtree(work, ignore_errors=True)
        elif not ns.json:
            print(f"kept         {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Backup and restore round trip on a large database, with the real commands, timed.

Usage::

    python ops/bench_backup.py [--objects 100000] [--work-dir DIR] [--keep] [--json]

Steps (every process on 127.0.0.1, free ports; everything started is stopped):

1. seed ``--objects`` COMMITTED objects into a new data directory (``ops/seed_objects.py``'s
   code: a benchmark fixture for a fresh single node), start a node on it and make 50 writes
   through the API, so the database carries a Raft history (applied index > 0);
2. ``gantry backup --addr NODE FILE --quiet``: its final line gives bytes, applied index and
   seconds; the wall time of the command is measured too;
3. the backup's tables (buckets, objects, cradle_servers) must equal the source database's
   (nothing was written after the backup);
4. ``gantry restore FILE --data-dir NEW --raft-addr R``, then ``gantry serve`` on it: time to
   SERVING; every object listed back through ``ListObjects`` (pages of 1000); one new object
   written (PlanWrite + CommitObject); the node restarted once (SERVING again, same data);
5. a second node started empty with the restored one as ``--peers`` and ``gantry add-node``-ed:
   time until it serves and holds the same tables (it receives the restored node's snapshot).

Prints one line per figure (or one JSON object with ``--json``) and exits non-zero when a check
fails. The work directory is a temporary one, removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import cluster as launcher  # noqa: E402
import grpc  # noqa: E402
import seed_objects  # noqa: E402

from gantry import logs  # noqa: E402
from gantry.pb.service.v1 import service_pb2 as svc  # noqa: E402
from gantry.pb.service.v1 import service_pb2_grpc  # noqa: E402

TABLES = ("buckets", "objects", "cradle_servers")
FINAL = re.compile(r"^wrote \S+: (?P<bytes>\d+) bytes at applied index (?P<index>\d+) "
                   r"\(term (?P<term>\d+)\) from \S+ in (?P<s>[\d.]+) s$")
BUCKET = "big"
CRADLE = "127.0.0.1:9"


class CheckFailed(RuntimeError):
    """A round-trip check did not hold."""


def digest(db: pathlib.Path) -> str:
    """SHA-256 over every row of :data:`TABLES`, in primary-key order."""
    h = hashlib.sha256()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for t in TABLES:
            for row in conn.execute(f"SELECT * FROM {t} ORDER BY 1"):
                h.update(repr(row).encode())
    finally:
        conn.close()
    return h.hexdigest()


def gantry(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the ``gantry`` CLI; returns the result and its wall time (seconds)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "gantry.cli", *args], cwd=launcher.REPO,
                       capture_output=True, text=True, timeout=900)
    return r, time.perf_counter() - t0


def stub(node: launcher.Node) -> service_pb2_grpc.GantryServiceStub:
    if node.channel is None:
        node.channel = grpc.insecure_channel(node.addr)
    return service_pb2_grpc.GantryServiceStub(node.channel)


def serve(node: launcher.Node, peers: list[launcher.Node], stop: threading.Event) -> float:
    """Start ``node`` (heartbeats off) and return the seconds until it is SERVING."""
    t0 = time.perf_counter()
    launcher.start_node(node, launcher.serve_args(node, [node, *peers], "", []), "info")
    err = launcher.wait_serving([node], 120, stop)
    if err:
        raise CheckFailed(err)
    return time.perf_counter() - t0


def list_all(node: launcher.Node) -> int:
    """Every key of :data:`BUCKET` through ListObjects, 1000 a page; returns the count."""
    n, token = 0, ""
    while True:
        page = stub(node).ListObjects(svc.ListObjectsRequest(
            bucket=BUCKET, max_keys=1000, continuation_token=token), timeout=30)
        n += len(page.contents)
        token = page.next_continuation_token
        if not token:
            return n


def round_trip(objects: int, work: pathlib.Path) -> dict[str, Any]:
    """Run the steps of the module docstring under ``work``; returns the figures."""
    os.environ["GANTRY_HEARTBEAT_INTERVAL"] = "0"
    fig: dict[str, Any] = {"objects": objects}
    ports = launcher.free_ports(6)
    src = launcher.Node("source", ports[0], ports[1], work / "source", work / "source.log")
    new = launcher.Node("restored", ports[2], ports[3], work / "restored", work / "restored.log")
    second = launcher.Node("second", ports[4], ports[5], work / "second", work / "second.log")
    stop = threading.Event()
    nodes = [src, new, second]
    try:
        seeded = seed_objects.seed(src.data_dir, objects, BUCKET, cradle_addr=CRADLE)
        fig["seed_s"] = round(seeded.total_s, 2)
        serve(src, [], stop)
        for i in range(50):
            stub(src).CreateBucket(svc.CreateBucketRequest(name=f"history-{i:03d}"), timeout=10)
        out = work / "backup.db"
        r, wall = gantry("backup", "--addr", src.addr, str(out), "--quiet")
        m = FINAL.match(r.stdout.strip())
        if r.returncode != 0 or not m:
            raise CheckFailed(f"backup failed: {r.stderr.strip() or r.stdout.strip()}")
        fig.update(backup_bytes=int(m["bytes"]), backup_applied_index=int(m["index"]),
                   backup_s=float(m["s"]), backup_wall_s=round(wall, 2))
        launcher.stop_all([src], 30, stop)
        if digest(out) != digest(src.data_dir / "gantry.db"):
            raise CheckFailed("the backup's tables differ from the source database's")
        r, wall = gantry("restore", str(out), "--data-dir", str(new.data_dir), "--raft-addr",
                         new.raft_addr)
        if r.returncode != 0:
            raise CheckFailed(f"restore failed: {r.stderr.strip()}")
        fig["restore_wall_s"] = round(wall, 2)
        fig["restored_serving_s"] = round(serve(new, [], stop), 2)
        t0 = time.perf_counter()
        listed = list_all(new)
        fig["list_all_s"] = round(time.perf_counter() - t0, 2)
        if listed != objects:
            raise CheckFailed(f"the restored node lists {listed} objects, not {objects}")
        plan = stub(new).PlanWrite(svc.PlanWriteRequest(bucket=BUCKET, key="after-restore",
                                                        size=5), timeout=10)
        stub(new).CommitObject(svc.CommitObjectRequest(
            object_id=plan.write_plan.object_id, size=5, last_modified_ms=1700000000000), timeout=10)
        if not launcher.stop_all([new], 30, stop):
            raise CheckFailed("the restored node did not stop cleanly")
        fig["restart_serving_s"] = round(serve(new, [], stop), 2)
        if list_all(new) != objects + 1:
            raise CheckFailed("the restored node lost data across a restart")
        t0 = time.perf_counter()
        launcher.start_node(second, launcher.serve_args(second, [second, new], "", []), "info")

        def add() -> None:
            deadline = time.monotonic() + 60
            while True:
                r, _ = gantry("add-node", second.raft_addr, "--addr", new.addr)
                if r.returncode == 0:
                    return
                if "not reachable" not in r.stderr or time.monotonic() > deadline:
                    raise CheckFailed(f"add-node failed: {r.stderr.strip()}")
                time.sleep(0.2)

        add()
        err = launcher.wait_serving([second], 120, stop)
        if err:
            raise CheckFailed(err)
        stub(new).CreateBucket(svc.CreateBucketRequest(name="fence"), timeout=10)
        want = None
        deadline = time.monotonic() + 120
        while True:
            want = digest(new.data_dir / "gantry.db")
            if digest(second.data_dir / "gantry.db") == want:
                break
            if time.monotonic() > deadline:
                raise CheckFailed("the added node did not converge")
            time.sleep(0.2)
        fig["add_node_converged_s"] = round(time.perf_counter() - t0, 2)
        return fig
    finally:
        launcher.stop_all(nodes, 30, stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=100_000)
    p.add_argument("--work-dir", default="", help="keep everything here (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="do not remove the work directory")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    ns = p.parse_args(argv)
    work = pathlib.Path(ns.work_dir) if ns.work_dir else pathlib.Path(
        tempfile.mkdtemp(prefix="gantry-backup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    logs.configure("bench_backup", level="warning")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the launcher's progress lines
            fig = round_trip(ns.objects, work)
    except CheckFailed as e:
        print(f"bench_backup: FAILED: {e} (logs in {work})", file=sys.stderr)
        return 1
    if not ns.keep and not ns.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    if ns.json:
        print(json.dumps(fig))
    else:
        for k, v in fig.items():
            print(f"{k:24} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Snapshots on a live 3-node cluster holding a big database: do heartbeats survive them?

Usage: ``python ops/snapshot_live.py --db data/big/gantry.db [--entries 300] [--seconds 20]``

Copies ``--db`` (e.g. made by ``ops/seed_objects.py``) into three fresh data directories (the
seed bypasses the log, so every node must start from the same file), starts a 3-node cluster on
free 127.0.0.1 ports with ``--snapshot-entries ENTRIES``, drives CreateBucket load through
``ops/bench.py`` for ``--seconds``, then reads the nodes' JSON logs and prints: snapshots taken
(``snapshot_started`` pause, ``snapshot_persisted`` duration and size) and every leader change
after the first election — which must be none if snapshots never stall heartbeats past the
election timeout. Stops everything it starts.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_matrix import REPO, running_cluster  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--entries", type=int, default=300)
    p.add_argument("--seconds", type=float, default=20.0)
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gantry-snaplive-") as tmp:
        work = pathlib.Path(tmp)
        for i in range(3):
            (work / f"n3-{i}").mkdir()
            shutil.copyfile(ns.db, work / f"n3-{i}" / "gantry.db")
        with running_cluster(3, ["--snapshot-entries", str(ns.entries)], work, "info") as targets:
            out = subprocess.run(
                [sys.executable, str(REPO / "ops" / "bench.py"), "--targets", ",".join(targets),
                 "--workload", "create-bucket", "--concurrency", "16", "--duration",
                 str(ns.seconds), "--warmup", "1", "--json"],
                cwd=REPO, capture_output=True, text=True, timeout=ns.seconds + 120)
            report = json.loads(out.stdout.strip().splitlines()[-1])
            if report["error_total"]:
                print("errors:", report["errors"], file=sys.stderr)
                for i in range(3):
                    for line in (work / f"n3-{i}.log").read_text().splitlines():
                        if '"rpc_finished"' not in line:
                            print(line[:300], file=sys.stderr)
        started, persisted, leader_changes = [], [], []
        for i in range(3):
            seen_leader = False
            for line in (work / f"n3-{i}.log").read_text().splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("event") == "snapshot_started":
                    started.append(e["pause_ms"])
                elif e.get("event") == "snapshot_persisted":
                    persisted.append((e["duration_ms"], e["size_bytes"]))
                elif e.get("event") == "leader_changed" and e.get("leader"):
                    if seen_leader:
                        leader_changes.append((f"node{i}", e.get("leader"), e.get("term")))
                    seen_leader = True
    print(f"load        {report['ops_per_s']} ops/s, p50 {report['latency_ms']['p50']} ms, "
          f"p99 {report['latency_ms']['p99']} ms, errors {report['error_total']}")
    if started:
        print(f"snapshots   {len(started)} started; pause median {sorted(started)[len(started) // 2]} ms"
              f", max {max(started)} ms")
    if persisted:
        d = sorted(x[0] for x in persisted)
        print(f"persisted   {len(persisted)}; build median {d[len(d) // 2]} ms, max {d[-1]} ms, "
              f"size {persisted[-1][1] / 1e6:.1f} MB")
    print(f"leader changes after the first election: {len(leader_changes)} {leader_changes}")
    return 0 if not leader_changes else 1


if __name__ == "__main__":
    sys.exit(main())

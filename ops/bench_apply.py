"""Apply-loop cost without Raft or gRPC: how fast the state machine applies committed entries.

Usage::

    python ops/bench_apply.py [--entries 20000] [--batch 64] [--runs 3] [--repo PATH]

Builds a fresh migrated SQLite file in a temporary directory, encodes ``--entries`` CreateBucket
commands (each with a request id, as clients send them) and applies them through
``statemachine.apply_batch`` in batches of ``--batch`` entries (the writer's batching), on one
thread. Prints entries/s and µs per entry for each run and the median. ``--repo`` runs the code of
another checkout (e.g. a git worktree of an older commit) to compare within one sitting; both the
current layout (``gantry.state``, ``gantry.db``) and the earlier flat one are understood.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any


def _modules(repo: pathlib.Path) -> tuple[Any, Any, Any, Any]:
    sys.path.insert(0, str(repo))
    try:
        sm = importlib.import_module("gantry.state.statemachine")
        cmds = importlib.import_module("gantry.state.commands")
        db = importlib.import_module("gantry.db")
        mig = importlib.import_module("gantry.state.migrate")
    except ImportError:
        sm = importlib.import_module("gantry.statemachine")
        cmds = importlib.import_module("gantry.commands")
        db = importlib.import_module("gantry.store")
        mig = importlib.import_module("gantry.migrate")
    return sm, cmds, db, mig


def run_once(entries: int, batch: int, mods: tuple[Any, Any, Any, Any]) -> float:
    """Seconds to apply ``entries`` CreateBuckets in batches of ``batch`` on a fresh file."""
    sm, cmds, db, mig = mods
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "gantry.db"
        mig.upgrade(path)
        conn = db.open_rw(path)
        encoded = [cmds.encode(cmds.create_bucket(f"bench-{i:08d}", request_id=f"r{i}"))
                   for i in range(entries)]
        t0 = time.perf_counter()
        for start in range(0, entries, batch):
            chunk = [(start + k + 2, data, 1) for k, data in enumerate(encoded[start:start + batch])]
            try:
                sm.apply_batch(conn, chunk)
            except ValueError:  # an older apply_batch takes (index, data) pairs only
                sm.apply_batch(conn, [(i, data) for i, data, _ in chunk])
        elapsed = time.perf_counter() - t0
        conn.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints one line per run and the median; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=20000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--repo", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parents[1])
    ns = p.parse_args(argv)
    mods = _modules(ns.repo.resolve())
    rates = []
    for r in range(ns.runs):
        s = run_once(ns.entries, ns.batch, mods)
        rates.append(ns.entries / s)
        print(f"run {r + 1}: {ns.entries / s:,.0f} entries/s ({s / ns.entries * 1e6:.1f} µs/entry)")
    med = statistics.median(rates)
    print(f"median: {med:,.0f} entries/s ({1e6 / med:.1f} µs/entry) repo={ns.repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

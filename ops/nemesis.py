"""Randomized fault campaign ("nemesis") against a real local Gantry cluster.

Usage::

    python ops/nemesis.py [--runs N] [--duration S] [--nodes 3]
        [--snapshot-entries 300|default|mixed] [--schedule random|isolate-leader-during-snapshot]
        [--seed X] [--threads 6] [--faults kill,kill_leader,...] [--base-dir DIR] [--keep]
        [--no-partitions] [--json FILE] [-q]

Each run starts N ``gantry serve`` processes on free 127.0.0.1 ports (plus ``ops/fake_cradle.py``),
runs concurrent clients (unique CreateBucket, PlanWrite+CommitObject, default-consistency reads;
every mutation with an ``x-request-id``, retried with the same id), injects faults (kill -9 of a
node / the leader / all nodes, SIGSTOP/SIGCONT, Raft partitions through iptables, leader
transfer, remove/re-add a follower with a wiped data directory), heals, and checks the replicas
and the history. It prints a table per run and a summary, and exits 1 on any violation, 2 on bad
arguments, 130 when interrupted. Partitions need root and iptables; without them they are
skipped with a notice. See docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import pathlib
import sys

# Before anything imports grpc: the campaign forks node processes while its channels are busy
# (grpc issue #43055).
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.chaos.campaign import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

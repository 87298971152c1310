"""Randomized fault campaign ("nemesis") against real Gantry node processes on 127.0.0.1.

Modules: :mod:`.net` (Raft-port partitions with iptables), :mod:`.cluster` (node processes,
fake storage server, admin helpers), :mod:`.workload` (concurrent clients and their history),
:mod:`.faults` (fault injectors and schedules), :mod:`.checker` (post-heal checks),
:mod:`.campaign` (runs, report, CLI used by ``ops/nemesis.py``).

The campaign parent must not fork while its gRPC channels are busy (grpc issue #43055), so fork
support is turned off here before anything imports grpc; ``ops/nemesis.py`` does the same first.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

"""Start-up registrations through the log, off the composition root: this node's gRPC address
(so followers can point clients and forwarded admin calls at the leader) and, with
``--cradle-addr``, its storage server; then readiness waits until that server is placeable.

Every registration is idempotent (the address is the key; re-registering returns the existing
row), so it is retried until applied or the node stops. Each runs on its own background thread
(``register-node``, ``register-cradle``) started by :class:`gantry.node.Node`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout

import structlog

from gantry.api.service import placeable_where
from gantry.consensus.errors import ConsensusError
from gantry.db import ReadPool
from gantry.pb.command.v1 import command_pb2
from gantry.state import commands
from gantry.state.statemachine import ApplyResult

log = structlog.get_logger("gantry.node")

#: ``propose(command, timeout_s) -> (ApplyResult, log index)``, as :meth:`gantry.node.Node.propose`.
Propose = Callable[[command_pb2.Command, float], tuple[ApplyResult, int]]


class Registrar:
    """The registrations of one node. ``serving()`` says whether proposing can succeed now (a
    leader is known and this node caught up); ``stopping`` ends every wait."""

    def __init__(self, propose: Propose, serving: Callable[[], bool],
                 stopping: threading.Event) -> None:
        self._propose = propose
        self._serving = serving
        self._stopping = stopping

    def until_applied(self, make: Callable[[], command_pb2.Command],
                      what: str) -> tuple[ApplyResult, int] | None:
        """Propose ``make()`` once a leader is known, retrying (5 s per attempt) until it is
        applied; None if the node stopped first."""
        while not self._stopping.wait(0.05):
            if not self._serving():
                continue
            try:
                return self._propose(make(), 5.0)
            except (ConsensusError, FutureTimeout) as e:
                log.warning("registration_retrying", what=what, error=repr(e))
                self._stopping.wait(0.5)
        return None

    def register_node(self, raft_addr: str, node_id: str, grpc_addr: str) -> None:
        """Announce ``raft_addr → (node_id, grpc_addr)`` through the log (``cluster_nodes``)."""
        out = self.until_applied(lambda: commands.register_node(raft_addr, node_id, grpc_addr),
                                 "node")
        if out is not None:
            log.info("node_registered", grpc_addr=grpc_addr, index=out[1])

    def register_cradle(self, address: str) -> str | None:
        """Register the storage server at ``address``; its id, or None if the node stopped."""
        out = self.until_applied(lambda: commands.register_cradle_server(address), "cradle")
        if out is None:
            return None
        log.info("cradle_registered", address=address, cradle_server_id=out[0].cradle_server_id,
                 index=out[1])
        return str(out[0].cradle_server_id)

    def wait_cradle_placeable(self, reads: ReadPool, cradle_id: str, address: str,
                              heartbeats: bool) -> bool:
        """Block until PlanWrite on this node would choose server ``cradle_id`` (with heartbeats
        on, once a heartbeat reported its room — on a follower, once the leader's record of it
        was applied here). True when placeable, False if the node stopped first. Readiness is
        set once: a server that fails later makes PlanWrite answer "no cradle servers
        available", not health flap."""
        sql = f"SELECT 1 FROM cradle_servers WHERE id = ? AND {placeable_where(heartbeats)}"
        next_note = time.monotonic() + 10.0
        pause_s, failures = 0.01, 0
        while not self._stopping.wait(pause_s):
            try:
                placeable = reads.conn().execute(sql, (cradle_id, 1)).fetchone()
            except Exception as e:  # e.g. busy during a restore: look again, backing off
                failures += 1
                if failures == 1 or failures % 100 == 0:  # not 100 lines a second
                    log.warning("cradle_readiness_check_failed", error=repr(e), failures=failures)
                pause_s = min(0.5, pause_s * 2)
                continue
            pause_s, failures = 0.01, 0
            if placeable:
                log.info("cradle_placeable", address=address)
                return True
            if time.monotonic() >= next_note:
                next_note = time.monotonic() + 30.0
                log.warning("health_waiting_for_cradle", address=address,
                            hint="NOT_SERVING until this storage server answers a heartbeat "
                                 "with free space")
        return False

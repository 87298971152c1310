"""The in-process test tier (hashicorp/raft's ``testing.go``): the real API and the real writer
on a real SQLite file, with consensus replaced by :class:`InlineConsensus`.

What is real: ``gantry/api`` (GantryService — with its ClusterService write,
UnregisterCradleServer — and its RPC wrapper, behind
:class:`~gantry.actors.frontdoor.FrontDoorActor` on 127.0.0.1, port 0), ``ReadIndex``, the
``Proposals`` registry, :class:`~gantry.actors.writer.WriterActor` with its ``EntryQueue``,
``Watermark`` and ``ReadPool``, the state machine and the migrations. What is fake: the Raft
layer. The seams are the ones ``docs/ARCHITECTURE.md`` names: ``GantryService`` is given a
``propose(command, timeout_s)`` function and a ``ReadIndex``; committed entries reach the
writer through ``EntryQueue.put`` + ``DRAIN``, exactly as the tick thread hands them over.

Use it for handler and apply behaviour that does not depend on replication (a new RPC, a new
error, a state-machine rule): a node starts in ~50 ms instead of a process in ~1 s. Anything about
elections, replication, snapshots, crashes or the pysyncobj engine belongs in ``tests/cluster`` or
``tests/chaos`` with real processes.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
import pykka
from grpc_health.v1 import health

from gantry.actors.frontdoor import FrontDoorActor
from gantry.actors.writer import DRAIN, EntryQueue, WriterActor
from gantry.api.service import GantryService
from gantry.consensus.errors import ConsensusError, Stopping
from gantry.consensus.proposals import Proposals
from gantry.consensus.readindex import ReadIndex, barrier_future
from gantry.db import ReadPool, Watermark
from gantry.pb.command.v1 import command_pb2
from gantry.pb.service.v1 import service_pb2_grpc
from gantry.state import commands, migrate
from gantry.state.statemachine import ApplyResult


class InlineConsensus:
    """A consensus layer that commits every proposal at once, in the order proposed.

    ``propose_async(command)`` gives the command the next log index (term 1), queues it to the
    writer and returns the Future that the writer resolves with ``(ApplyResult, log index)`` after
    apply, like the real node's ``Node.propose_async``. ``fail_next(error)`` makes the next
    proposal fail with ``error`` instead (an error path without a cluster).
    """

    def __init__(self, queue: EntryQueue, writer: pykka.ActorRef[Any], proposals: Proposals,
                 first_index: int) -> None:
        self._queue = queue
        self._writer = writer
        self._proposals = proposals
        self._lock = threading.Lock()
        self._index = first_index
        self._fail: list[ConsensusError] = []
        self._held: list[bytes] | None = None
        self.proposed = 0

    def fail_next(self, error: ConsensusError) -> None:
        """The next proposal fails with ``error`` (e.g. ``NoLeader()``), as the consensus layer
        would fail it (:mod:`gantry.consensus.errors`)."""
        with self._lock:
            self._fail.append(error)

    def propose_async(self, command: command_pb2.Command) -> Future[tuple[ApplyResult, int]]:
        fut: Future[tuple[ApplyResult, int]] = self._proposals.register(command.proposal_id)
        self._commit(command)
        return fut

    def hold(self) -> None:
        """Keep later proposals registered but uncommitted until :meth:`release` (writes that
        wait: what a cluster without a quorum does to them)."""
        with self._lock:
            self._held = []

    def release(self) -> None:
        """Commit the held proposals, in the order proposed, and stop holding."""
        with self._lock:
            held, self._held = self._held, None
            wake = False
            for data in held or ():
                self._index += 1
                self.proposed += 1
                wake = self._queue.put(self._index, data, 1) or wake
        if wake:
            self._writer.tell(DRAIN)

    def _commit(self, command: command_pb2.Command) -> None:
        data = commands.encode(command)
        with self._lock:  # one lock: indexes and queue order agree
            if self._fail:
                self._proposals.fail(command.proposal_id, self._fail.pop(0))
                return
            if self._held is not None:
                self._held.append(data)
                return
            self._index += 1
            self.proposed += 1
            wake = self._queue.put(self._index, data, 1)
        if wake:
            self._writer.tell(DRAIN)

    async def propose_aio(self, command: command_pb2.Command,
                          timeout_s: float) -> tuple[ApplyResult, int]:
        """The event loop's ``propose`` (what GantryService is given): an asyncio future the
        writer resolves with its batch; raises ConsensusError or ``TimeoutError``."""
        fut = self._proposals.register_async(command.proposal_id)
        try:
            self._commit(command)
            async with asyncio.timeout(timeout_s):
                result: tuple[ApplyResult, int] = await fut
            return result
        finally:
            self._proposals.discard(command.proposal_id)

    def propose(self, command: command_pb2.Command, timeout_s: float) -> tuple[ApplyResult, int]:
        """``propose_async`` and wait up to ``timeout_s`` seconds; raises ConsensusError or
        ``concurrent.futures.TimeoutError`` (the proposal is then forgotten), like the node."""
        fut = self.propose_async(command)
        try:
            return fut.result(timeout=timeout_s)
        except FutureTimeout:
            self._proposals.discard(command.proposal_id)
            raise


class InProcessNode:
    """One Gantry API over ``data_dir/gantry.db`` in this process; a context manager.

    Offers what the process-backed ``tests.support.NodeProcess`` offers the contract tests:
    ``addr``, ``data_dir``, ``channel()``, ``stub()``; plus ``consensus`` (the
    :class:`InlineConsensus`) and ``watermark``; ``frontdoor`` is the FrontDoorActor's ref.
    ``cradle_addr`` registers a storage server at
    start, as ``gantry serve --cradle-addr`` does.
    """

    def __init__(self, data_dir: pathlib.Path, cradle_addr: str = "",
                 app_env: str = "production") -> None:
        self.data_dir = data_dir
        self.cradle_addr = cradle_addr
        self.app_env = app_env
        self.watermark = Watermark()
        self.proposals = Proposals()
        self.queue = EntryQueue()
        self.port = 0
        self._writer: pykka.ActorRef[Any] | None = None
        self._frontdoor: pykka.ActorRef[Any] | None = None
        self._reads: ReadPool | None = None
        self._channel: grpc.Channel | None = None
        self.consensus: InlineConsensus | None = None
        self.fatal_reason = ""

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> InProcessNode:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        db_path = self.data_dir / "gantry.db"
        migrate.upgrade(db_path)
        self._writer = WriterActor.start(db_path, self.queue, self.watermark, self.proposals,
                                         self._on_fatal)
        first = self._writer.proxy().applied_index().get(timeout=10)
        self.consensus = InlineConsensus(self.queue, self._writer, self.proposals, first)
        self._reads = ReadPool(db_path)
        read_index = ReadIndex(lambda: barrier_future(self.consensus.propose_async,  # type: ignore[union-attr]
                                                      commands.barrier))
        service = GantryService(self._reads, self.consensus.propose_aio, self.app_env,
                                self.watermark, read_index)
        health_servicer = health.HealthServicer()
        self._frontdoor = FrontDoorActor.start(
            "127.0.0.1", 0, [service.generic_handler(), service.admin_handler()],
            health_servicer, False)
        err = self._frontdoor.proxy().get_start_error().get(timeout=10)
        if err:
            raise RuntimeError(err)
        self.port = self._frontdoor.proxy().port().get(timeout=10)
        if self.cradle_addr:
            self.consensus.propose(commands.register_cradle_server(self.cradle_addr), 10)
        return self

    @property
    def frontdoor(self) -> pykka.ActorRef[Any] | None:
        """The FrontDoorActor (None when stopped)."""
        return self._frontdoor

    def stop(self, grace_s: float = 0.5) -> None:
        """Stop serving (in-flight calls get ``grace_s`` seconds), end every wait with
        Stopping, stop the writer."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._frontdoor is not None:
            self._frontdoor.proxy().stop_serving(grace_s).get(timeout=grace_s + 10)
            self._frontdoor.stop()
            self._frontdoor = None
        self.watermark.close()
        self.proposals.fail_all(Stopping())
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._reads is not None:
            self._reads.close()
            self._reads = None

    def __enter__(self) -> InProcessNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.addr)
        return self._channel

    def stub(self) -> service_pb2_grpc.GantryServiceStub:
        return service_pb2_grpc.GantryServiceStub(self.channel())

    def _on_fatal(self, reason: str) -> None:
        self.fatal_reason = reason  # the writer stopped applying; tests assert it stays ""


__all__ = ["InProcessNode", "InlineConsensus"]
